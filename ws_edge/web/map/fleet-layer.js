// The fleet drawn on one canvas over the map: clusters (a ring of status colours and the count), technicians shown
// alone (gliding; named when few), their trails and the selection. One canvas and one draw per animation frame,
// only while something moves: 10,000 technicians as DOM or SVG markers would not keep 30 frames a second.
// Clicks are hit-tested here: a cluster zooms in to where it splits, a technician is selected.
import { categoryOf, COLOURS, STALE } from "./clusters.js";
import { motionText } from "./details.js";
import { age } from "./fleet.js";

const L = window.L;
const LABEL_LIMIT = 40; // technicians shown alone: names are drawn when there are at most this many
const DOT = 7; // px, a technician's radius

function clusterRadius(count) {
  return Math.min(28, 13 + 4 * Math.log10(count)); // 13 px for 1, 21 for 100, 28 for 5,000 and more
}

export const FleetLayer = L.Layer.extend({
  initialize({ fleet, clusters, trails, onSelect, isFollowing, beforeDraw }) {
    this.fleet = fleet;
    this.clusters = clusters;
    this.trails = trails;
    this.onSelect = onSelect;
    this.isFollowing = isFollowing;
    this.beforeDraw = beforeDraw; // (now) => void: follow moves the map here, so the draw sees the view it ends in
    this.selected = null;
    this.stops = []; // the selected technician's stops (setStops)
    this.frames = 0; // draws done (tests and the benchmark read it)
    this._frame = null;
  },

  /** The map's events this layer follows: Leaflet adds them with the layer and removes them with it. */
  getEvents() {
    return {
      resize: this._resize,
      move: this.redraw,
      viewreset: this.redraw,
      zoomanim: this._hide,
      zoomend: this._zoomEnd,
      click: this._click,
      mousemove: this._hover,
    };
  },

  onAdd(map) {
    this._canvas = L.DomUtil.create("canvas", "fleet-canvas", map.getContainer());
    this._resize();
    this._onAnswer = () => this.redraw(); // kept, so that onRemove takes away this very listener
    this.clusters.addEventListener("answer", this._onAnswer);
    this.redraw();
  },

  onRemove() {
    this.clusters.removeEventListener("answer", this._onAnswer);
    if (this._frame) cancelAnimationFrame(this._frame);
    this._frame = null;
    this._canvas.remove();
  },

  /** Draw at the next animation frame (many calls, one draw). */
  redraw() {
    if (!this._frame && this._map) this._frame = requestAnimationFrame(() => this._draw());
  },

  select(id) {
    this.selected = id;
    this.stops = [];
    this.redraw();
  },

  /** The selected technician's stops of today (the details panel's report rows), drawn on its trail. */
  setStops(id, stops) {
    if (id !== this.selected) return;
    this.stops = stops;
    this.redraw();
  },

  _drawStops(ctx) {
    for (const stop of this.stops ?? []) {
      const { x, y } = this._point(stop.latitude, stop.longitude);
      ctx.fillStyle = stop.ended_at ? "#4a5568" : "#e53e3e";
      ctx.fillRect(x - 6, y - 6, 12, 12);
      ctx.fillStyle = "#fff";
      ctx.font = "600 10px system-ui, sans-serif";
      ctx.textAlign = "center";
      ctx.textBaseline = "middle";
      ctx.fillText("P", x, y + 0.5);
    }
  },

  _resize() {
    const size = this._map.getSize();
    const ratio = window.devicePixelRatio || 1;
    this._canvas.width = size.x * ratio;
    this._canvas.height = size.y * ratio;
    this._canvas.style.width = `${size.x}px`;
    this._canvas.style.height = `${size.y}px`;
    this._ratio = ratio;
    this.redraw();
  },

  _hide() {
    this._canvas.style.visibility = "hidden"; // the zoom animation scales the map; the canvas comes back after
  },

  _show() {
    this._canvas.style.visibility = "";
  },

  _zoomEnd() {
    this.redraw();
    this._show();
  },

  _point(lat, lng) {
    return this._map.latLngToContainerPoint([lat, lng]);
  },

  _draw() {
    this._frame = null;
    const map = this._map;
    const ctx = this._canvas.getContext("2d");
    const now = performance.now();
    this.beforeDraw?.(now);
    if (this._frame) cancelAnimationFrame(this._frame); // a move made just now asked for a draw: this one is it
    this._frame = null;
    const wall = Date.now();
    ctx.setTransform(this._ratio, 0, 0, this._ratio, 0, 0);
    const size = map.getSize();
    ctx.clearRect(0, 0, size.x, size.y);
    const singles = this.clusters.singles;
    const shown = new Set(singles);
    if (this.selected && this.fleet.tracks.has(this.selected)) shown.add(this.selected);
    this._drawTrails(ctx, shown, now, wall);
    this._drawStops(ctx);
    this._hits = [];
    for (const cluster of this.clusters.clusters) this._drawCluster(ctx, cluster);
    const labels = shown.size <= LABEL_LIMIT;
    for (const id of shown) {
      const track = this.fleet.tracks.get(id);
      if (track) this._drawTechnician(ctx, id, track, now, wall, labels);
    }
    this.frames += 1;
    if (this.fleet.glidingUntil > now || this.isFollowing()) this.redraw();
  },

  _drawTrails(ctx, ids, now, wall) {
    if (!this.trails.minutes) return;
    ctx.lineWidth = 3;
    ctx.lineJoin = "round";
    for (const id of ids) {
      const track = this.fleet.tracks.get(id);
      const points = this.trails.points(id, wall);
      if (!track || !points.length) continue;
      const latest = Date.parse(track.location.last_update);
      ctx.strokeStyle = `${COLOURS[categoryOf(track.location)]}b0`;
      ctx.beginPath();
      let started = false;
      for (const p of points) {
        if (p.t >= latest) break; // the last leg ends at the marker, wherever its glide has got to
        const xy = this._point(p.lat, p.lng);
        if (started) ctx.lineTo(xy.x, xy.y);
        else ctx.moveTo(xy.x, xy.y);
        started = true;
      }
      const [lat, lng] = this.fleet.positionAt(track, now);
      const end = this._point(lat, lng);
      if (started) ctx.lineTo(end.x, end.y);
      ctx.stroke();
      ctx.fillStyle = ctx.strokeStyle;
      let last = null;
      for (const p of points) { // a dot per fix, unless it would sit on the previous one
        if (p.t >= latest) break;
        const xy = this._point(p.lat, p.lng);
        if (last && Math.abs(xy.x - last.x) + Math.abs(xy.y - last.y) < 12) continue;
        ctx.beginPath();
        ctx.arc(xy.x, xy.y, 3.5, 0, 2 * Math.PI);
        ctx.fill();
        last = xy;
      }
    }
  },

  _drawCluster(ctx, cluster) {
    const { x, y } = this._point(cluster.lat, cluster.lng);
    const r = clusterRadius(cluster.count);
    ctx.beginPath();
    ctx.arc(x, y, r, 0, 2 * Math.PI);
    ctx.fillStyle = "#ffffffe0";
    ctx.fill();
    let angle = -Math.PI / 2;
    ctx.lineWidth = 6;
    for (let k = 0; k < cluster.counts.length; k += 1) {
      if (!cluster.counts[k]) continue;
      const sweep = (2 * Math.PI * cluster.counts[k]) / cluster.count;
      ctx.beginPath();
      ctx.arc(x, y, r - 3, angle, angle + sweep);
      ctx.strokeStyle = COLOURS[k];
      ctx.stroke();
      angle += sweep;
    }
    ctx.fillStyle = "#1a202c";
    ctx.font = "600 12px system-ui, sans-serif";
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    ctx.fillText(cluster.count >= 10_000 ? `${Math.round(cluster.count / 1000)}k` : String(cluster.count), x, y);
    this._hits.push({ x, y, r, cluster });
  },

  _drawTechnician(ctx, id, track, now, wall, labelled) {
    const [lat, lng] = this.fleet.positionAt(track, now);
    const { x, y } = this._point(lat, lng);
    const t = track.location;
    if (id === this.selected) {
      ctx.beginPath();
      ctx.arc(x, y, DOT + 5, 0, 2 * Math.PI);
      ctx.strokeStyle = "#e53e3e";
      ctx.lineWidth = 3;
      ctx.stroke();
    }
    ctx.beginPath();
    ctx.arc(x, y, DOT, 0, 2 * Math.PI);
    ctx.globalAlpha = t.stale ? 0.55 : 0.95;
    ctx.fillStyle = COLOURS[categoryOf(t)];
    ctx.fill();
    ctx.globalAlpha = 1;
    ctx.lineWidth = 1;
    ctx.strokeStyle = "#1a202c";
    ctx.stroke();
    if (labelled || id === this.selected) {
      const motion = motionText(t, wall);
      const parts = [t.technician_name, t.status + (categoryOf(t) === STALE ? " (offline)" : ""), motion, age(t.last_update, wall)];
      const text = parts.filter(Boolean).join(" · ");
      ctx.font = "12px system-ui, sans-serif";
      ctx.textAlign = "left";
      ctx.textBaseline = "middle";
      ctx.lineWidth = 3;
      ctx.strokeStyle = "#ffffffd0";
      ctx.strokeText(text, x + DOT + 4, y);
      ctx.fillStyle = "#1a202c";
      ctx.fillText(text, x + DOT + 4, y);
    }
    this._hits.push({ x, y, r: DOT + 3, id });
  },

  /** What is drawn at a container point: the nearest technician within reach, else the cluster under it. */
  hitAt(point) {
    let best = null;
    let bestDistance = Infinity;
    for (const hit of this._hits ?? []) {
      const d = Math.hypot(hit.x - point.x, hit.y - point.y);
      const rank = hit.id ? d : d + 1000; // a technician wins over a cluster under it
      if (d <= hit.r && rank < bestDistance) {
        best = hit;
        bestDistance = rank;
      }
    }
    return best;
  },

  /** Open what is drawn nearest to a container point (the keyboard's Enter uses the map's centre). */
  open(hit) {
    if (!hit) return false;
    if (hit.id) this.onSelect(hit.id);
    else this._map.setView([hit.cluster.lat, hit.cluster.lng], Math.min(hit.cluster.expand, this._map.getMaxZoom()));
    return true;
  },

  nearest(point, reach = 60) {
    let best = null;
    let bestDistance = reach;
    for (const hit of this._hits ?? []) {
      const d = Math.hypot(hit.x - point.x, hit.y - point.y) - hit.r;
      if (d < bestDistance) {
        best = hit;
        bestDistance = d;
      }
    }
    return best;
  },

  _click(event) {
    this.open(this.hitAt(event.containerPoint));
  },

  _hover(event) {
    this._map.getContainer().style.cursor = this.hitAt(event.containerPoint) ? "pointer" : "";
  },
});
