// Replay: a second connection to the same URL with replay_from, replay_to and speed; the live map waits meanwhile,
// and comes back as it is now when the replay stops.
import { LocstreamClient } from "/client/locstream-client.js";
import { $ } from "./page.js";
import { storedToken } from "./sign-in.js";

export class ReplayPanel {
  client = null; // the replay's connection while one runs

  /** `onChange(technicians, changed)`: the replay's map changed; `onStatus()`: its mode changed; `onStop()`: back to
   * live. */
  constructor({ feedUrl, onChange, onStatus, onStop }) {
    const now = new Date();
    $("replay-to").value = localInput(now);
    $("replay-from").value = localInput(new Date(now - 3600_000));
    $("replay").addEventListener("submit", (event) => {
      event.preventDefault();
      this.client?.close();
      const query = new URLSearchParams({
        replay_from: isoOf($("replay-from")), replay_to: isoOf($("replay-to")), speed: $("replay-speed").value || "60",
      });
      const replay = new LocstreamClient({
        url: feedUrl, token: storedToken(), query: query.toString(), autoReconnect: false, resume: false,
      });
      replay.addEventListener("change", (e) => onChange(replay.technicians, e.detail.changed));
      replay.addEventListener("status", onStatus);
      replay.addEventListener("message", (e) => {
        if (e.detail.type === "initial_state") $("replay-status").textContent = "replaying…";
        if (e.detail.type === "replay_done") $("replay-status").textContent = `replay done (${e.detail.events} updates)`;
      });
      this.client = replay;
      $("replay-status").textContent = "starting…";
      $("replay-pause").disabled = false;
      $("replay-stop").disabled = false;
    });
    $("replay-pause").addEventListener("click", () => {
      const paused = $("replay-pause").textContent === "Resume";
      this.client?.sendControl({ type: paused ? "resume" : "pause" });
      $("replay-pause").textContent = paused ? "Pause" : "Resume";
    });
    $("replay-stop").addEventListener("click", () => {
      this.client?.close();
      this.client = null;
      $("replay-status").textContent = "";
      $("replay-pause").disabled = true;
      $("replay-stop").disabled = true;
      onStop();
    });
  }
}

function isoOf(input) {
  return new Date(input.value).toISOString(); // datetime-local is the browser's local time
}

function localInput(date) {
  return new Date(date - date.getTimezoneOffset() * 60_000).toISOString().slice(0, 19);
}
