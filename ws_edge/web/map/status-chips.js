// Status chips: each one pressed shows that status, and says how many of the fleet have it; the edge sends only what
// the chips ask for (part of the map's subscribe filter). The last chip is presence: pressed, the technicians offline
// as the derived facts say (grey markers) are shown too; released, only those online (`presence: ["online"]`).
import { COLOURS, STALE, STATUSES } from "./clusters.js";
import { $ } from "./page.js";

const OFFLINE_LABEL = "Not reporting";
const STATUS_LABELS = { available: "Available", on_job: "On job", en_route: "En route", break: "Break", offline: "Offline" };

export class StatusChips {
  chips = new Map(); // status -> its button

  /** `onChange()`: a chip was pressed or released. */
  constructor(onChange) {
    for (const status of STATUSES) {
      const chip = document.createElement("button");
      chip.type = "button";
      chip.className = "chip";
      chip.dataset.status = status;
      chip.setAttribute("aria-pressed", "true");
      chip.style.setProperty("--colour", COLOURS[STATUSES.indexOf(status)]);
      chip.textContent = STATUS_LABELS[status];
      chip.addEventListener("click", () => {
        chip.setAttribute("aria-pressed", String(chip.getAttribute("aria-pressed") !== "true"));
        onChange();
      });
      this.chips.set(status, chip);
      $("chips").append(chip);
    }
    const offline = document.createElement("button");
    offline.type = "button";
    offline.className = "chip";
    offline.dataset.presence = "offline";
    offline.setAttribute("aria-pressed", "true");
    offline.style.setProperty("--colour", COLOURS[STALE]);
    offline.textContent = OFFLINE_LABEL;
    offline.addEventListener("click", () => {
      offline.setAttribute("aria-pressed", String(offline.getAttribute("aria-pressed") !== "true"));
      onChange();
    });
    this.offline = offline;
    $("chips").append(offline);
  }

  /** ["online"] when the presence chip is released (hide the offline ones), else null (no presence filter). */
  presence() {
    return this.offline.getAttribute("aria-pressed") === "true" ? null : ["online"];
  }

  /** The statuses of the pressed chips, or null when every chip is pressed (no filter). */
  statuses() {
    const pressed = [...this.chips.values()].filter((chip) => chip.getAttribute("aria-pressed") === "true");
    return pressed.length < this.chips.size ? pressed.map((chip) => chip.dataset.status) : null;
  }

  /** Each chip's count of the technicians shown (`tracks`: fleet.js's). */
  count(tracks) {
    const counts = new Map(STATUSES.map((status) => [status, 0]));
    let offline = 0;
    for (const track of tracks.values()) {
      const status = track.location.status;
      if (counts.has(status)) counts.set(status, counts.get(status) + 1);
      if (track.location.stale) offline += 1;
    }
    for (const [status, chip] of this.chips) chip.textContent = `${STATUS_LABELS[status]} ${counts.get(status).toLocaleString()}`;
    this.offline.textContent = `${OFFLINE_LABEL} ${offline.toLocaleString()}`;
  }
}
