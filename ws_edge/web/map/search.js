// Finding a technician by name or id (pure: unit tests in ws_edge/web/test/map.test.js), and the search box's keyboard
// behaviour (a combobox with a listbox: arrows move, Enter picks, Escape clears).

/** The best matches of `query` among map locations: a name or id that starts with it first, then a word of the
 * name that does, then any that contains it; alphabetical within each. */
export function matches(locations, query, limit = 8) {
  const q = query.trim().toLowerCase();
  if (!q) return [];
  const found = [];
  for (const t of locations) {
    const name = t.technician_name.toLowerCase();
    const id = t.technician_id.toLowerCase();
    let rank = -1;
    if (name.startsWith(q) || id.startsWith(q)) rank = 0;
    else if (name.split(/[\s._-]+/).some((word) => word.startsWith(q))) rank = 1;
    else if (name.includes(q) || id.includes(q)) rank = 2;
    if (rank >= 0) found.push([rank, t]);
  }
  found.sort((a, b) => a[0] - b[0] || a[1].technician_name.localeCompare(b[1].technician_name));
  return found.slice(0, limit).map(([, t]) => t);
}

export class SearchBox {
  constructor(input, list, { source, onPick }) {
    this.input = input;
    this.list = list;
    this.source = source; // () => iterable of locations
    this.onPick = onPick;
    this.found = [];
    this.active = -1;
    input.addEventListener("input", () => this._search());
    input.addEventListener("keydown", (event) => this._key(event));
    input.addEventListener("blur", () => setTimeout(() => this._show([]), 150));
    list.addEventListener("mousedown", (event) => event.preventDefault()); // keep the focus in the box
    list.addEventListener("click", (event) => {
      const option = event.target.closest("[role=option]");
      if (option) this._pick(Number(option.dataset.index));
    });
  }

  _search() {
    this._show(matches(this.source(), this.input.value));
  }

  _show(found) {
    this.found = found;
    this.active = found.length ? 0 : -1;
    this.list.replaceChildren(
      ...found.map((t, i) => {
        const option = document.createElement("li");
        option.id = `search-option-${i}`;
        option.setAttribute("role", "option");
        option.dataset.index = String(i);
        option.textContent = `${t.technician_name} (${t.technician_id}) · ${t.status}`; // text: names are data
        return option;
      }),
    );
    this.list.hidden = !found.length;
    this.input.setAttribute("aria-expanded", String(Boolean(found.length)));
    this._mark();
  }

  _mark() {
    for (const option of this.list.children) option.setAttribute("aria-selected", String(Number(option.dataset.index) === this.active));
    if (this.active >= 0) this.input.setAttribute("aria-activedescendant", `search-option-${this.active}`);
    else this.input.removeAttribute("aria-activedescendant");
  }

  _key(event) {
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      if (!this.found.length) this._search();
      const step = event.key === "ArrowDown" ? 1 : -1;
      this.active = (this.active + step + this.found.length) % Math.max(1, this.found.length);
      this._mark();
      event.preventDefault();
    } else if (event.key === "Enter") {
      event.preventDefault();
      if (this.active >= 0) this._pick(this.active);
    } else if (event.key === "Escape") {
      this.input.value = "";
      this._show([]);
    }
  }

  _pick(i) {
    const t = this.found[i];
    if (!t) return;
    this.input.value = t.technician_name;
    this._show([]);
    this.onPick(t.technician_id);
  }
}
