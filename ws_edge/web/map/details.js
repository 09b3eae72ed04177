// The details panel's content (pure: unit tests in ws_edge/web/test/map.test.js): what a dispatcher reads about one
// technician, and the links to its history and its export.
import { age } from "./fleet.js";

const COMPASS = ["N", "NE", "E", "SE", "S", "SW", "W", "NW"];

/** [label, value] rows; battery only when the device app reported it. */
export function detailRows(t, nowMs = Date.now()) {
  const known = (value, text) => (value === undefined || value === null ? "—" : text);
  const rows = [
    ["Name", t.technician_name],
    ["ID", t.technician_id],
    ["Status", t.stale ? `${t.status} (stale)` : t.status],
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
