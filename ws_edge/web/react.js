// useTechnicianLocations: the seed hook's contract (useWebSocketTechnicianLocations) on locstream-client.
import { useEffect, useRef, useState, useSyncExternalStore } from "react";
import { LocstreamClient } from "./locstream-client.js";

export function useTechnicianLocations(options = {}) {
  const { enabled = true } = options;
  const latest = useRef(options);
  latest.current = options;
  const [client] = useState(
    () =>
      new LocstreamClient({
        ...options,
        enabled: false,
        onConnect: () => latest.current.onConnect?.(),
        onDisconnect: (event) => latest.current.onDisconnect?.(event),
        onError: (event) => latest.current.onError?.(event),
      }),
  );
  useEffect(() => {
    if (!enabled) return undefined;
    client.connect();
    return () => client.close();
  }, [client, enabled]);
  const subscribe = (notify) => {
    client.addEventListener("change", notify);
    client.addEventListener("status", notify);
    return () => {
      client.removeEventListener("change", notify);
      client.removeEventListener("status", notify);
    };
  };
  const snapshot = useSyncExternalStore(subscribe, () => snapshotOf(client));
  return snapshot;
}

// The seed's name for the same hook.
export const useWebSocketTechnicianLocations = useTechnicianLocations;

const snapshots = new WeakMap();

function snapshotOf(client) {
  const key = [client.version, client.isConnected, client.isConnecting, client.isPolling, client.error];
  const previous = snapshots.get(client);
  if (previous && previous.key.every((value, i) => value === key[i])) return previous.value;
  const value = {
    technicians: [...client.technicians.values()],
    isConnected: client.isConnected,
    isConnecting: client.isConnecting,
    isPolling: client.isPolling,
    mode: client.mode,
    error: client.error,
    reconnect: () => client.reconnect(),
    subscribe: (filter) => client.subscribe(filter),
    client,
  };
  snapshots.set(client, { key, value });
  return value;
}
