import type { ClientOptions, Filter, LocstreamClient, Mode, TechnicianLocation } from "./locstream-client.js";

export interface TechnicianLocationsOptions extends ClientOptions {
  enabled?: boolean;
  autoReconnect?: boolean;
  reconnectInterval?: number;
  onConnect?: () => void;
  onDisconnect?: (event: CloseEvent) => void;
  onError?: (event: Event) => void;
}

export interface TechnicianLocations {
  technicians: TechnicianLocation[];
  isConnected: boolean;
  isConnecting: boolean;
  isPolling: boolean;
  mode: Mode;
  error: string | null;
  reconnect: () => void;
  subscribe: (filter: Filter | null) => void;
  client: LocstreamClient;
}

export function useTechnicianLocations(options?: TechnicianLocationsOptions): TechnicianLocations;
export const useWebSocketTechnicianLocations: typeof useTechnicianLocations;
