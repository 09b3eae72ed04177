// The dispatch map page (served by ws_edge at /map), fed by locstream-client: the fleet clustered by zoom on one
// canvas (fleet-layer.js, clusters.js), gliding markers and trails (fleet.js), search, status chips, follow and a
// details panel (search.js, details.js), land and borders when no tile server is set (geography.js).
import { LocstreamClient } from "/client/locstream-client.js";
import { ClusterIndex, COLOURS, STATUSES } from "./clusters.js";
import { detailRows, historyLinks } from "./details.js";
import { FleetLayer } from "./fleet-layer.js";
import { Fleet, GLIDE_MAX_MS, Trails } from "./fleet.js";
import { drawGeography } from "./geography.js";
import { SearchBox } from "./search.js";

const L = window.L;
if (!L) {
  document.getElementById("error").textContent = "Leaflet is not installed on this edge: run `make run` (npm ci).";
  throw new Error("Leaflet missing");
}
const STATUS_LABELS = { available: "Available", on_job: "On job", en_route: "En route", break: "Break", offline: "Offline" };
const TRAIL_LIMIT = 100; // technicians whose trails are fetched for one view
const CLUSTER_EVERY_MS = 500; // the index is rebuilt at most this often while positions change
const TOKEN_KEY = "locstream.token";
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search); // only timing knobs are read from the URL, never a token or URL

const config = await (await fetch("/map/config.json")).json();
const map = L.map("map", { worldCopyJump: true, maxZoom: 19 }).setView(config.center, config.zoom);
const historyBase = config.history_base || "";
if (config.tile_url) {
  L.tileLayer(config.tile_url, { attribution: config.tile_attribution, maxZoom: 19 }).addTo(map);
} else {
  drawGeography(map).catch((error) => { $("error").textContent = `No land drawn: ${error.message}`; });
}
const graticule = L.layerGroup().addTo(map);
drawGraticule();
map.on("moveend", drawGraticule);

const glideMaxMs = Number(params.get("glide_max_ms") ?? GLIDE_MAX_MS);
const fleet = new Fleet({ glideMaxMs: Number.isFinite(glideMaxMs) && glideMaxMs >= 0 ? glideMaxMs : GLIDE_MAX_MS });
const trails = new Trails(0);
const clusters = new ClusterIndex("/map/static/clusters-worker.js");
let following = null; // the technician the view tracks, until the user pans
let selected = null; // the technician in the details panel
const layer = new FleetLayer({
  fleet, clusters, trails, onSelect: (id) => select(id), isFollowing: () => Boolean(following), beforeDraw: keepFollowing,
});
layer.addTo(map);
const fences = new Map(); // geofence_id -> its circle or polygon layer
const fenceLayer = L.layerGroup().addTo(map);
const toasts = []; // the geofence events shown, newest last (tests read them)
let client = null;
let replay = null;
let updatesSeen = 0;
let fitted = false; // the view goes to the fleet once, when it first shows
let clustersDirty = false;

function drawGraticule() {
  // Lines every few degrees (finer as one zooms in): the map reads without any tile server.
  graticule.clearLayers();
  const target = (360 / 2 ** map.getZoom()) * 0.8; // about 200 px apart at any zoom
  const steps = [30, 10, 5, 2, 1, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001, 0.0005];
  const step = steps.find((s) => s <= target) ?? steps.at(-1);
  const b = map.getBounds().pad(0.5);
  const style = { className: "graticule", weight: 1, interactive: false };
  for (let lat = Math.ceil(Math.max(-85, b.getSouth()) / step) * step; lat <= Math.min(85, b.getNorth()); lat += step) {
    graticule.addLayer(L.polyline([[lat, b.getWest()], [lat, b.getEast()]], style));
  }
  for (let lng = Math.ceil(b.getWest() / step) * step; lng <= b.getEast(); lng += step) {
    graticule.addLayer(L.polyline([[Math.max(-85, b.getSouth()), lng], [Math.min(85, b.getNorth()), lng]], style));
  }
}

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
  if (selected && (changed === null || changed.includes(selected))) showDetails();
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
clusters.addEventListener("answer", () => fetchTrails());
clusters.addEventListener("error", () => { $("error").textContent = clusters.error; });
askClusters();

