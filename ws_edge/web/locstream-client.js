// locstream-client: the browser side of the map feed (docs/client.md).
//
// A plain ES module, no build step. It connects with the token in the first message (or the access_token cookie),
// merges initial_state and updates into a map of technicians (in place: mergeMessage), resumes with the last cursor after a reconnect,
// backs off with full jitter, pings every 30 s, offers protocol v2 (location_batch), re-sends the viewport filter
// after a reconnect, and falls back to polling the REST endpoint after repeated failures, switching back when the
// socket returns. The pure parts (applyMessage, backoffDelay) are exported for tests.

export const FEED_PATH = "/api/v1/field-service/ws/technician-locations";
export const POLL_PATH = "/api/v1/field-service/technicians/locations/active";

/**
 * Merge one server message into `technicians` (a Map id -> location), in place: the one place messages change the
 * map. Returns the ids it changed, `null` when it replaced everything (initial_state), `[]` when nothing changed.
 * In place because a map of 10,000 technicians taking 1,000 updates a second cannot be copied per update.
 */
export function mergeMessage(technicians, message) {
  switch (message.type) {
    case "initial_state":
      technicians.clear();
      for (const t of message.data) technicians.set(t.technician_id, t);
      return null;
    case "location_update":
      technicians.set(message.data.technician_id, message.data);
      return [message.data.technician_id];
    case "location_batch":
      for (const t of message.data) technicians.set(t.technician_id, t);
      return message.data.map((t) => t.technician_id);
    case "technician_removed":
      return technicians.delete(message.technician_id) ? [message.technician_id] : [];
    default: // connected, resumed, pong, error, replay_done: the map does not change
      return [];
  }
}

/** The map after one server message, as a new state: `technicians` is replaced, never mutated (mergeMessage on a
 * copy). For reducers and tests; the client itself merges in place. */
export function applyMessage(state, message) {
  const cursor = message.cursor ?? state.cursor;
  const technicians = new Map(state.technicians);
  const changed = mergeMessage(technicians, message);
  if (changed !== null && changed.length === 0) {
    return cursor === state.cursor ? state : { technicians: state.technicians, cursor };
  }
  return { technicians, cursor };
}

/** Exponential backoff with full jitter: a delay in [0, min(max, base * 2^attempt)), never under `min`. */
export function backoffDelay(attempt, { base = 1000, max = 30000, min = 1000, random = Math.random } = {}) {
  const ceiling = Math.min(max, base * 2 ** Math.max(0, attempt));
  return Math.max(min, Math.floor(random() * ceiling));
}

const DEFAULTS = {
  url: null, // ws(s)://host/api/...; default: this page's origin
  apiBase: "", // where POLL_PATH is; default: this page's origin
  token: null, // or a function returning one; none: the access_token cookie
  enabled: true,
  autoReconnect: true,
  reconnectInterval: 1000, // the backoff's base (the seed waited this long every time)
  maxReconnectInterval: 30000,
  pingInterval: 30000,
  protocol: 2, // offer locstream.v2 (location_batch frames)
  pollAfterFailures: 3, // consecutive failed connects before polling
  pollInterval: 15000,
  query: "", // extra query string for the feed (e.g. replay_from=...&replay_to=...&speed=60)
  resume: true,
  WebSocket: globalThis.WebSocket,
  fetch: globalThis.fetch?.bind(globalThis),
  random: Math.random,
  onConnect: null,
  onDisconnect: null,
  onError: null,
  onMessage: null,
};

export class LocstreamClient extends EventTarget {
  constructor(options = {}) {
    super();
    this.options = { ...DEFAULTS, ...options };
    this.technicians = new Map(); // id -> location, mutated in place; `version` tells a change
    this.version = 0;
    this.cursor = null;
    this.isConnected = false;
    this.isConnecting = false;
    this.isPolling = false;
    this.error = null;
    this.filter = null; // the last subscribe, sent again after a reconnect
    this.updatesReceived = 0;
    this._socket = null;
    this._failures = 0;
    this._timers = { reconnect: null, ping: null, poll: null };
    this._closed = true;
    if (this.options.enabled) this.connect();
  }

  /** "live", "connecting", "polling" or "disconnected": what a badge shows. */
  get mode() {
    if (this.isConnected) return "live";
    if (this.isPolling) return "polling";
    if (this.isConnecting) return "connecting";
    return "disconnected";
  }

  connect() {
    this._closed = false;
    this._open();
  }

  /** Polling only (the map's "polling" toggle): no socket until connect(). */
  pollOnly() {
    this.close();
    this._startPolling();
  }

  /** Drop the socket and connect again at once (the seed hook's reconnect()). */
  reconnect() {
    this._failures = 0;
    this._clear("reconnect");
    this._closed = false;
    if (this._socket) {
      this._socket.onclose = null;
      this._socket.close(1000, "reconnect");
      this._socket = null;
    }
    this._setState({ isConnected: false });
    this._open();
  }

  close() {
    this._closed = true;
    for (const name of Object.keys(this._timers)) this._clear(name);
    if (this._socket) {
      this._socket.onclose = null;
      this._socket.close(1000, "client closed");
      this._socket = null;
    }
    this._setState({ isConnected: false, isConnecting: false, isPolling: false });
  }

