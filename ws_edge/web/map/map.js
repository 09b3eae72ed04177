// The dispatch map page (served by ws_edge at /map), fed by locstream-client. This module puts the page's parts
// together; each lives in a module of its own:
// - the fleet clustered by zoom on one canvas (fleet-layer.js, clusters.js), gliding markers and trails (fleet.js),
//   the trails' history (trail-fetcher.js);
// - the details panel and follow (details-panel.js, details.js), search (search.js), status chips (status-chips.js);
// - job sites and their arrival toasts (fence-view.js), the replay panel (replay-panel.js), sign-in (sign-in.js);
// - land, borders and a graticule when no tile server is set (geography.js).
import { LocstreamClient } from "/client/locstream-client.js";
import { ClusterIndex } from "./clusters.js";
import { DetailsPanel } from "./details-panel.js";
import { FenceView } from "./fence-view.js";
import { FleetLayer } from "./fleet-layer.js";
import { Fleet, GLIDE_MAX_MS, Trails } from "./fleet.js";
import { drawGeography, drawGraticule } from "./geography.js";
import { $, params } from "./page.js";
import { ReplayPanel } from "./replay-panel.js";
import { SearchBox } from "./search.js";
import { bindSignIn } from "./sign-in.js";
import { StatusChips } from "./status-chips.js";
import { TrailFetcher } from "./trail-fetcher.js";

const L = window.L;
if (!L) {
  $("error").textContent = "Leaflet is not installed on this edge: run `make run` (npm ci).";
  throw new Error("Leaflet missing");
}
const CLUSTER_EVERY_MS = 500; // the index is rebuilt at most this often while positions change

const config = await (await fetch("/map/config.json")).json();
const map = L.map("map", { worldCopyJump: true, maxZoom: 19 }).setView(config.center, config.zoom);
const historyBase = config.history_base || "";
if (config.tile_url) {
  L.tileLayer(config.tile_url, { attribution: config.tile_attribution, maxZoom: 19 }).addTo(map);
} else {
  drawGeography(map).catch((error) => { $("error").textContent = `No land drawn: ${error.message}`; });
}
drawGraticule(map);

const glideMaxMs = Number(params.get("glide_max_ms") ?? GLIDE_MAX_MS);
const fleet = new Fleet({ glideMaxMs: Number.isFinite(glideMaxMs) && glideMaxMs >= 0 ? glideMaxMs : GLIDE_MAX_MS });
const trails = new Trails(0);
const clusters = new ClusterIndex("/map/static/clusters-worker.js");
const details = new DetailsPanel({ map, fleet, historyBase, onSelect: () => trailFetcher.fetch() });
const layer = new FleetLayer({
  fleet,
  clusters,
  trails,
  onSelect: (id) => details.select(id),
  isFollowing: () => Boolean(details.following),
  beforeDraw: (now) => details.keepFollowing(now),
});
details.attach(layer);
layer.addTo(map);
const trailFetcher = new TrailFetcher({
  trails,
  historyBase,
  wanted: () => [...(details.selected ? [details.selected] : []), ...clusters.singles],
  onLoaded: () => layer.redraw(),
});
const chips = new StatusChips(() => client?.subscribe(currentFilter()));
const fenceView = new FenceView(map, () => (replayPanel.client ? null : client));
const replayPanel = new ReplayPanel({
  feedUrl: config.feed_url || null,
  onChange: (technicians, changed) => onChange(technicians, changed),
  onStatus: showMode,
  onStop: () => {
    onChange(client?.technicians ?? new Map(), null);
    showMode();
  },
});
new SearchBox($("search"), $("search-results"), {
  source: () => [...fleet.tracks.values()].map((track) => track.location),
  onPick: (id) => details.select(id),
});
let client = null; // the live feed, once signed in
let updatesSeen = 0;
let fitted = false; // the view goes to the fleet once, when it first shows
let clustersDirty = false;

/** The fleet after a change of the client's map (`changed`: the ids, or null when it was replaced). */
function onChange(technicians, changed) {
  const now = performance.now();
  if (changed === null) {
    fleet.reset(technicians, now);
    trails.clear();
  } else {
    for (const id of changed) {
      const t = technicians.get(id);
      if (!t) fleet.remove(id);
      else {
        fleet.update(t, now);
        trails.add(t);
      }
    }
  }
  clustersDirty = true;
  $("count").textContent = String(fleet.size);
  if (details.selected && (changed === null || changed.includes(details.selected))) details.show();
  if (!fitted && fleet.size) {
    fitted = true;
    let south = 90, west = 180, north = -90, east = -180;
    for (const t of technicians.values()) {
      south = Math.min(south, t.latitude); north = Math.max(north, t.latitude);
      west = Math.min(west, t.longitude); east = Math.max(east, t.longitude);
    }
    map.fitBounds(L.latLngBounds([south, west], [north, east]).pad(0.3), { maxZoom: 14, animate: false });
  }
  layer.redraw();
}