// Trails: the last N minutes of each technician shown alone (and the selected one), from the history endpoint once,
// then extended by the live updates (Trails.add); a few requests at a time.
const trailQueue = [];
let trailFetches = 0;
function fetchTrails() {
  if (!trails.minutes) return;
  const wanted = [...(selected ? [selected] : []), ...clusters.singles].slice(0, TRAIL_LIMIT);
  for (const id of wanted) {
    if (trails.has(id)) continue;
    trails.begin(id);
    trailQueue.push(id);
  }
  pumpTrails();
}

async function pumpTrails() {
  while (trailFetches < 4 && trailQueue.length) {
    const id = trailQueue.shift();
    trailFetches += 1;
    const minutes = trails.minutes;
    const query = new URLSearchParams({ start_time: new Date(Date.now() - minutes * 60_000).toISOString(), limit: "1000" });
    const url = `${historyBase}/api/v1/field-service/technicians/${encodeURIComponent(id)}/location-history?${query}`;
    authorizedFetch(url)
      .then(async (response) => {
        if (response.ok && trails.minutes === minutes) trails.loadHistory(id, (await response.json()).locations);
        else if (!response.ok) $("error").textContent = `Trail of ${id}: HTTP ${response.status}`;
      })
      .catch((error) => { $("error").textContent = `Trail of ${id}: ${error.message}`; })
      .finally(() => {
        trailFetches -= 1;
        layer.redraw();
        pumpTrails();
      });
  }
}

function authorizedFetch(url) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return fetch(url, { headers: token ? { Authorization: `Bearer ${token}` } : {}, credentials: "same-origin" });
}

$("trails").addEventListener("change", () => {
  trails.setMinutes(Number($("trails").value));
  trailQueue.length = 0;
  fetchTrails();
  layer.redraw();
});

// Selection, details and follow.
function select(id) {
  selected = id;
  layer.select(id);
  const shown = fleet.shown(id, performance.now());
  if (shown) map.setView(shown, Math.max(map.getZoom(), 15), { animate: false });
  $("details").hidden = false;
  $("details-status").textContent = "";
  showDetails();
  showLinks();
  fetchTrails();
}

function showDetails() {
  const t = fleet.tracks.get(selected)?.location;
  if (!t) {
    $("details-status").textContent = selected ? `${selected} is not on the map now` : "";
    return;
  }
  $("details-title").textContent = t.technician_name;
  $("details-rows").replaceChildren(...detailRows(t).flatMap(([label, value]) => {
    const dt = document.createElement("dt");
    const dd = document.createElement("dd");
    dt.textContent = label;
    dd.textContent = value; // text: names come from the tenant's data
    return [dt, dd];
  }));
}

function showLinks() {
  $("details-links").replaceChildren(...historyLinks(historyBase, selected).map(({ label, href, filename }, i) => {
    const item = document.createElement("li");
    const link = document.createElement("a");
    link.href = href;
    link.dataset.index = String(i);
    link.textContent = label;
    link.dataset.filename = filename;
    item.append(link);
    return item;
  }));
}

