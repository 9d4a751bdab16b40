# fusionrank scorer image: numpy + onnxruntime + pyarrow + FastAPI from a lock file, no torch, no pip, non-root.
#
# BASE_IMAGE is any Debian bookworm image with python3 3.11 and its venv module. With a registry:
#   docker build -t fusionrank:local .
# Without one (this machine), deploy/container-smoke.sh bootstraps a slim base with debootstrap, imports it
# as fusionrank-base:bookworm-slim, and builds with the OCI label arguments filled from git and pyproject.toml:
#   docker build --network host --build-arg BASE_IMAGE=fusionrank-base:bookworm-slim \
#     --build-arg VERSION="$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml)" \
#     --build-arg REVISION="$(git rev-parse HEAD)" --build-arg CREATED="$(git log -1 --format=%cI)" \
#     -t fusionrank:local .
#
# Dependencies come from requirements/service.lock (every package pinned, sha256 required) and the wheel is
# built with requirements/build.lock: nothing is resolved at build time, so two builds of one commit hold the
# same packages. Refresh both locks with ONE command after changing pyproject.toml: scripts/lock.sh
# (tests/deploy/test_lock.py fails while the lock and pyproject.toml disagree).
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# binutils for strip (deploy/image/trim_venv.py); build stage only, never in the runtime image.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends binutils \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# A build venv holds the locked installer and wheel builder; the service venv gets no pip, setuptools
# or wheel at all (`venv --without-pip`; pip installs into it from outside with --python).
COPY requirements/ ./requirements/
COPY deploy/image/trim_venv.py ./deploy/image/
RUN python3 -m venv /opt/build \
    && /opt/build/bin/python -m pip install --no-cache-dir --disable-pip-version-check --require-hashes --no-deps \
        -r requirements/build.lock \
    && python3 -m venv --without-pip /opt/fusionrank \
    && /opt/build/bin/python -m pip --python /opt/fusionrank/bin/python install --no-cache-dir \
        --disable-pip-version-check --require-hashes --no-deps -r requirements/service.lock \
    && /opt/build/bin/python -m pip --python /opt/fusionrank/bin/python check \
    && /opt/fusionrank/bin/python deploy/image/trim_venv.py /opt/fusionrank
# The code last: a code change rebuilds these layers only, not the dependencies. SOURCE_DATE_EPOCH makes the
# wheel byte-identical between builds (zip timestamps), so is every file of /opt/fusionrank but the .pyc.
COPY pyproject.toml README.md ./
COPY app ./app
RUN SOURCE_DATE_EPOCH=315532800 /opt/build/bin/python -m pip wheel --no-cache-dir --disable-pip-version-check --no-deps --no-build-isolation \
        --wheel-dir /tmp/dist . \
    && /opt/build/bin/python -m pip --python /opt/fusionrank/bin/python install --no-cache-dir \
        --disable-pip-version-check --no-deps --no-index /tmp/dist/fusionrank-*.whl \
    && /opt/fusionrank/bin/python -c "import app.main, onnxruntime, numpy, pyarrow.ipc" \
    && ! /opt/fusionrank/bin/python -c "import pip" 2>/dev/null

FROM ${BASE_IMAGE} AS runtime
# OCI labels; VERSION, REVISION, CREATED and SOURCE (the repository URL) are build arguments (see the top).
ARG VERSION=unknown
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE=unknown
LABEL org.opencontainers.image.title="fusionrank" \
      org.opencontainers.image.description="fusionrank scorer: calibrated multi-task ranking under versioned utility policies" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}"
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
