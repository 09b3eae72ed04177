// The seed hook's contract against a running edge: only the URL differs from the seed's own usage.
// Run by tests/ws_edge/test_js_client.py: node --experimental-websocket seed-hook.mjs (EDGE_WS_URL, TOKEN).
import React from "react";
import TestRenderer from "react-test-renderer";

import { useWebSocketTechnicianLocations } from "../react.js";

globalThis.IS_REACT_ACT_ENVIRONMENT = true;
const events = [];
let latest = null;

function Probe() {
  // The seed's options, as its documentation names them, plus the URL and token of this deployment.
  latest = useWebSocketTechnicianLocations({
    url: process.env.EDGE_WS_URL,
    token: process.env.TOKEN,
    enabled: true,
    autoReconnect: true,
    reconnectInterval: 5000,
    onConnect: () => events.push("connect"),
    onDisconnect: () => events.push("disconnect"),
    onError: () => events.push("error"),
  });
  return null;
}

async function until(condition, what, timeout = 15000) {
  const deadline = Date.now() + timeout;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await TestRenderer.act(() => new Promise((resolve) => setTimeout(resolve, 20)));
  }
}

let renderer;
await TestRenderer.act(async () => {
  renderer = TestRenderer.create(React.createElement(Probe));
});
await until(() => latest.isConnected && latest.technicians.length >= Number(process.env.EXPECT), "initial state");
const first = { ...latest };
await TestRenderer.act(async () => latest.reconnect());
await until(() => events.filter((e) => e === "connect").length === 2 && latest.isConnected, "the manual reconnect");
const shape = Object.fromEntries(Object.entries(first).map(([k, v]) => [k, Array.isArray(v) ? "array" : typeof v]));
await TestRenderer.act(async () => renderer.unmount());
console.log(JSON.stringify({ shape, technicians: first.technicians, isConnecting: first.isConnecting,
  error: first.error, events, afterUnmount: latest.client.mode }));
