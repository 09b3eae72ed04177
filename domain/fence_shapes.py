"""A fence's polygon as the geofence rule tests it, compactly, and which shapes can be fences at all. Pure.

A ring of 1,000 positions used to be held as tuples of float objects, twice (as given and projected), about 200 KB,
and its entry test measured the distance to every edge of every fence near a fix (0.8 ms a polygon). Here a ring is
one ``array('d')`` of projected metres (16 bytes a position) with an index of its edges by horizontal band, so
"inside?" looks only at the edges of the fix's band (about 4 µs for 1,000 positions) and "farther than m from
every edge?" only at the bands within m.

The antimeridian: longitudes are taken the short way round, each position relative to the one before
(``unwrapped``), and a fix relative to the fence's centre modulo 360, so a ring across ±180° is one small polygon,
not one spanning the globe the other way. The poles: a ring that winds round a pole, a position beyond ±85° of
latitude (where the maps' Web Mercator ends and a plane projection stops being exact enough) and a polygon spanning
more than ``MAX_SPAN_DEGREES`` are refused, with the reason, before they reach the topic (``shape_problem``).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence

EARTH_RADIUS_M = 6_371_008.8
METRES_PER_DEGREE = math.pi / 180 * EARTH_RADIUS_M
MAX_LATITUDE = 85.0
MAX_SPAN_DEGREES = 1.0  # about 111 km north-south: a job site, a depot, a district; not a country


def longitude_offset(longitude: float, origin: float) -> float:
    """``longitude - origin`` the short way round the globe, in [-180, 180)."""
    return (longitude - origin + 180.0) % 360.0 - 180.0


def unwrapped(ring: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The ring's (longitude, latitude) with each longitude within 180° of the one before: continuous across ±180°
    (they may then pass ±180)."""
    out = [ring[0]]
    previous = ring[0][0]
    for longitude, latitude in ring[1:]:
        previous += longitude_offset(longitude, previous)
        out.append((previous, latitude))
    return out


def polygon_problem(ring: Sequence[tuple[float, float]]) -> str | None:
    """Why a closed ring (GeoJSON order) cannot be a fence, or None."""
    continuous = unwrapped(ring)
    if abs(continuous[-1][0] - continuous[0][0]) > 1e-9:  # closed as given, not once unwrapped: round a pole
        return "the polygon winds round a pole; a fence must not contain one"
    longitudes = [longitude for longitude, _ in continuous]
    latitudes = [latitude for _, latitude in continuous]
    if max(abs(latitude) for latitude in latitudes) > MAX_LATITUDE:
        return f"positions beyond {MAX_LATITUDE:g} degrees of latitude cannot be fenced (the maps end there)"
    if max(longitudes) - min(longitudes) > MAX_SPAN_DEGREES or max(latitudes) - min(latitudes) > MAX_SPAN_DEGREES:
        return (
            f"the polygon spans more than {MAX_SPAN_DEGREES:g} degree of longitude or latitude (taking the shorter "
            "way round the globe): a fence is a site, not a region"
        )
    return None


def circle_problem(latitude: float, radius_m: float) -> str | None:
    """Why a circle cannot be a fence, or None: its edge must stay within ±``MAX_LATITUDE``."""
    if abs(latitude) + radius_m / METRES_PER_DEGREE > MAX_LATITUDE:
        return f"the circle reaches beyond {MAX_LATITUDE:g} degrees of latitude (the maps end there)"
    return None


def ring_frame(ring: Sequence[tuple[float, float]]) -> tuple[float, float, tuple[float, float, float, float]]:
    """A ring's vertex centroid (latitude, longitude in [-180, 180)) and box (west, south, east, north, continuous),
    without building its shape: what the services that only show or list fences need."""
    points = unwrapped(ring)
    if points[0] == points[-1]:
        points = points[:-1]
    longitudes = [lon for lon, _ in points]
    latitudes = [lat for _, lat in points]
    centre = sum(longitudes) / len(points)
    shift = longitude_offset(centre, 0.0) - centre  # the box moved with the centre into [-180, 180)
    box = (min(longitudes) + shift, min(latitudes), max(longitudes) + shift, max(latitudes))
    return sum(latitudes) / len(points), centre + shift, box


