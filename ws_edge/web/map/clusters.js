// Clustering of the fleet by zoom: supercluster (npm, in the package-lock) runs in a worker (clusters-worker.js),
// so indexing 10,000 technicians (20-60 ms) never holds the page's main thread. The page loads the latest
// positions at most twice a second while they change, and asks for the clusters of the view after every move;
// each answer lists the clusters (centre, count, counts by status, the zoom that splits them) and the technicians
// shown alone.

export const STATUSES = ["available", "on_job", "en_route", "break", "offline"]; // the chips, in this order
export const OTHER = STATUSES.length; // any other status
export const STALE = STATUSES.length + 1; // offline as the derived facts say (technician_offline), whatever the status
export const CATEGORIES = STATUSES.length + 2;
export const COLOURS = ["#1f9d55", "#2b6cb0", "#d69e2e", "#805ad5", "#718096", "#2d3748", "#a0aec0"];

/** The colour category of a map location. */
export function categoryOf(location) {
  if (location.stale) return STALE;
  const at = STATUSES.indexOf(location.status);
  return at < 0 ? OTHER : at;
}

export class ClusterIndex extends EventTarget {
  constructor(workerUrl) {
    super();
    this.worker = new Worker(workerUrl);
    this.worker.onmessage = (event) => this._answered(event.data);
    this.worker.onerror = (event) => {
      this.error = `clustering stopped: ${event.message || "the worker could not start (is supercluster installed?)"}`;
      this.dispatchEvent(new Event("error"));
    };
    this.error = null;
    this.generation = 0;
    this.ids = new Map(); // generation -> the ids its point indexes stand for
    this.seq = 0;
    this.view = null; // { bbox, zoom }: the last asked
    this.clusters = []; // [{ lat, lng, count, counts, expand }]
    this.singles = []; // ids of the technicians shown alone in the view
    this.answers = 0;
  }

  /** Index the latest positions of `tracks` (Fleet.tracks); the answer for the current view follows. */
  load(tracks) {
    const n = tracks.size;
    const ids = new Array(n);
    const coords = new Float64Array(2 * n);
    const categories = new Uint8Array(n);
    let i = 0;
    for (const [id, track] of tracks) {
      ids[i] = id;
      coords[2 * i] = track.to[1];
      coords[2 * i + 1] = track.to[0];
      categories[i] = categoryOf(track.location);
      i += 1;
    }
    this.generation += 1;
    this.ids.set(this.generation, ids);
    this.ids.delete(this.generation - 3); // answers come in order: older generations are not asked about any more
    this.seq += 1;
    this.worker.postMessage(
      { type: "load", generation: this.generation, coords, categories, seq: this.seq, ...this.view },
      [coords.buffer, categories.buffer],
    );
  }

  /** The clusters of a view: bbox [west, south, east, north], an integer zoom. */
  query(bbox, zoom) {
    this.view = { bbox, zoom };
    this.seq += 1;
    this.worker.postMessage({ type: "query", seq: this.seq, bbox, zoom });
  }

  _answered(answer) {
    if (answer.seq !== this.seq) return; // a newer question is on its way
    const ids = this.ids.get(answer.generation);
    if (!ids) return;
    this.clusters = answer.clusters;
    this.singles = Array.from(answer.points, (i) => ids[i]);
    this.answers += 1;
    this.dispatchEvent(new Event("answer"));
  }

  terminate() {
    this.worker.terminate();
  }
}
