// Where things are, whatever the tiles: a graticule always, and land, coastlines and country borders from world-atlas
// (Natural Earth 1:50m as TopoJSON, npm, in the package-lock) for a map with no tile server configured: an offline
// or first-run map still shows where things are. Drawn once on a canvas of their own, under everything else; a
// configured tile URL wins.
const BASE = "/map/vendor/world-atlas";

export async function drawGeography(map, { L = window.L, topojson = window.topojson } = {}) {
  if (!topojson) throw new Error("topojson-client is not installed on this edge: run `make run` (npm ci)");
  const [land, countries] = await Promise.all(
    ["land-50m.json", "countries-50m.json"].map(async (name) => {
      const response = await fetch(`${BASE}/${name}`);
      if (!response.ok) throw new Error(`${name}: HTTP ${response.status}`);
      return response.json();
    }),
  );
  const pane = map.createPane("geography");
  pane.style.zIndex = 250; // over tiles (none), under the fences and the fleet
  pane.style.pointerEvents = "none";
  const renderer = L.canvas({ pane: "geography", padding: 0.3 });
  const layer = (geojson, style) => L.geoJSON(geojson, { renderer, interactive: false, style }).addTo(map);
  const layers = {
    land: layer(topojson.feature(land, land.objects.land), { stroke: false, fillColor: "#f3efe4", fillOpacity: 1 }),
    coastlines: layer(topojson.mesh(land, land.objects.land), { color: "#7f9aa8", weight: 1, fill: false }),
    borders: layer(
      topojson.mesh(countries, countries.objects.countries, (a, b) => a !== b),
      { color: "#a58fa0", weight: 0.8, dashArray: "4 3", fill: false },
    ),
  };
  map.getContainer().classList.add("with-geography");
  return layers;
}

/** Lines every few degrees, about 200 px apart at any zoom (finer as one zooms in), redrawn after each move. */
export function drawGraticule(map, { L = window.L } = {}) {
  const graticule = L.layerGroup().addTo(map);
  const steps = [30, 10, 5, 2, 1, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001, 0.0005];
  const style = { className: "graticule", weight: 1, interactive: false };
  function draw() {
    graticule.clearLayers();
    const target = (360 / 2 ** map.getZoom()) * 0.8;
    const step = steps.find((s) => s <= target) ?? steps.at(-1);
    const b = map.getBounds().pad(0.5);
    for (let lat = Math.ceil(Math.max(-85, b.getSouth()) / step) * step; lat <= Math.min(85, b.getNorth()); lat += step) {
      graticule.addLayer(L.polyline([[lat, b.getWest()], [lat, b.getEast()]], style));
    }
    for (let lng = Math.ceil(b.getWest() / step) * step; lng <= b.getEast(); lng += step) {
      graticule.addLayer(L.polyline([[Math.max(-85, b.getSouth()), lng], [Math.min(85, b.getNorth()), lng]], style));
    }
  }
  draw();
  map.on("moveend", draw);
  return graticule;
}
