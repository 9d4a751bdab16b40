# fusionrank scorer image: numpy + onnxruntime + FastAPI, no torch, non-root.
#
# BASE_IMAGE is any Debian-like image with python3 (>= 3.11) and its venv module. With a registry:
#   docker build -t fusionrank:local .
# Without one (this machine), deploy/container-smoke.sh bootstraps a base with debootstrap, imports it
# as fusionrank-base:bookworm and builds with:
#   docker build --network host --build-arg BASE_IMAGE=fusionrank-base:bookworm -t fusionrank:local .
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
WORKDIR /src
# The service's dependencies only, never the train/dev extras. Installed against an empty `app`
# package first, so that a code change rebuilds the last layer only, not the dependencies.
COPY pyproject.toml README.md ./
RUN python3 -m venv /opt/fusionrank \
    && mkdir app && touch app/__init__.py \
    && /opt/fusionrank/bin/python -m pip install --no-cache-dir --disable-pip-version-check . \
    && rm -rf app build
COPY app ./app
RUN /opt/fusionrank/bin/python -m pip install --no-cache-dir --disable-pip-version-check --no-deps . \
    && /opt/fusionrank/bin/python -c "import app.main, onnxruntime, numpy"

FROM ${BASE_IMAGE} AS runtime
ENV PATH=/opt/fusionrank/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    FUSIONRANK_MODEL_STORE=/srv/fusionrank/model_store \
    FUSIONRANK_POLICIES=/srv/fusionrank/policies \
    FUSIONRANK_PORT=8000
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin fusionrank
COPY --from=build /opt/fusionrank /opt/fusionrank
# The shipped demo bundle; in production mount model_store/ and policies/ over these folders.
COPY model_store /srv/fusionrank/model_store
COPY policies /srv/fusionrank/policies
USER 10001:10001
WORKDIR /srv/fusionrank
EXPOSE 8000
# Ready, not just live: a container is healthy once a snapshot is loaded and warmed.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ['FUSIONRANK_PORT'], timeout=2)"]
# One process per container (metrics are per process; scale with replicas, see docs/scaling.md).
CMD ["sh", "-c", "exec fusionrank serve --model-store \"$FUSIONRANK_MODEL_STORE\" --policies \"$FUSIONRANK_POLICIES\" --host 0.0.0.0 --port \"$FUSIONRANK_PORT\" --workers 1"]
