# The locstream services for compose.yaml (the broker comes from the apache/kafka image there).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY locstream ./locstream
COPY schemas ./schemas
COPY producers ./producers
COPY projector ./projector
COPY ws_edge ./ws_edge
COPY replay ./replay
RUN pip install --no-cache-dir .
ENV LOCSTREAM_DATA_DIR=/data
VOLUME /data
EXPOSE 8000
CMD ["locstream", "dev", "--host", "0.0.0.0"]
