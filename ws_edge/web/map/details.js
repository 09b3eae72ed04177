// The details panel's content (pure: unit tests in ws_edge/web/test/map.test.js): what a dispatcher reads about one
// technician, and the links to its history and its export.
import { age } from "./fleet.js";

const COMPASS = ["N", "NE", "E", "SE", "S", "SW", "W", "NW"];

/** "23 min", "2 h 5 min", "40 s": a span of milliseconds, for people. */
export function span(ms) {
  const seconds = Math.max(0, Math.round(ms / 1000));
  if (seconds < 60) return `${seconds} s`;
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `${minutes} min`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

/** "stopped 23 min" / "moving 4 min" from the location's latest stop or trip (motion, motion_since); null before
 * it has one. */
export function motionText(t, nowMs = Date.now()) {
  if (!t.motion || !t.motion_since) return null;
  return `${t.motion} ${span(nowMs - Date.parse(t.motion_since))}`;
}

/** Why the marker is grey: "offline since 14:02" (no good fix for the tenant's threshold), "tracking stopped at
 * 14:02" (the app said so); null while online. */
export function presenceText(t) {
  if (!t.stale) return null;
  const since = t.offline_since ? new Date(t.offline_since).toLocaleTimeString() : null;
  if (t.offline_reason === "tracking_stopped") return since ? `tracking stopped at ${since}` : "tracking stopped";
  return since ? `offline since ${since}` : "offline";
}

/** [label, value] rows; battery only when the device app reported it. */
export function detailRows(t, nowMs = Date.now()) {
  const known = (value, text) => (value === undefined || value === null ? "—" : text);
  const presence = presenceText(t);
  const motion = motionText(t, nowMs);
  const rows = [
    ["Name", t.technician_name],
    ["ID", t.technician_id],
    ["Status", presence ? `${t.status} (${presence})` : t.status],
    ["Activity", motion ? motion[0].toUpperCase() + motion.slice(1) : "—"],
    ["Speed", known(t.speed_kmh, `${Math.round(t.speed_kmh * 10) / 10} km/h`)],
    ["Heading", known(t.heading, `${Math.round(t.heading)}° ${COMPASS[Math.round(t.heading / 45) % 8]}`)],
    ["Accuracy", known(t.accuracy_meters, `± ${Math.round(t.accuracy_meters)} m`)],
  ];
  if (t.battery_percent !== undefined && t.battery_percent !== null) rows.push(["Battery", `${Math.round(t.battery_percent)} %`]);
  rows.push(["Last fix", `${age(t.last_update, nowMs)} (${new Date(t.last_update).toLocaleTimeString()})`]);
  return rows;
}

/** Links to the technician's history (the last `minutes`) and its export (the last `hours`) in three formats. */
export function historyLinks(base, id, nowMs = Date.now(), { minutes = 60, hours = 24 } = {}) {
  const technician = encodeURIComponent(id);
  const history = new URLSearchParams({ start_time: new Date(nowMs - minutes * 60_000).toISOString(), limit: "1000" });
  const links = [
    {
      label: `History, last ${minutes} min (JSON)`,
      href: `${base}/api/v1/field-service/technicians/${technician}/location-history?${history}`,
      filename: `${id}-history.json`,
    },
  ];
  for (const format of ["gpx", "csv", "geojson"]) {
    const query = new URLSearchParams({
      from: new Date(nowMs - hours * 3_600_000).toISOString(),
      to: new Date(nowMs).toISOString(),
      technician_id: id,
      format,
    });
    links.push({
      label: `Export ${hours} h (${format.toUpperCase()})`,
      href: `${base}/api/v1/field-service/history/export?${query}`,
      filename: `${id}.${format}`,
    });
  }
  return links;
}

/** The addresses of the technician's stops and trips of today (local midnight to now): the projector's reports. */
export function dayReports(base, id, nowMs = Date.now()) {
  const midnight = new Date(nowMs);
  midnight.setHours(0, 0, 0, 0);
  const query = new URLSearchParams({
    technician_id: id,
    start_time: midnight.toISOString(),
    end_time: new Date(nowMs).toISOString(),
    limit: "200",
  });
  return {
    stops: `${base}/api/v1/field-service/reports/stops?${query}`,
    trips: `${base}/api/v1/field-service/reports/trips?${query}`,
  };
}

/** Today's stops and trips as the panel lists them, in the order they began: [{ at, kind, text }]. */
export function dayRows(stops, trips, nowMs = Date.now()) {
  const time = (iso) => new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  const until = (row) => (row.ended_at ? time(row.ended_at) : "now");
  const lasted = (row) => span(row.ended_at ? Date.parse(row.ended_at) - Date.parse(row.started_at) : nowMs - Date.parse(row.started_at));
  const rows = [
    ...stops.map((stop) => ({
      at: Date.parse(stop.started_at),
      kind: "stop",
      text: `${time(stop.started_at)}–${until(stop)} Stopped ${lasted(stop)}${stop.job_id ? ` at job ${stop.job_id}` : ""}`,
    })),
    ...trips.map((trip) => ({
      at: Date.parse(trip.started_at),
      kind: "trip",
      text: `${time(trip.started_at)}–${until(trip)} ${trip.ended_at ? "Drove" : "Driving"} ${(trip.distance_meters / 1000).toFixed(1)} km in ${lasted(trip)}`,
    })),
  ];
  return rows.sort((a, b) => a.at - b.at || (a.kind === "trip") - (b.kind === "trip"));
}
