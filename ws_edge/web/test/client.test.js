// Unit tests of locstream-client: merge, backoff, resume and the polling fallback, with a fake socket and clock.
import assert from "node:assert/strict";
import { mock, test } from "node:test";

import { applyMessage, backoffDelay, LocstreamClient, mergeMessage } from "../locstream-client.js";

const ada = { technician_id: "t1", technician_name: "Ada", latitude: 1, longitude: 2, last_update: "x", status: "on_job" };
const bo = { ...ada, technician_id: "t2", technician_name: "Bo" };

test("initial_state replaces the map; updates, batches and removals merge into it", () => {
  let state = { technicians: new Map([["old", ada]]), cursor: null };
  state = applyMessage(state, { type: "initial_state", data: [ada], cursor: "c1" });
  assert.deepEqual([...state.technicians.keys()], ["t1"]);
  assert.equal(state.cursor, "c1");
  const before = state.technicians;
  state = applyMessage(state, { type: "location_update", data: { ...ada, latitude: 9 }, cursor: "c2" });
  assert.equal(state.technicians.get("t1").latitude, 9);
  assert.equal(before.get("t1").latitude, 1, "the previous map is not mutated");
  state = applyMessage(state, { type: "location_batch", data: [bo, { ...ada, latitude: 10 }], cursor: "c4" });
  assert.deepEqual([...state.technicians.values()].map((t) => [t.technician_id, t.latitude]), [["t1", 10], ["t2", 1]]);
  assert.equal(state.cursor, "c4");
  state = applyMessage(state, { type: "location_update", data: { ...bo, stale: true, motion: "stopped" }, cursor: "c5" });
  assert.equal(state.technicians.get("t2").stale, true);
  assert.equal(state.technicians.get("t2").motion, "stopped");
  state = applyMessage(state, { type: "technician_removed", technician_id: "t1" });
  assert.deepEqual([...state.technicians.keys()], ["t2"]);
  const same = applyMessage(state, { type: "pong" });
  assert.equal(same, state);
});

test("mergeMessage changes the map in place and names what it changed", () => {
  const technicians = new Map([["old", ada]]);
  assert.equal(mergeMessage(technicians, { type: "initial_state", data: [ada, bo], cursor: "c1" }), null);
  assert.deepEqual([...technicians.keys()], ["t1", "t2"]);
  assert.deepEqual(mergeMessage(technicians, { type: "location_batch", data: [{ ...bo, latitude: 5 }], cursor: "c2" }), ["t2"]);
  assert.equal(technicians.get("t2").latitude, 5);
  assert.deepEqual(mergeMessage(technicians, { type: "technician_removed", technician_id: "t1" }), ["t1"]);
  assert.deepEqual(mergeMessage(technicians, { type: "technician_removed", technician_id: "t1" }), []);
  assert.deepEqual(mergeMessage(technicians, { type: "pong" }), []);
  assert.deepEqual([...technicians.keys()], ["t2"]);
});

test("backoff is full jitter below a doubling ceiling capped at 30 s, and never under 1 s", () => {
  assert.equal(backoffDelay(0, { random: () => 0 }), 1000);
  assert.equal(backoffDelay(3, { random: () => 0.5 }), 4000); // ceiling 8 s
  assert.equal(backoffDelay(20, { random: () => 0.999 }), 29970); // ceiling capped at 30 s
  for (let attempt = 0; attempt < 12; attempt++) {
    const delay = backoffDelay(attempt);
    assert.ok(delay >= 1000 && delay <= Math.min(30000, 1000 * 2 ** attempt), `${attempt}: ${delay}`);
  }
});

class FakeSocket {
  static all = [];
  constructor(url, protocols) {
    this.url = url;
    this.protocols = protocols;
    this.sent = [];
    this.readyState = 0;
    FakeSocket.all.push(this);
  }
  open() {
    this.readyState = 1;
    this.onopen?.();
  }
  receive(message) {
    this.onmessage?.({ data: JSON.stringify(message) });
  }
  drop(code = 1006) {
    this.readyState = 3;
    this.onclose?.({ code, reason: "" });
  }
  send(text) {
    this.sent.push(text);
  }
  close() {
    this.readyState = 3;
  }
}