// The links need the bearer token: a click fetches with it and saves what came (the address stays copyable).
$("details-links").addEventListener("click", async (event) => {
  const link = event.target.closest("a");
  if (!link) return;
  event.preventDefault();
  link.href = historyLinks(historyBase, selected)[Number(link.dataset.index)].href; // up to now, not to the select
  $("details-status").textContent = `Fetching ${link.textContent}…`;
  try {
    const response = await authorizedFetch(link.href);
    if (!response.ok) {
      const reason = await response.json().then((body) => body.detail ?? body.message, () => "");
      $("details-status").textContent = `${link.textContent}: HTTP ${response.status} ${reason ?? ""}`.trim();
      return;
    }
    const blob = await response.blob();
    const save = document.createElement("a");
    save.href = URL.createObjectURL(blob);
    save.download = link.dataset.filename;
    save.click();
    setTimeout(() => URL.revokeObjectURL(save.href), 10_000);
    $("details-status").textContent = `${link.textContent}: ${blob.size} bytes saved`;
  } catch (error) {
    $("details-status").textContent = `${link.textContent}: ${error.message}`;
  }
});

function setFollowing(id) {
  following = id;
  $("follow").setAttribute("aria-pressed", String(Boolean(id)));
  $("follow").textContent = id ? "Following" : "Follow";
  layer.redraw();
}

function closeDetails() {
  selected = null;
  setFollowing(null);
  layer.select(null);
  $("details").hidden = true;
}

$("follow").addEventListener("click", () => setFollowing(following ? null : selected));
$("details-close").addEventListener("click", closeDetails);
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && !$("details").hidden && event.target.id !== "search") closeDetails();
});
// Follow: keep the technician inside the middle of the view; the user's own pan ends it.
map.on("dragstart", () => setFollowing(null));
map.getContainer().addEventListener("keydown", (event) => {
  if (event.key.startsWith("Arrow")) setFollowing(null);
  if (event.key === "Enter" && event.target === map.getContainer()) {
    layer.open(layer.nearest(map.getSize().divideBy(2)));
  }
});
/** Called by the layer before each draw: the followed technician back into the middle half of the view. */
function keepFollowing(now) {
  const shown = following && fleet.shown(following, now);
  if (!shown) return;
  const point = map.latLngToContainerPoint(shown);
  const size = map.getSize();
  const inside = point.x > size.x * 0.25 && point.x < size.x * 0.75 && point.y > size.y * 0.25 && point.y < size.y * 0.75;
  if (!inside) map.panTo(shown, { animate: false });
}

// Status chips: each one pressed shows that status; the edge sends only what the chips ask for (a subscribe).
const chips = new Map();
for (const status of STATUSES) {
  const chip = document.createElement("button");
  chip.type = "button";
  chip.className = "chip";
  chip.dataset.status = status;
  chip.setAttribute("aria-pressed", "true");
  chip.style.setProperty("--colour", COLOURS[STATUSES.indexOf(status)]);
  chip.textContent = STATUS_LABELS[status];
  chip.addEventListener("click", () => {
    chip.setAttribute("aria-pressed", String(chip.getAttribute("aria-pressed") !== "true"));
    client?.subscribe(currentFilter());
  });
  chips.set(status, chip);
  $("chips").append(chip);
}

function chipCounts() {
  const counts = new Map(STATUSES.map((status) => [status, 0]));
  for (const track of fleet.tracks.values()) {
    const status = track.location.status;
    if (counts.has(status)) counts.set(status, counts.get(status) + 1);
  }
  for (const [status, chip] of chips) chip.textContent = `${STATUS_LABELS[status]} ${counts.get(status).toLocaleString()}`;
}

new SearchBox($("search"), $("search-results"), {
  source: () => [...fleet.tracks.values()].map((track) => track.location),
  onPick: (id) => select(id),
});

// Job sites: the edge sends the tenant's fences after the initial state (or those of the view the map asks for, for
// a tenant with many: askFences), then each change; arrivals and departures
// come as geofence_event (a toast, and a browser notification when the dispatcher allowed them).
function drawFence(fence) {
  fences.get(fence.geofence_id)?.remove();
  const g = fence.geometry;
  const style = { color: "#2b6cb0", weight: 2, fillOpacity: 0.08, interactive: true };
  const layer = g.type === "Circle"
    ? L.circle([g.latitude, g.longitude], { ...style, radius: g.radius_meters })
    : L.polygon(g.coordinates[0].map(([lng, lat]) => [lat, lng]), style);
  const name = document.createElement("span");
  name.textContent = fence.name || fence.title || fence.job_id || fence.geofence_id; // text: a string would be HTML
  layer.bindTooltip(name);
  layer.fence = fence;
  fenceLayer.addLayer(layer);
  fences.set(fence.geofence_id, layer);
}