class PolygonShape:
    """A ring projected to metres east and north of its centre (equirectangular: exact enough within a fence's
    size), with its edges indexed by horizontal band. ``latitude``/``longitude``: the vertex centroid."""

    __slots__ = ("_band_height", "_bands", "_cos", "_xy", "latitude", "longitude", "max_x", "max_y", "min_x", "min_y")

    def __init__(self, ring: Sequence[tuple[float, float]]) -> None:
        points = unwrapped(ring)
        if points[0] == points[-1]:
            points = points[:-1]
        count = len(points)
        latitude = sum(lat for _, lat in points) / count
        longitude = sum(lon for lon, _ in points) / count
        self.latitude, self.longitude = latitude, longitude_offset(longitude, 0.0)
        self._cos = math.cos(math.radians(latitude))
        kx = METRES_PER_DEGREE * self._cos
        xs = [(lon - longitude) * kx for lon, _ in points]
        ys = [(lat - latitude) * METRES_PER_DEGREE for _, lat in points]
        xy = array("d", bytes(16 * count))
        xy[0::2], xy[1::2] = array("d", xs), array("d", ys)
        self._xy = xy
        self.min_x, self.max_x, self.min_y, self.max_y = min(xs), max(xs), min(ys), max(ys)
        bands = max(1, int(math.sqrt(count) * 2))
        height = (self.max_y - self.min_y) / bands or 1.0
        self._band_height = height
        band_of = [min(bands - 1, int((y - self.min_y) / height)) for y in ys]
        edges: list[list[int]] = [[] for _ in range(bands)]
        for i, first in enumerate(band_of):  # edge i runs from position i to i + 1: it lies in the bands between
            last = band_of[i + 1] if i + 1 < count else band_of[0]
            for band in range(min(first, last), max(first, last) + 1):
                edges[band].append(i)
        self._bands = tuple(array("I", band) for band in edges)

    @property
    def positions(self) -> int:
        return len(self._xy) // 2

    def local(self, latitude: float, longitude: float) -> tuple[float, float]:
        """Metres east and north of the centre (east taken the short way round)."""
        return (
            longitude_offset(longitude, self.longitude) * METRES_PER_DEGREE * self._cos,
            (latitude - self.latitude) * METRES_PER_DEGREE,
        )

    def area_m2(self) -> float:
        xy, count = self._xy, len(self._xy) // 2
        twice = sum(
            xy[2 * i] * xy[(2 * i + 3) % (2 * count)] - xy[(2 * i + 2) % (2 * count)] * xy[2 * i + 1]
            for i in range(count)
        )
        return abs(twice) / 2

    def reach_m(self) -> float:
        """How far from the centre the farthest position is."""
        xy = self._xy
        return math.sqrt(max(xy[i] * xy[i] + xy[i + 1] * xy[i + 1] for i in range(0, len(xy), 2)))

    def bbox(self) -> tuple[float, float, float, float]:
        """West, south, east, north in degrees; west and east may pass ±180 (the box is continuous)."""
        kx = METRES_PER_DEGREE * self._cos
        return (
            self.longitude + self.min_x / kx,
            self.latitude + self.min_y / METRES_PER_DEGREE,
            self.longitude + self.max_x / kx,
            self.latitude + self.max_y / METRES_PER_DEGREE,
        )

    def contains(self, latitude: float, longitude: float) -> bool:
        x, y = self.local(latitude, longitude)
        return self._contains(x, y)

    def _contains(self, x: float, y: float) -> bool:
        if not (self.min_x <= x <= self.max_x and self.min_y <= y <= self.max_y):
            return False
        xy, count, inside = self._xy, len(self._xy) // 2, False
        for i in self._bands[min(len(self._bands) - 1, int((y - self.min_y) / self._band_height))]:
            j = i + 1 if i + 1 < count else 0
            yi, yj = xy[2 * i + 1], xy[2 * j + 1]
            if (yi > y) != (yj > y):
                xi, xj = xy[2 * i], xy[2 * j]
                if x < (xj - xi) * (y - yi) / (yj - yi) + xi:
                    inside = not inside
        return inside

    def outside_beyond(self, latitude: float, longitude: float, margin: float) -> bool:
        """Outside and farther than ``margin`` metres from every edge (the exit test): only the edges of the bands
        within the margin are measured."""
        x, y = self.local(latitude, longitude)
        if x < self.min_x - margin or x > self.max_x + margin or y < self.min_y - margin or y > self.max_y + margin:
            return True
        if self._contains(x, y):
            return False
        xy, count, height, last = self._xy, len(self._xy) // 2, self._band_height, len(self._bands) - 1
        first_band = max(0, min(last, int((y - margin - self.min_y) / height)))
        last_band = max(0, min(last, int((y + margin - self.min_y) / height)))
        limit = margin * margin
        for band in range(first_band, last_band + 1):
            for i in self._bands[band]:
                j = i + 1 if i + 1 < count else 0
                ax, ay, bx, by = xy[2 * i], xy[2 * i + 1], xy[2 * j], xy[2 * j + 1]
                if (ax - x > margin and bx - x > margin) or (x - ax > margin and x - bx > margin):
                    continue  # both ends beyond the margin on one side: the edge cannot come within it
                dx, dy = bx - ax, by - ay
                length = dx * dx + dy * dy
                t = 0.0 if length == 0 else max(0.0, min(1.0, ((x - ax) * dx + (y - ay) * dy) / length))
                ex, ey = x - ax - t * dx, y - ay - t * dy
                if ex * ex + ey * ey <= limit:
                    return False
        return True
