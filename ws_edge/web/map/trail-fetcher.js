// Trails: the last N minutes of each technician shown alone (and of the selected one), from the history endpoint
// once, a few requests at a time, then extended by the live updates (fleet.js, Trails.add).
import { $ } from "./page.js";
import { authorizedFetch } from "./sign-in.js";

const TRAIL_LIMIT = 100; // technicians whose trails are fetched for one view
const FETCHES_AT_ONCE = 4;

export class TrailFetcher {
  #queue = [];
  #fetching = 0;

  /** `wanted()`: the technicians whose trails the view shows, first first; `onLoaded()`: a trail came (or not). */
  constructor({ trails, historyBase, wanted, onLoaded }) {
    this.trails = trails;
    this.historyBase = historyBase;
    this.wanted = wanted;
    this.onLoaded = onLoaded;
    $("trails").addEventListener("change", () => {
      trails.setMinutes(Number($("trails").value));
      this.#queue.length = 0;
      this.fetch();
      onLoaded();
    });
  }

  /** Fetch the trails wanted now that are not there yet. */
  fetch() {
    if (!this.trails.minutes) return;
    for (const id of this.wanted().slice(0, TRAIL_LIMIT)) {
      if (this.trails.has(id)) continue;
      this.trails.begin(id);
      this.#queue.push(id);
    }
    this.#pump();
  }

  #pump() {
    while (this.#fetching < FETCHES_AT_ONCE && this.#queue.length) {
      const id = this.#queue.shift();
      this.#fetching += 1;
      const minutes = this.trails.minutes;
      const query = new URLSearchParams({ start_time: new Date(Date.now() - minutes * 60_000).toISOString(), limit: "1000" });
      const url = `${this.historyBase}/api/v1/field-service/technicians/${encodeURIComponent(id)}/location-history?${query}`;
      authorizedFetch(url)
        .then(async (response) => {
          if (response.ok && this.trails.minutes === minutes) this.trails.loadHistory(id, (await response.json()).locations);
          else if (!response.ok) $("error").textContent = `Trail of ${id}: HTTP ${response.status}`;
        })
        .catch((error) => { $("error").textContent = `Trail of ${id}: ${error.message}`; })
        .finally(() => {
          this.#fetching -= 1;
          this.onLoaded();
          this.#pump();
        });
    }
  }
}
