// The clustering worker (a classic worker: supercluster's UMD build brings kdbush along). Messages:
// {type: "load", generation, coords: Float64Array [lng, lat, ...], categories: Uint8Array, seq, bbox?, zoom?}
// {type: "query", seq, bbox, zoom}
// Answer: {seq, generation, clusters: [{lat, lng, count, counts, expand}], points: Int32Array (indexes of the load)}.
importScripts("/map/vendor/supercluster/supercluster.min.js");

const CATEGORIES = 7; // clusters.js: the statuses, other, stale
let index = null;
let generation = 0;

const KEYS = Array.from({ length: CATEGORIES }, (_, k) => `c${k}`);

// Counts by category as flat numbers: supercluster copies a cluster's properties shallowly into its parent, so a
// nested array would be shared, and adding into it would count children twice.
function counted(properties) {
  const counts = {};
  for (let k = 0; k < CATEGORIES; k += 1) counts[KEYS[k]] = properties.c === k ? 1 : 0;
  return counts;
}

function merged(into, from) {
  for (let k = 0; k < CATEGORIES; k += 1) into[KEYS[k]] += from[KEYS[k]];
}

function load({ coords, categories }) {
  const points = new Array(categories.length);
  for (let i = 0; i < categories.length; i += 1) {
    points[i] = {
      type: "Feature",
      properties: { i, c: categories[i] },
      geometry: { type: "Point", coordinates: [coords[2 * i], coords[2 * i + 1]] },
    };
  }
  // radius is in 1/512ths of a tile, Leaflet's tiles are 256 px: clusters are at least 60 px apart on screen
  index = new Supercluster({ radius: 120, maxZoom: 16, map: counted, reduce: merged });
  index.load(points);
}

function answer(seq, bbox, zoom) {
  const clusters = [];
  const singles = [];
  if (index && bbox) {
    for (const feature of index.getClusters(bbox, zoom)) {
      const [lng, lat] = feature.geometry.coordinates;
      const p = feature.properties;
      if (p.cluster) {
        const counts = KEYS.map((key) => p[key]);
        clusters.push({ lat, lng, count: p.point_count, counts, expand: index.getClusterExpansionZoom(p.cluster_id) });
      } else {
        singles.push(p.i);
      }
    }
  }
  const points = Int32Array.from(singles);
  postMessage({ seq, generation, clusters, points }, [points.buffer]);
}

onmessage = ({ data }) => {
  if (data.type === "load") {
    load(data);
    generation = data.generation;
  }
  answer(data.seq, data.bbox, data.zoom);
};
