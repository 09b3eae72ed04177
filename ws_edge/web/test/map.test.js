// Unit tests of the map page's pure parts: the glide, trails, search, the details panel and status categories.
import assert from "node:assert/strict";
import { test } from "node:test";

import { categoryOf, OTHER, STALE, STATUSES } from "../map/clusters.js";
import { dayReports, dayRows, detailRows, historyLinks, motionText, presenceText, span } from "../map/details.js";
import { age, between, Fleet, Trails } from "../map/fleet.js";
import { matches } from "../map/search.js";

const at = (id, lat, lng, iso, extra = {}) => ({
  technician_id: id, technician_name: id, latitude: lat, longitude: lng, last_update: iso, status: "on_job", ...extra,
});

test("a fix glides from where the marker is over the interval since the previous fix, never past it", () => {
  const fleet = new Fleet({ glideMaxMs: 10_000 });
  fleet.update(at("a", 0, 0, "2026-11-30T10:00:00Z"), 1000); // first sight: where it is
  assert.deepEqual(fleet.shown("a", 1000), [0, 0]);
  fleet.update(at("a", 1, 2, "2026-11-30T10:00:04Z"), 2000); // 4 s later by device time: a 4 s glide
  assert.deepEqual(fleet.shown("a", 2000), [0, 0]);
  assert.deepEqual(fleet.shown("a", 4000), [0.5, 1]);
  assert.deepEqual(fleet.shown("a", 6000), [1, 2]);
  assert.deepEqual(fleet.shown("a", 60_000), [1, 2], "never past the latest fix");
  assert.equal(fleet.glidingUntil, 6000);
  fleet.update(at("a", 3, 2, "2026-11-30T10:00:05Z"), 6000);
  fleet.update(at("a", 5, 2, "2026-11-30T10:00:09Z"), 6500); // mid-glide: starts where the marker is now
  const [lat] = fleet.shown("a", 6500);
  assert.ok(lat > 1 && lat < 3, `from where it was shown: ${lat}`);
  assert.deepEqual(fleet.shown("a", 6500 + 4000), [5, 2]);
});

test("a backfilled fix, a fix an hour later and an unchanged position jump or cap; a reset jumps everything", () => {
  const fleet = new Fleet({ glideMaxMs: 10_000 });
  fleet.update(at("a", 0, 0, "2026-11-30T10:00:00Z"), 0);
  fleet.update(at("a", 1, 1, "2026-11-30T10:00:30Z", { backfill: true }), 100);
  assert.deepEqual(fleet.shown("a", 100), [1, 1], "backfill: no glide");
  fleet.update(at("a", 2, 2, "2026-11-30T11:00:00Z"), 200);
  assert.equal(fleet.tracks.get("a").duration, 10_000, "capped");
  fleet.update(at("a", 2, 2, "2026-11-30T11:00:05Z", { status: "break" }), 20_000);
  assert.equal(fleet.tracks.get("a").duration, 0, "a status change does not move it");
  fleet.reset(new Map([["b", at("b", 7, 8, "2026-11-30T11:00:00Z")]]), 30_000);
  assert.deepEqual([...fleet.tracks.keys()], ["b"]);
  assert.deepEqual(fleet.shown("b", 30_000), [7, 8]);
});

test("between goes the short way round the antimeridian", () => {
  assert.deepEqual(between([0, 179], [0, -179], 0.5), [0, 180]);
  assert.deepEqual(between([0, -179], [0, 179], 0.25), [0, -179.5]);
});

test("a trail merges the history (newest first) with live fixes in device-time order, once each, and ages out", () => {
  const trails = new Trails(15);
  trails.begin("a");
  trails.add(at("a", 3, 3, "2026-11-30T10:03:00Z")); // live, while the history is on its way
  trails.add(at("b", 9, 9, "2026-11-30T10:03:00Z")); // no trail for b
  trails.loadHistory("a", [
    { latitude: 3, longitude: 3, recorded_at: "2026-11-30T10:03:00Z" },
    { latitude: 2, longitude: 2, recorded_at: "2026-11-30T10:02:00Z" },
    { latitude: 1, longitude: 1, recorded_at: "2026-11-30T10:01:00Z" },
  ]);
  trails.add(at("a", 1.5, 1.5, "2026-11-30T10:01:30Z", { backfill: true }));
  const now = Date.parse("2026-11-30T10:10:00Z");
  assert.deepEqual(trails.points("a", now).map((p) => p.lat), [1, 1.5, 2, 3]);
  assert.equal(trails.has("b"), false);
  assert.deepEqual(trails.points("a", Date.parse("2026-11-30T10:17:00Z")).map((p) => p.lat), [2, 3]);
  trails.setMinutes(60);
  assert.equal(trails.has("a"), false, "a longer span is fetched again");
});

test("search ranks a name or id that starts with the query first, then a word, then anything containing it", () => {
  const people = [
    at("t1", 0, 0, "x", { technician_name: "Bola Ade" }),
    at("t2", 0, 0, "x", { technician_name: "Ada Obi" }),
    at("t3", 0, 0, "x", { technician_name: "Kemi Adamu" }),
    at("ada-7", 0, 0, "x", { technician_name: "Zed Nadar" }),
  ];
  assert.deepEqual(matches(people, "ADA").map((t) => t.technician_id), ["t2", "ada-7", "t3"]); // not "Bola Ade"
  assert.deepEqual(matches(people, "  "), []);
  assert.deepEqual(matches(people, "ada", 2).length, 2);
});

