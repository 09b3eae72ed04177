# The locstream services for compose.yaml (the broker comes from the apache/kafka image there). One image; the
# command picks the service: locstream producers | projector | ws-edge | geofencer | replay.
FROM node:20-slim AS web
WORKDIR /web
COPY ws_edge/web/package.json ws_edge/web/package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error

FROM python:3.11-slim AS app
WORKDIR /app
COPY pyproject.toml README.md ./
COPY locstream ./locstream
COPY schemas ./schemas
COPY domain ./domain
COPY launch ./launch
COPY producers ./producers
COPY projector ./projector
COPY ws_edge ./ws_edge
COPY replay ./replay
COPY geofencer ./geofencer
COPY notifier ./notifier
# What the map page loads from npm (not vendored; ws_edge/map_page.py VENDOR); an editable install serves it from
# ws_edge/web.
COPY --from=web /web/node_modules/leaflet ./ws_edge/web/node_modules/leaflet
COPY --from=web /web/node_modules/supercluster ./ws_edge/web/node_modules/supercluster
COPY --from=web /web/node_modules/topojson-client ./ws_edge/web/node_modules/topojson-client
COPY --from=web /web/node_modules/world-atlas ./ws_edge/web/node_modules/world-atlas
RUN pip install --no-cache-dir -e ".[parquet]"
ENV LOCSTREAM_DATA_DIR=/data

# The pure core's per-fix rules compiled with mypyc (launch/compile_domain.py: about twice as fast), with a C compiler
# this stage alone has. Built on the same base image as the one it is copied into: domain/__init__.py uses a build
# only when it was made by the same interpreter from the same sources, and falls back to the Python source otherwise.
FROM app AS compiled
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*
RUN pip install --no-cache-dir "mypy>=1.11" "setuptools>=68" && python -m launch.compile_domain

FROM app
COPY --from=compiled /app/build/mypyc ./build/mypyc
VOLUME /data
EXPOSE 8000
# No service by default: compose.yaml names one per container. (`locstream dev` is for a laptop: the well-known dev
# secret and a broker of its own, which this image cannot run; it has no Java.)
CMD ["locstream", "--help"]
