// The dispatch map page (served by ws_edge at /map): Leaflet markers fed by locstream-client.
import { LocstreamClient } from "/client/locstream-client.js";

const L = window.L;
if (!L) {
  document.getElementById("error").textContent = "Leaflet is not installed on this edge: run `make run` (npm ci).";
  throw new Error("Leaflet missing");
}
const STATUS_COLOURS = { available: "#1f9d55", on_job: "#2b6cb0", en_route: "#d69e2e", break: "#805ad5", offline: "#718096" };
const TOKEN_KEY = "locstream.token";
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search); // only timing knobs are read from the URL, never a token or URL

const config = await (await fetch("/map/config.json")).json();
const map = L.map("map", { worldCopyJump: true }).setView(config.center, config.zoom);
if (config.tile_url) {
  L.tileLayer(config.tile_url, { attribution: config.tile_attribution, maxZoom: 19 }).addTo(map);
}
const graticule = L.layerGroup().addTo(map);
drawGraticule();
map.on("moveend", drawGraticule);

const markers = new Map(); // technician_id -> marker
const fences = new Map(); // geofence_id -> its circle or polygon layer
const fenceLayer = L.layerGroup().addTo(map);
const toasts = []; // the geofence events shown, newest last (tests read them)
let client = null;
let replay = null;
let updatesSeen = 0;
let fitted = false; // the view goes to the fleet once, when it first shows

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

function age(iso) {
  const seconds = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (seconds < 90) return `${seconds} s ago`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min ago`;
  return `${Math.round(seconds / 3600)} h ago`;
}

function label(t) {
  const name = document.createElement("span");
  name.textContent = `${t.technician_name} · ${t.status}${t.stale ? " (stale)" : ""} · ${age(t.last_update)}`;
  return name;
}

function render(technicians) {
  for (const [id, marker] of markers) {
    if (!technicians.has(id)) {
      marker.remove();
      markers.delete(id);
    }
  }
  for (const [id, t] of technicians) {
    const colour = t.stale ? "#a0aec0" : STATUS_COLOURS[t.status] ?? "#2d3748";
    const style = { radius: 8, color: "#1a202c", weight: 1, fillColor: colour, fillOpacity: t.stale ? 0.5 : 0.9 };
    let marker = markers.get(id);
    if (!marker) {
      marker = L.circleMarker([t.latitude, t.longitude], style);
      marker.technician = t;
      marker.bindTooltip(label(t), { permanent: true, direction: "right", offset: [8, 0] }).addTo(map);
      markers.set(id, marker);
    } else {
      marker.setLatLng([t.latitude, t.longitude]);
      marker.setStyle(style);
    }
    marker.technician = t;
    marker.setTooltipContent(label(t));
  }
  $("count").textContent = String(technicians.size);
  if (!fitted && technicians.size) {
    fitted = true;
    map.fitBounds(L.latLngBounds([...technicians.values()].map((t) => [t.latitude, t.longitude])).pad(0.3), { maxZoom: 14, animate: false });
  }
}

// Job sites: the edge sends the tenant's fences after the initial state, then each change; arrivals and departures
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

function onFenceMessage(m) {
  if (m.type === "connected") {
    fenceLayer.clearLayers(); // the fences come again after the initial state, as they are now
    fences.clear();
  } else if (m.type === "geofence_updated") drawFence(m.data);
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

function viewportFilter() {
  if (!$("viewport").checked) return null;
  const b = map.getBounds();
  return { bbox: [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()].map((v) => Math.round(v * 1e6) / 1e6) };
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
  client.filter = viewportFilter();
  client.addEventListener("change", () => replay || render(client.technicians));
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
  render(new Map());
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
$("viewport").addEventListener("change", () => client?.subscribe(viewportFilter()));
map.on("moveend", () => {
  if ($("viewport").checked) client?.subscribe(viewportFilter());
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
  replay.addEventListener("change", () => render(replay.technicians));
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
  render(client?.technicians ?? new Map());
  showMode();
});

setInterval(() => {
  $("rate").textContent = String(updatesSeen);
  updatesSeen = 0;
  for (const marker of markers.values()) marker.setTooltipContent(label(marker.technician)); // the ages move on
}, 1000);

window.locstreamMap = { map, markers, fences, toasts, client, replay };
const now = new Date();
$("replay-to").value = localInput(now);
$("replay-from").value = localInput(new Date(now - 3600_000));
function localInput(date) {
  return new Date(date - date.getTimezoneOffset() * 60_000).toISOString().slice(0, 19);
}
signIn();
showMode();
