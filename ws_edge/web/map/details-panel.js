// The selected technician's details panel (its rows and history links: details.js) and follow: the view keeps the
// followed technician inside its middle half until the user pans.
import { detailRows, historyLinks } from "./details.js";
import { $ } from "./page.js";
import { authorizedFetch } from "./sign-in.js";

export class DetailsPanel {
  selected = null; // the technician in the panel
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
    this.show();
    this.#showLinks();
    this.onSelect(id);
  }

  /** The rows again (a new fix, or the time since the last one moved on). */
  show() {
    const t = this.fleet.tracks.get(this.selected)?.location;
    if (!t) {
      $("details-status").textContent = this.selected ? `${this.selected} is not on the map now` : "";
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
