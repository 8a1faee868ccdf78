# chunkd in a container: `docker build -t chunkd .` then
#   docker run -d --name chunkd -p 19080:19080 -v chunkd-data:/data chunkd
#   docker exec chunkd chunkd token --data-dir /data          # a bearer token the server accepts
# Settings come from CHUNKD_* variables (docs/configuration.md), e.g. -e CHUNKD_PUBLIC_URL=https://uploads.example.com.
# Extras: --build-arg EXTRAS=postgres,s3,azure (default: postgres). See docs/deployment.md.

FROM python:3.11-slim AS build
ARG EXTRAS=postgres
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
# chunkd and every dependency as wheels (all of them ship manylinux wheels: no compiler in either stage)
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[${EXTRAS}]"

FROM python:3.11-slim
ARG EXTRAS=postgres
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CHUNKD_HOST=0.0.0.0 \
    CHUNKD_PORT=19080 \
    CHUNKD_DATA_DIR=/data
RUN groupadd --system --gid 10001 chunkd \
 && useradd --system --uid 10001 --gid chunkd --home-dir /data --no-create-home --shell /usr/sbin/nologin chunkd \
 && mkdir -p /data && chown chunkd:chunkd /data && chmod 0750 /data
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels "chunkd[${EXTRAS}]" && rm -rf /wheels
USER chunkd:chunkd
WORKDIR /data
# SQLite metadata, signing keys and the uploaded bytes: keep this on a volume (and back it up: docs/deployment.md)
VOLUME ["/data"]
EXPOSE 19080
# /healthz answers without auth as soon as the process serves; /readyz also checks the stores
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, sys, urllib.request; u = 'http://127.0.0.1:%s/healthz' % os.environ.get('CHUNKD_PORT', '19080'); sys.exit(0 if urllib.request.urlopen(u, timeout=4).status == 200 else 1)"]
# `chunkd serve` replaces itself with the server process (same pid), which handles SIGTERM itself
ENTRYPOINT ["chunkd"]
CMD ["serve"]