  /** Watch only matching technicians ({bbox, technician_ids, status}); null: the whole tenant. */
  subscribe(filter) {
    this.filter = filter;
    this._send(JSON.stringify({ type: "subscribe", ...(filter ?? {}) }));
  }

  /** Send a control message as is (a paced replay's pause/resume/seek/speed). */
  sendControl(message) {
    this._send(JSON.stringify(message));
  }

  _url() {
    const base = this.options.url ?? `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}${FEED_PATH}`;
    return this.options.query ? `${base}${base.includes("?") ? "&" : "?"}${this.options.query}` : base;
  }

  _token() {
    const token = this.options.token;
    return typeof token === "function" ? token() : token;
  }

  _open() {
    if (this._closed || this._socket) return;
    this._setState({ isConnecting: true });
    const protocols = this.options.protocol === 2 ? ["locstream.v2", "locstream.v1"] : ["locstream.v1"];
    let socket;
    try {
      socket = new this.options.WebSocket(this._url(), protocols);
    } catch (error) {
      this._failed(error);
      return;
    }
    this._socket = socket;
    socket.onopen = () => {
      const token = this._token();
      if (token) {
        const auth = { type: "auth", token };
        if (this.options.resume && this.cursor) auth.cursor = this.cursor;
        socket.send(JSON.stringify(auth));
      }
      this._clear("ping");
      this._timers.ping = setInterval(() => this._send("ping"), this.options.pingInterval);
    };
    socket.onmessage = (event) => this._received(JSON.parse(event.data));
    socket.onerror = (event) => this.options.onError?.(event);
    socket.onclose = (event) => this._closedBy(event);
  }

  _received(message) {
    this.options.onMessage?.(message);
    if (message.type === "connected") {
      this._failures = 0;
      this._stopPolling();
      this._setState({ isConnected: true, isConnecting: false, error: null });
      if (this.filter) this._send(JSON.stringify({ type: "subscribe", ...this.filter }));
      this.options.onConnect?.();
    } else if (message.type === "error") {
      this._setState({ error: message.message });
    }
    if (message.type === "location_update") this.updatesReceived += 1;
    if (message.type === "location_batch") this.updatesReceived += message.data.length;
    const changed = mergeMessage(this.technicians, message);
    this.cursor = message.cursor ?? this.cursor;
    this.dispatchEvent(new CustomEvent("message", { detail: message }));
    if (changed === null || changed.length) this._changed(changed);
  }

  _closedBy(event) {
    const wasConnected = this.isConnected;
    this._socket = null;
    this._clear("ping");
    const reason = event.reason || `closed (${event.code})`;
    this._setState({ isConnected: false, isConnecting: false, error: event.code === 1000 ? this.error : reason });
    if (wasConnected) this.options.onDisconnect?.(event);
    else this._failures += 1;
    if (this._closed || !this.options.autoReconnect) return;
    if (event.code === 1008 || event.code === 4001) return; // a refused token: retrying does not help
    if (this._failures >= this.options.pollAfterFailures) this._startPolling();
    const delay = backoffDelay(this._failures, {
      base: this.options.reconnectInterval,
      max: this.options.maxReconnectInterval,
      min: Math.min(1000, this.options.reconnectInterval),
      random: this.options.random,
    });
    this._clear("reconnect");
    this._timers.reconnect = setTimeout(() => this._open(), delay);
  }

  _failed(error) {
    this._failures += 1;
    this._setState({ isConnecting: false, error: String(error) });
    this._closedBy({ code: 1006, reason: String(error) });
  }

  _startPolling() {
    if (this.isPolling || !this.options.fetch) return;
    this._setState({ isPolling: true });
    const poll = async () => {
      try {
        const token = this._token();
        const response = await this.options.fetch(`${this.options.apiBase}${POLL_PATH}`, {
          headers: token ? { Authorization: `Bearer ${token}` } : {},
          credentials: "same-origin",
        });
        if (!response.ok) throw new Error(`polling: HTTP ${response.status}`);
        const data = await response.json();
        if (!this.isPolling) return;
        // The cursor stays: when the socket is back, the client resumes from the last live update it had.
        mergeMessage(this.technicians, { type: "initial_state", data });
        this._changed(null);
      } catch (error) {
        this._setState({ error: String(error) });
      }
    };
    poll();
    this._timers.poll = setInterval(poll, this.options.pollInterval);
  }

  _stopPolling() {
    this._clear("poll");
    if (this.isPolling) this._setState({ isPolling: false });
  }

  /** `version` counts changes (the map is mutated in place); the event's `detail.changed` lists the ids changed,
   * or is null when the whole map was replaced. */
  _changed(ids) {
    this.version += 1;
    this.dispatchEvent(new CustomEvent("change", { detail: { changed: ids } }));
  }

  _send(text) {
    if (this._socket && this._socket.readyState === 1) this._socket.send(text);
  }

  _clear(name) {
    const timer = this._timers[name];
    if (timer !== null) {
      clearTimeout(timer);
      clearInterval(timer);
      this._timers[name] = null;
    }
  }

  _setState(changes) {
    let changed = false;
    for (const [key, value] of Object.entries(changes)) {
      if (this[key] !== value) {
        this[key] = value;
        changed = true;
      }
    }
    if (changed) this.dispatchEvent(new Event("status"));
  }
}