function removeFence(id) {
  fences.get(id)?.remove();
  fences.delete(id);
}

function toast(event) {
  toasts.push(event);
  const div = document.createElement("div");
  div.className = `toast ${event.event_type}`;
  div.textContent = event.message; // text, never HTML: names come from the tenant's data
  $("toasts").append(div);
  setTimeout(() => div.remove(), Number(params.get("toast_ms") ?? 8000));
  if (window.Notification?.permission === "granted") new Notification(event.message, { tag: event.geofence_id });
}

// A tenant with many fences sends none up front: the map asks for those of its view (padded by half a view each
// way), again whenever the view leaves what it asked for, at most every FENCES_EVERY_MS (the edge answers one
// request every 500 ms).
const FENCES_EVERY_MS = 600;
let fencesAsked = null; // the padded bounds last asked for
let fencesAskedAt = 0;
let fencesTimer = null;

function askFences(force) {
  if (!client || replay) return;
  if (!force && fencesAsked && fencesAsked.contains(map.getBounds())) return;
  const wait = fencesAskedAt + FENCES_EVERY_MS - Date.now();
  if (wait > 0) {
    clearTimeout(fencesTimer);
    fencesTimer = setTimeout(() => askFences(force), wait);
    return;
  }
  const padded = map.getBounds().pad(0.5);
  const [south, north] = [Math.max(-90, padded.getSouth()), Math.min(90, padded.getNorth())];
  const wrap = (lng) => ((((lng + 180) % 360) + 360) % 360) - 180; // into [-180, 180): west > east crosses 180
  const bbox = padded.getEast() - padded.getWest() >= 360
    ? [-180, south, 180, north]
    : [wrap(padded.getWest()), south, wrap(padded.getEast()), north];
  fencesAsked = padded;
  fencesAskedAt = Date.now();
  client.sendControl({ type: "fences", bbox: bbox.map((v) => Math.round(v * 1e6) / 1e6) });
}

function onFenceMessage(m) {
  if (m.type === "connected") {
    fenceLayer.clearLayers(); // the fences come again after the initial state, as they are now
    fences.clear();
    fencesAsked = null;
  } else if ((m.type === "initial_state" && !m.answers) || m.type === "resumed") {
    // After the map has gone to the fleet (on the same message's change, a first time), not for the world view it
    // showed before: that asked for the first fences by id anywhere. Unless the move itself asked already.
    setTimeout(() => fencesAsked === null && askFences(true), 0);
  }
  else if (m.type === "geofence_updated") drawFence(m.data);
  else if (m.type === "geofence_removed") removeFence(m.data.geofence_id);
  else if (m.type === "geofence_event") toast(m.data);
}

$("notify").addEventListener("click", async () => {
  if (!window.Notification) return;
  $("notify").textContent = (await Notification.requestPermission()) === "granted" ? "Notifications on" : "Notifications blocked";
});

function showMode() {
  const mode = replay ? replay.mode : client?.mode ?? "disconnected";
  const badge = $("badge");
  badge.className = `badge ${mode}`;
  badge.dataset.mode = mode;
  badge.textContent = { live: "Live", polling: "Polling", connecting: "Connecting", disconnected: "Disconnected" }[mode];
  $("error").textContent = (replay ?? client)?.error ?? "";
}