function client(options = {}) {
  FakeSocket.all = [];
  return new LocstreamClient({
    url: "ws://edge/feed", token: "tok", WebSocket: FakeSocket, random: () => 0, pingInterval: 30000, ...options,
  });
}

test("the token goes in the first message, the last cursor with it after a reconnect, and the filter again", (t) => {
  t.mock.timers.enable({ apis: ["setTimeout", "setInterval"] });
  const c = client();
  const first = FakeSocket.all[0];
  assert.deepEqual(first.protocols, ["locstream.v2", "locstream.v1"]);
  assert.ok(!first.url.includes("tok"), "never in the URL");
  first.open();
  assert.deepEqual(JSON.parse(first.sent[0]), { type: "auth", token: "tok" });
  first.receive({ type: "connected", connection_id: "1", tenant_id: "a", protocol: 2 });
  assert.equal(c.mode, "live");
  first.receive({ type: "initial_state", data: [ada], cursor: "c1" });
  c.subscribe({ bbox: [0, 0, 5, 5] });
  first.receive({ type: "location_update", data: bo, cursor: "c2" });
  t.mock.timers.tick(30000);
  assert.equal(first.sent.at(-1), "ping");
  first.drop();
  assert.equal(c.mode, "disconnected");
  t.mock.timers.tick(1000);
  const second = FakeSocket.all[1];
  second.open();
  assert.deepEqual(JSON.parse(second.sent[0]), { type: "auth", token: "tok", cursor: "c2" });
  second.receive({ type: "connected", connection_id: "2", tenant_id: "a", protocol: 2 });
  assert.deepEqual(JSON.parse(second.sent[1]), { type: "subscribe", bbox: [0, 0, 5, 5] });
  second.receive({ type: "resumed", cursor: "c2", missed: 1 });
  second.receive({ type: "location_update", data: { ...ada, latitude: 7 }, cursor: "c3" });
  assert.equal(c.technicians.get("t1").latitude, 7);
  assert.equal(c.technicians.get("t2").technician_name, "Bo", "what it had before the drop is kept");
  c.close();
});

test("after repeated failures it polls, and stops polling when the socket is back", async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout", "setInterval"] });
  const polled = [];
  const fetch = async (url, init) => {
    polled.push([url, init.headers.Authorization]);
    return { ok: true, json: async () => [bo] };
  };
  const c = client({ fetch, apiBase: "http://api", pollAfterFailures: 2, pollInterval: 15000 });
  FakeSocket.all[0].drop();
  t.mock.timers.tick(1000);
  assert.equal(c.mode, "connecting");
  FakeSocket.all[1].drop();
  assert.equal(c.mode, "polling");
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(polled[0], ["http://api/api/v1/field-service/technicians/locations/active", "Bearer tok"]);
  assert.deepEqual([...c.technicians.keys()], ["t2"]);
  t.mock.timers.tick(15000);
  assert.equal(polled.length, 2);
  t.mock.timers.tick(4000); // the next attempt, within the backoff's ceiling
  const back = FakeSocket.all.at(-1);
  back.open();
  back.receive({ type: "connected", connection_id: "3", tenant_id: "a", protocol: 2 });
  assert.equal(c.mode, "live");
  t.mock.timers.tick(60000);
  assert.equal(polled.length, 2, "no polling while live");
  c.close();
});

test("a refused token is not retried; seed options turn reconnecting off", (t) => {
  t.mock.timers.enable({ apis: ["setTimeout", "setInterval"] });
  const c = client();
  FakeSocket.all[0].open();
  FakeSocket.all[0].drop(1008);
  t.mock.timers.tick(60000);
  assert.equal(FakeSocket.all.length, 1);
  assert.equal(c.mode, "disconnected");
  const quiet = client({ autoReconnect: false });
  FakeSocket.all[0].drop();
  t.mock.timers.tick(60000);
  assert.equal(FakeSocket.all.length, 1);
  quiet.close();
  const off = client({ enabled: false });
  assert.equal(FakeSocket.all.length, 0);
  off.connect();
  assert.equal(FakeSocket.all.length, 1);
  off.close();
});
