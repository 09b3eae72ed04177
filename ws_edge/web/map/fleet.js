// The fleet as the map draws it, pure (no DOM, no Leaflet; unit tests in ws_edge/web/test/map.test.js):
// - Fleet: where each technician is shown at a moment. A new fix starts a glide from where the marker is shown
//   towards the fix, over the interval since the previous fix (capped), and never past it (the seed's "client
//   prediction", done as interpolation: nothing is extrapolated). A backfilled fix (from a device's buffer), the
//   first fix and a whole new map jump.
// - Trails: each followed technician's recent fixes in device-time order, from the history endpoint, extended live.

export const GLIDE_MAX_MS = 10_000;

/** "12 s ago", "5 min ago", "3 h ago". */
export function age(iso, nowMs = Date.now()) {
  const seconds = Math.max(0, Math.round((nowMs - Date.parse(iso)) / 1000));
  if (seconds < 90) return `${seconds} s ago`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min ago`;
  return `${Math.round(seconds / 3600)} h ago`;
}


/** [lat, lng] a fraction `f` of the way from `a` to `b`, the short way round the antimeridian. */
export function between(a, b, f) {
  let dLng = b[1] - a[1];
  if (dLng > 180) dLng -= 360;
  if (dLng < -180) dLng += 360;
  let lng = a[1] + dLng * f;
  if (lng > 180) lng -= 360;
  if (lng < -180) lng += 360;
  return [a[0] + (b[0] - a[0]) * f, lng];
}

export class Fleet {
  constructor({ glideMaxMs = GLIDE_MAX_MS } = {}) {
    this.glideMaxMs = glideMaxMs;
    this.tracks = new Map(); // id -> { location, from: [lat, lng], to: [lat, lng], start, duration }
    this.glidingUntil = 0; // no marker moves after this (ms, the caller's clock)
  }

  get size() {
    return this.tracks.size;
  }

  /** A whole new map (initial_state, a poll, a replay's start): every marker where its fix is. */
  reset(technicians, now) {
    this.tracks.clear();
    for (const location of technicians.values()) this._jump(location, now);
  }

  /** One technician's new location, received at `now` (ms). */
  update(location, now) {
    const track = this.tracks.get(location.technician_id);
    if (!track || location.backfill) {
      this._jump(location, now);
      return;
    }
    const to = [location.latitude, location.longitude];
    const from = this.positionAt(track, now);
    const interval = Date.parse(location.last_update) - Date.parse(track.location.last_update);
    const moved = from[0] !== to[0] || from[1] !== to[1];
    const duration = moved && interval > 0 ? Math.min(interval, this.glideMaxMs) : 0;
    this.tracks.set(location.technician_id, { location, from, to, start: now, duration });
    this.glidingUntil = Math.max(this.glidingUntil, now + duration);
  }

  remove(id) {
    this.tracks.delete(id);
  }

  /** Where a track is shown at `now`: on the way from where it was shown to its latest fix, never beyond. */
  positionAt(track, now) {
    if (track.duration <= 0 || now >= track.start + track.duration) return track.to;
    const f = Math.max(0, (now - track.start) / track.duration);
    return between(track.from, track.to, f);
  }

  shown(id, now) {
    const track = this.tracks.get(id);
    return track ? this.positionAt(track, now) : null;
  }

  _jump(location, now) {
    const to = [location.latitude, location.longitude];
    this.tracks.set(location.technician_id, { location, from: to, to, start: now, duration: 0 });
  }
}

/** A point of a trail: device time in ms since the epoch. */
function pointOf(location) {
  return { lat: location.latitude, lng: location.longitude, t: Date.parse(location.last_update ?? location.recorded_at) };
}

function samePoint(a, b) {
  return a.t === b.t && a.lat === b.lat && a.lng === b.lng;
}

/** Insert `p` into `points` (sorted by t), unless it is there already. Live fixes come last, so look from the end. */
function insert(points, p) {
  let at = points.length;
  while (at > 0 && points[at - 1].t > p.t) at -= 1;
  for (let i = at - 1; i >= 0 && points[i].t === p.t; i -= 1) if (samePoint(points[i], p)) return;
  points.splice(at, 0, p);
}

export class Trails {
  constructor(minutes = 0) {
    this.minutes = minutes; // 0: no trails
    this.byId = new Map(); // id -> points sorted by device time
    this.loaded = new Set(); // ids whose history arrived
  }

  /** Trails of another length: what was fetched for a shorter span does not cover a longer one. */
  setMinutes(minutes) {
    if (minutes > this.minutes) this.clear();
    this.minutes = minutes;
  }

  clear() {
    this.byId.clear();
    this.loaded.clear();
  }

  /** Start a trail before its history arrives: live fixes meanwhile are kept and merged. */
  begin(id) {
    if (!this.byId.has(id)) this.byId.set(id, []);
  }

  has(id) {
    return this.byId.has(id);
  }

  /** The history endpoint's answer (newest first, its shape) merged into the trail. */
  loadHistory(id, locations) {
    const points = this.byId.get(id) ?? [];
    for (const location of locations) insert(points, pointOf(location));
    this.byId.set(id, points);
    this.loaded.add(id);
  }

  /** A live fix (a map location) of a technician with a trail; a backfilled one lands where its time puts it. */
  add(location) {
    const points = this.byId.get(location.technician_id);
    if (points) insert(points, pointOf(location));
  }

  /** The points of the last `minutes` before `nowMs` (wall clock, ms), oldest first (older ones are dropped). */
  points(id, nowMs) {
    const points = this.byId.get(id);
    if (!points) return [];
    const since = nowMs - this.minutes * 60_000;
    let first = 0;
    while (first < points.length && points[first].t < since) first += 1;
    if (first) points.splice(0, first);
    return points;
  }
}