function askClusters() {
  const b = map.getBounds();
  const [south, north] = [Math.max(-90, b.getSouth()), Math.min(90, b.getNorth())];
  // supercluster wraps longitudes itself (a view across the antimeridian is asked as its two halves)
  const bbox = b.getEast() - b.getWest() >= 360 ? [-180, south, 180, north] : [b.getWest(), south, b.getEast(), north];
  clusters.query(bbox, Math.round(map.getZoom()));
}

setInterval(() => {
  if (!clustersDirty) return;
  clustersDirty = false;
  clusters.load(fleet.tracks);
}, CLUSTER_EVERY_MS);
map.on("moveend", askClusters);
clusters.addEventListener("answer", () => trailFetcher.fetch());
clusters.addEventListener("error", () => { $("error").textContent = clusters.error; });
askClusters();

function showMode() {
  const replay = replayPanel.client;
  const mode = replay ? replay.mode : client?.mode ?? "disconnected";
  const badge = $("badge");
  badge.className = `badge ${mode}`;
  badge.dataset.mode = mode;
  badge.textContent = { live: "Live", polling: "Polling", connecting: "Connecting", disconnected: "Disconnected" }[mode];
  $("error").textContent = (replay ?? client)?.error ?? "";
}

/** What the client watches: the view when "only what is in view" is on, the statuses of the pressed chips, and the
 * offline ones unless their chip is released. */
function currentFilter() {
  const filter = {};
  if ($("viewport").checked) {
    const b = map.getBounds();
    filter.bbox = [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()].map((v) => Math.round(v * 1e6) / 1e6);
  }
  const statuses = chips.statuses();
  if (statuses) filter.status = statuses;
  const presence = chips.presence();
  if (presence) filter.presence = presence;
  return Object.keys(filter).length ? filter : null;
}

function start(token) {
  client?.close();
  client = new LocstreamClient({
    url: config.feed_url || null,
    apiBase: config.api_base || "",
    token: token || null, // none: the access_token cookie goes with the upgrade
    reconnectInterval: Number(params.get("reconnect_ms") ?? 1000),
    maxReconnectInterval: Number(params.get("max_reconnect_ms") ?? 30000),
    pollAfterFailures: Number(params.get("poll_after") ?? 3),
    pollInterval: Number(params.get("poll_ms") ?? 15000),
  });
  client.filter = currentFilter();
  client.addEventListener("change", (event) => replayPanel.client || onChange(client.technicians, event.detail.changed));
  client.addEventListener("status", showMode);
  client.addEventListener("message", (event) => {
    const m = event.detail;
    fenceView.onMessage(m);
    updatesSeen += m.type === "location_update" ? 1 : m.type === "location_batch" ? m.data.length : 0;
  });
  if (document.querySelector('input[name="mode"]:checked').value === "polling") client.pollOnly();
  showMode();
}

const signIn = bindSignIn({
  start,
  stop: () => {
    client?.close();
    client = null;
    onChange(new Map(), null);
    details.close();
    showMode();
  },
});
for (const radio of document.querySelectorAll('input[name="mode"]')) {
  radio.addEventListener("change", () => {
    if (!client) return;
    if (radio.value === "polling" && radio.checked) client.pollOnly();
    if (radio.value === "live" && radio.checked) client.connect();
  });
}
$("viewport").addEventListener("change", () => client?.subscribe(currentFilter()));
map.on("moveend", () => {
  if ($("viewport").checked) client?.subscribe(currentFilter());
  fenceView.ask(false);
});

setInterval(() => {
  $("rate").textContent = String(updatesSeen);
  updatesSeen = 0;
  chips.count(fleet.tracks);
  if (details.selected) details.show(); // the time since the last fix moves on
  layer.redraw(); // and so do the ages in the labels
}, 1000);

window.locstreamMap = {
  map, fleet, clusters, trails, layer, fences: fenceView.fences, toasts: fenceView.toasts,
  select: (id) => details.select(id),
  get client() { return client; },
  get replay() { return replayPanel.client; },
  /** Where a technician's latest fix is, and where its marker is drawn now ([lat, lng]; null when not shown). */
  at: (id) => fleet.tracks.get(id)?.to ?? null,
  shown: (id) => fleet.shown(id, performance.now()),
  get following() { return details.following; },
  get selected() { return details.selected; },
};
signIn();
showMode();
