// The selected technician's details panel (its rows, today's stops and trips, and history links: details.js) and
// follow: the view keeps the followed technician inside its middle half until the user pans. Today's stops and trips
// come from the projector's reports when the technician is selected and again when its motion changes (a new stop
// or trip on the feed); its stops are drawn on its trail.
import { dayReports, dayRows, detailRows, historyLinks } from "./details.js";
import { $ } from "./page.js";
import { authorizedFetch } from "./sign-in.js";

export class DetailsPanel {
  selected = null; // the technician in the panel
  dayOf = null; // the selected technician's motion when its day was last asked for
  following = null; // the technician the view tracks, until the user pans
  layer = null; // the fleet's layer, which draws the selection (attach)

  /** `onSelect(id)`: a technician was selected (its trail is wanted). */
  constructor({ map, fleet, historyBase, onSelect }) {
    this.map = map;
    this.fleet = fleet;
    this.historyBase = historyBase;
    this.onSelect = onSelect;
    $("follow").addEventListener("click", () => this.setFollowing(this.following ? null : this.selected));
    $("details-close").addEventListener("click", () => this.close());
    $("details-links").addEventListener("click", (event) => this.#download(event));
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && !$("details").hidden && event.target.id !== "search") this.close();
    });
    map.on("dragstart", () => this.setFollowing(null)); // the user's own pan ends a follow
    map.getContainer().addEventListener("keydown", (event) => {
      if (event.key.startsWith("Arrow")) this.setFollowing(null);
      if (event.key === "Enter" && event.target === map.getContainer() && this.layer) {
        this.layer.open(this.layer.nearest(map.getSize().divideBy(2)));
      }
    });
  }

  /** The layer that draws the fleet: made after the panel, whose follow it asks before each draw. */
  attach(layer) {
    this.layer = layer;
  }

  select(id) {
    this.selected = id;
    this.layer?.select(id);
    const shown = this.fleet.shown(id, performance.now());
    if (shown) this.map.setView(shown, Math.max(this.map.getZoom(), 15), { animate: false });
    $("details").hidden = false;
    $("details-status").textContent = "";
    $("details-day").replaceChildren();
    this.dayOf = null;
    this.show();
    this.#showLinks();
    this.onSelect(id);
  }

  /** Today's stops and trips of the selected technician, from the reports (`motion`: what the feed said when asked,
   * so that a new stop or trip asks again). */
  async #showDay(id, motion) {
    this.dayOf = motion;
    const { stops, trips } = dayReports(this.historyBase, id);
    try {
      const [stopsAnswer, tripsAnswer] = await Promise.all([authorizedFetch(stops), authorizedFetch(trips)]);
      if (this.selected !== id) return;
      if (!stopsAnswer.ok || !tripsAnswer.ok) {
        const failed = stopsAnswer.ok ? tripsAnswer : stopsAnswer;
        $("details-status").textContent = `Today's stops and trips: HTTP ${failed.status}`;
        return;
      }
      const day = { stops: (await stopsAnswer.json()).stops, trips: (await tripsAnswer.json()).trips };
      if (this.selected !== id) return;
      this.layer?.setStops(id, day.stops);
      $("details-day").replaceChildren(...dayRows(day.stops, day.trips).map(({ kind, text }) => {
        const item = document.createElement("li");
        item.className = kind;
        item.textContent = text; // text: job ids come from the tenant's data
        return item;
      }));
      if (!day.stops.length && !day.trips.length) $("details-day").append(Object.assign(document.createElement("li"), { textContent: "No stop or trip yet today" }));
    } catch (error) {
      if (this.selected === id) $("details-status").textContent = `Today's stops and trips: ${error.message}`;
    }
  }

  /** The rows again (a new fix, or the time since the last one moved on). */
  show() {
    const t = this.fleet.tracks.get(this.selected)?.location;
    if (!t) {
      $("details-status").textContent = this.selected ? `${this.selected} is not on the map now` : "";
      return;
    }
    $("details-title").textContent = t.technician_name;
    const motion = `${t.motion ?? ""} ${t.motion_since ?? ""}`;
    if (motion !== this.dayOf) this.#showDay(this.selected, motion);
    $("details-rows").replaceChildren(...detailRows(t).flatMap(([label, value]) => {
      const dt = document.createElement("dt");
      const dd = document.createElement("dd");
      dt.textContent = label;
      dd.textContent = value; // text: names come from the tenant's data
      return [dt, dd];
    }));
  }

  close() {
    this.selected = null;
    this.setFollowing(null);
    this.layer?.select(null);
    $("details").hidden = true;
  }

  setFollowing(id) {
    this.following = id;
    $("follow").setAttribute("aria-pressed", String(Boolean(id)));
    $("follow").textContent = id ? "Following" : "Follow";
    this.layer?.redraw();
  }

  /** Called by the layer before each draw: the followed technician back into the middle half of the view. */
  keepFollowing(now) {
    const shown = this.following && this.fleet.shown(this.following, now);
    if (!shown) return;
    const point = this.map.latLngToContainerPoint(shown);
    const size = this.map.getSize();
    const inside = point.x > size.x * 0.25 && point.x < size.x * 0.75 && point.y > size.y * 0.25 && point.y < size.y * 0.75;
    if (!inside) this.map.panTo(shown, { animate: false });
  }

  #showLinks() {
    $("details-links").replaceChildren(...historyLinks(this.historyBase, this.selected).map(({ label, href, filename }, i) => {
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
  async #download(event) {
    const link = event.target.closest("a");
    if (!link) return;
    event.preventDefault();
    link.href = historyLinks(this.historyBase, this.selected)[Number(link.dataset.index)].href; // up to now
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
  }
}
