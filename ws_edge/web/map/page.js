// What every part of the map page reads: its elements by id, and the knobs of its URL (only timings are read from
// it, never a token or an address).
export const $ = (id) => document.getElementById(id);
export const params = new URLSearchParams(location.search);