test("the details panel lists what is known and the exports of the technician", () => {
  const now = Date.parse("2026-11-30T10:00:30Z");
  const rows = Object.fromEntries(
    detailRows(at("t1", 0, 0, "2026-11-30T10:00:00Z", { speed_kmh: 12.34, heading: 270, accuracy_meters: 4.6 }), now),
  );
  assert.equal(rows.Speed, "12.3 km/h");
  assert.equal(rows.Heading, "270° W");
  assert.equal(rows.Accuracy, "± 5 m");
  assert.equal(rows.Battery, undefined, "no battery row when the device did not send one");
  assert.ok(rows["Last fix"].startsWith("30 s ago"));
  const bare = Object.fromEntries(detailRows(at("t1", 0, 0, "2026-11-30T10:00:00Z", { battery_percent: 81.6 }), now));
  assert.equal(bare.Speed, "—");
  assert.equal(bare.Battery, "82 %");
  const links = historyLinks("https://api.example", "t/1 ?", now);
  assert.ok(links[0].href.startsWith("https://api.example/api/v1/field-service/technicians/t%2F1%20%3F/location-history?"));
  const gpx = new URL(links.find((l) => l.label.includes("GPX")).href);
  assert.equal(gpx.searchParams.get("technician_id"), "t/1 ?");
  assert.equal(gpx.searchParams.get("to"), "2026-11-30T10:00:30.000Z");
  assert.equal(age("2026-11-30T09:00:30Z", now), "60 min ago");
});

test("status categories: the chips' statuses, any other, and stale over all", () => {
  assert.equal(categoryOf({ status: STATUSES[1] }), 1);
  assert.equal(categoryOf({ status: "on_holiday" }), OTHER);
  assert.equal(categoryOf({ status: "on_job", stale: true }), STALE);
});

test("the panel says stopped or moving since the latest stop or trip, and why a marker is grey", () => {
  const now = Date.parse("2026-11-30T10:00:30Z");
  const stopped = at("t1", 0, 0, "2026-11-30T10:00:00Z", { motion: "stopped", motion_since: "2026-11-30T09:37:30Z" });
  assert.equal(motionText(stopped, now), "stopped 23 min");
  assert.equal(Object.fromEntries(detailRows(stopped, now)).Activity, "Stopped 23 min");
  const moving = { ...stopped, motion: "moving", motion_since: "2026-11-30T07:55:30Z" };
  assert.equal(motionText(moving, now), "moving 2 h 5 min");
  assert.equal(motionText(at("t1", 0, 0, "2026-11-30T10:00:00Z"), now), null, "no stop or trip yet: nothing said");
  assert.equal(Object.fromEntries(detailRows(at("t1", 0, 0, "2026-11-30T10:00:00Z"), now)).Activity, "—");
  assert.equal(presenceText(stopped), null);
  const silent = { ...stopped, stale: true, offline_since: "2026-11-30T09:40:00Z", offline_reason: "silent" };
  assert.ok(presenceText(silent).startsWith("offline since "));
  assert.ok(Object.fromEntries(detailRows(silent, now)).Status.includes("(offline since "));
  assert.ok(presenceText({ ...silent, offline_reason: "tracking_stopped" }).startsWith("tracking stopped at "));
  assert.equal(span(40_000), "40 s");
});

test("today's stops and trips: asked of the reports from local midnight, listed in the order they began", () => {
  const now = Date.parse("2026-11-30T10:00:30Z");
  const { stops, trips } = dayReports("https://api.example", "t/1", now);
  const asked = new URL(stops);
  assert.equal(asked.pathname, "/api/v1/field-service/reports/stops");
  assert.equal(asked.searchParams.get("technician_id"), "t/1");
  const midnight = new Date(now);
  midnight.setHours(0, 0, 0, 0);
  assert.equal(asked.searchParams.get("start_time"), midnight.toISOString());
  assert.equal(new URL(trips).pathname, "/api/v1/field-service/reports/trips");
  const rows = dayRows(
    [
      { started_at: "2026-11-30T09:00:00Z", ended_at: null, job_id: null },
      { started_at: "2026-11-30T08:00:00Z", ended_at: "2026-11-30T08:38:00Z", job_id: "J-12" },
    ],
    [{ started_at: "2026-11-30T08:38:00Z", ended_at: "2026-11-30T09:00:00Z", distance_meters: 12345 }],
    now,
  );
  assert.deepEqual(rows.map((r) => r.kind), ["stop", "trip", "stop"]);
  assert.ok(rows[0].text.endsWith("Stopped 38 min at job J-12"), rows[0].text);
  assert.ok(rows[1].text.endsWith("Drove 12.3 km in 22 min"), rows[1].text);
  assert.ok(rows[2].text.endsWith("–now Stopped 1 h 1 min"), rows[2].text);
});
