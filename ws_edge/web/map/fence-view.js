// Job sites: the edge sends the tenant's fences after the initial state (or, for a tenant with many, those of the
// view the map asks for: ask), then each change; arrivals and departures come as geofence_event: a toast, and a
// browser notification when the dispatcher allowed them.
import { $, params } from "./page.js";

// A tenant with many fences sends none up front: the map asks for those of its view (padded by half a view each
// way), again whenever the view leaves what it asked for, at most this often (the edge answers one request every
// 500 ms).
const FENCES_EVERY_MS = 600;

export class FenceView {
  fences = new Map(); // geofence_id -> its circle or polygon layer
  toasts = []; // the geofence events shown, newest last (tests read them)
  #asked = null; // the padded bounds last asked for
  #askedAt = 0;
  #timer = null;

  /** `feed()`: the live client to ask for fences, or null (none, or a replay is on). */
  constructor(map, feed) {
    this.map = map;
    this.feed = feed;
    this.layer = window.L.layerGroup().addTo(map);
    $("notify").addEventListener("click", async () => {
      if (!window.Notification) return;
      const answer = await Notification.requestPermission();
      $("notify").textContent = answer === "granted" ? "Notifications on" : "Notifications blocked";
    });
  }

  /** A feed message: fences drawn, changed and removed, crossings shown. */
  onMessage(m) {
    if (m.type === "connected") {
      this.layer.clearLayers(); // the fences come again after the initial state, as they are now
      this.fences.clear();
      this.#asked = null;
    } else if ((m.type === "initial_state" && !m.answers) || m.type === "resumed") {
      // After the map has gone to the fleet (on the same message's change, a first time), not for the world view it
      // showed before: that asked for the first fences by id anywhere. Unless the move itself asked already.
      setTimeout(() => this.#asked === null && this.ask(true), 0);
    } else if (m.type === "geofence_updated") this.#draw(m.data);
    else if (m.type === "geofence_removed") this.#remove(m.data.geofence_id);
    else if (m.type === "geofence_event") this.#toast(m.data);
  }

  /** Ask for the fences of the view, unless what was asked last covers it (`force`: whatever was asked). */
  ask(force) {
    const feed = this.feed();
    if (!feed) return;
    const map = this.map;
    if (!force && this.#asked && this.#asked.contains(map.getBounds())) return;
    const wait = this.#askedAt + FENCES_EVERY_MS - Date.now();
    if (wait > 0) {
      clearTimeout(this.#timer);
      this.#timer = setTimeout(() => this.ask(force), wait);
      return;
    }
    const padded = map.getBounds().pad(0.5);
    const [south, north] = [Math.max(-90, padded.getSouth()), Math.min(90, padded.getNorth())];
    const wrap = (lng) => ((((lng + 180) % 360) + 360) % 360) - 180; // into [-180, 180): west > east crosses 180
    const bbox = padded.getEast() - padded.getWest() >= 360
      ? [-180, south, 180, north]
      : [wrap(padded.getWest()), south, wrap(padded.getEast()), north];
    this.#asked = padded;
    this.#askedAt = Date.now();
    feed.sendControl({ type: "fences", bbox: bbox.map((v) => Math.round(v * 1e6) / 1e6) });
  }

  #draw(fence) {
    this.fences.get(fence.geofence_id)?.remove();
    const g = fence.geometry;
    const style = { color: "#2b6cb0", weight: 2, fillOpacity: 0.08, interactive: true };
    const shape = g.type === "Circle"
      ? window.L.circle([g.latitude, g.longitude], { ...style, radius: g.radius_meters })
      : window.L.polygon(g.coordinates[0].map(([lng, lat]) => [lat, lng]), style);
    const name = document.createElement("span");
    name.textContent = fence.name || fence.title || fence.job_id || fence.geofence_id; // text: a string would be HTML
    shape.bindTooltip(name);
    shape.fence = fence;
    this.layer.addLayer(shape);
    this.fences.set(fence.geofence_id, shape);
  }

  #remove(id) {
    this.fences.get(id)?.remove();
    this.fences.delete(id);
  }

  #toast(event) {
    this.toasts.push(event);
    const div = document.createElement("div");
    div.className = `toast ${event.event_type}`;
    div.textContent = event.message; // text, never HTML: names come from the tenant's data
    $("toasts").append(div);
    setTimeout(() => div.remove(), Number(params.get("toast_ms") ?? 8000));
    if (window.Notification?.permission === "granted") new Notification(event.message, { tag: event.geofence_id });
  }
}