/** What the client watches: the view when "only what is in view" is on, the statuses of the pressed chips. */
function currentFilter() {
  const filter = {};
  if ($("viewport").checked) {
    const b = map.getBounds();
    filter.bbox = [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()].map((v) => Math.round(v * 1e6) / 1e6);
  }
  const pressed = [...chips.values()].filter((chip) => chip.getAttribute("aria-pressed") === "true");
  if (pressed.length < chips.size) filter.status = pressed.map((chip) => chip.dataset.status);
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
  client.addEventListener("change", (event) => replay || onChange(client.technicians, event.detail.changed));
  client.addEventListener("status", showMode);
  client.addEventListener("message", (event) => {
    const m = event.detail;
    onFenceMessage(m);
    updatesSeen += m.type === "location_update" ? 1 : m.type === "location_batch" ? m.data.length : 0;
  });
  if (document.querySelector('input[name="mode"]:checked').value === "polling") client.pollOnly();
  window.locstreamMap.client = client;
  showMode();
}

function signIn() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  $("login").hidden = Boolean(token);
  if (token) start(token);
}

$("login").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
  $("token").value = "";
  signIn();
});
$("use-cookie").addEventListener("click", () => {
  $("login").hidden = true;
  start(null);
});
$("logout").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  client?.close();
  client = null;
  onChange(new Map(), null);
  closeDetails();
  showMode();
  $("login").hidden = false;
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
  askFences(false);
});

// Replay: a second connection to the same URL with replay_from/replay_to/speed; the live map waits meanwhile.
function isoOf(input) {
  return new Date(input.value).toISOString(); // datetime-local is the browser's local time
}
$("replay").addEventListener("submit", (event) => {
  event.preventDefault();
  replay?.close();
  const query = new URLSearchParams({
    replay_from: isoOf($("replay-from")), replay_to: isoOf($("replay-to")), speed: $("replay-speed").value || "60",
  });
  replay = new LocstreamClient({
    url: config.feed_url || null, token: sessionStorage.getItem(TOKEN_KEY), query: query.toString(),
    autoReconnect: false, resume: false,
  });
  replay.addEventListener("change", (e) => onChange(replay.technicians, e.detail.changed));
  replay.addEventListener("status", showMode);
  replay.addEventListener("message", (e) => {
    if (e.detail.type === "initial_state") $("replay-status").textContent = "replaying…";
    if (e.detail.type === "replay_done") $("replay-status").textContent = `replay done (${e.detail.events} updates)`;
  });
  $("replay-status").textContent = "starting…";
  $("replay-pause").disabled = false;
  $("replay-stop").disabled = false;
  window.locstreamMap.replay = replay;
});
$("replay-pause").addEventListener("click", () => {
  const paused = $("replay-pause").textContent === "Resume";
  replay?.sendControl({ type: paused ? "resume" : "pause" });
  $("replay-pause").textContent = paused ? "Pause" : "Resume";
});
$("replay-stop").addEventListener("click", () => {
  replay?.close();
  replay = null;
  window.locstreamMap.replay = null;
  $("replay-status").textContent = "";
  $("replay-pause").disabled = true;
  $("replay-stop").disabled = true;
  onChange(client?.technicians ?? new Map(), null);
  showMode();
});

setInterval(() => {
  $("rate").textContent = String(updatesSeen);
  updatesSeen = 0;
  chipCounts();
  if (selected) showDetails(); // the time since the last fix moves on
  layer.redraw(); // and so do the ages in the labels
}, 1000);

window.locstreamMap = {
  map, fleet, clusters, trails, layer, fences, toasts, client, replay, select,
  /** Where a technician's latest fix is, and where its marker is drawn now ([lat, lng]; null when not shown). */
  at: (id) => fleet.tracks.get(id)?.to ?? null,
  shown: (id) => fleet.shown(id, performance.now()),
  get following() { return following; },
  get selected() { return selected; },
};
const now = new Date();
$("replay-to").value = localInput(now);
$("replay-from").value = localInput(new Date(now - 3600_000));
function localInput(date) {
  return new Date(date - date.getTimezoneOffset() * 60_000).toISOString().slice(0, 19);
}
signIn();
showMode();
