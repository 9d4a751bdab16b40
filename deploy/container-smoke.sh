#!/usr/bin/env bash
# Build the scorer image on this machine, run it, and check /readyz, /v1/score (JSON and Arrow),
# /v1/feedback and /metrics, the OCI labels, that pip is absent, and the image size budget.
#
# No image registry is needed: the base image is bootstrapped with debootstrap (Debian bookworm,
# python3 + venv, without docs, man pages and locales, as Debian's slim images) and imported as
# $BASE_IMAGE. Starts dockerd itself when none is running, and stops what it started. Networking: build
# and run with --network host (the daemon runs with --bridge=none here), the container listens on
# 127.0.0.1:$PORT. MAX_IMAGE_MB (default 400) is the size budget: the script fails above it.
set -euo pipefail
cd "$(dirname "$0")/.."

BASE_IMAGE=${BASE_IMAGE:-fusionrank-base:bookworm-slim}
IMAGE=${IMAGE:-fusionrank:smoke}
PORT=${PORT:-18080}
MAX_IMAGE_MB=${MAX_IMAGE_MB:-400}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
NAME=fusionrank-smoke-$$
WORK=$(mktemp -d)
DOCKERD_PID=""

step() { printf '\n== %s\n' "$*"; }
cleanup() {
    docker rm -f "$NAME" >/dev/null 2>&1 || true
    if [[ -n "$DOCKERD_PID" ]]; then kill "$DOCKERD_PID" 2>/dev/null || true; wait "$DOCKERD_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

for tool in docker dockerd debootstrap curl; do
    command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install docker.io debootstrap curl)" >&2; exit 2; }
done

if ! docker info >/dev/null 2>&1; then
    step "starting dockerd (no daemon was running)"
    dockerd --iptables=false --ip6tables=false --bridge=none >"$WORK/dockerd.log" 2>&1 &
    DOCKERD_PID=$!
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null 2>&1 || { tail -20 "$WORK/dockerd.log" >&2; exit 1; }
fi

if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    step "bootstrapping base image $BASE_IMAGE from $MIRROR"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$WORK/rootfs" "$MIRROR" \
        >"$WORK/debootstrap.log" 2>&1 || { tail -20 "$WORK/debootstrap.log" >&2; exit 1; }
    # The build's pip trusts what this machine trusts (a TLS-inspecting proxy's CA, if any).
    cp /etc/ssl/certs/ca-certificates.crt "$WORK/rootfs/etc/ssl/certs/ca-certificates.crt"
    rm -rf "$WORK"/rootfs/var/cache/apt/archives/*.deb "$WORK"/rootfs/var/lib/apt/lists/*
    # Slim, as debian:bookworm-slim: no documentation, man pages or translations (52 of 169 MB), and
    # dpkg keeps them out of whatever a later apt-get installs.
    rm -rf "$WORK"/rootfs/usr/share/doc/* "$WORK"/rootfs/usr/share/man/* "$WORK"/rootfs/usr/share/info/* \
        "$WORK"/rootfs/usr/share/locale/* "$WORK"/rootfs/usr/share/lintian
    printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
        'path-exclude /usr/share/man/*' 'path-exclude /usr/share/info/*' 'path-exclude /usr/share/locale/*' \
        'path-exclude /usr/share/lintian/*' >"$WORK/rootfs/etc/dpkg/dpkg.cfg.d/docker-slim"
    tar -C "$WORK/rootfs" -c . | docker import - "$BASE_IMAGE" >/dev/null
fi
docker image ls "$BASE_IMAGE"

step "building $IMAGE from requirements/service.lock"
# The OCI labels: the version from pyproject.toml, the commit and its date (not the build's: a rebuild of
# one commit gets the same labels), the repository's URL when it has a remote.
VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml | head -1)
REVISION=$(git rev-parse HEAD 2>/dev/null || echo unknown)
CREATED=$(git log -1 --format=%cI 2>/dev/null || echo unknown)
SOURCE=$(git remote get-url origin 2>/dev/null || echo unknown)
docker build --network host --build-arg BASE_IMAGE="$BASE_IMAGE" --build-arg VERSION="$VERSION" \
    --build-arg REVISION="$REVISION" --build-arg CREATED="$CREATED" --build-arg SOURCE="$SOURCE" \
    -t "$IMAGE" . >"$WORK/build.log" 2>&1 || { tail -30 "$WORK/build.log" >&2; exit 1; }
# What deploy/image/trim_venv.py removed, and the largest packages left (its report in the build log).
sed -E 's/^#[0-9]+ [0-9.]+ //' "$WORK/build.log" | awk '/^freed: /{on=1} on && !/^(freed: |\/opt\/| )/{exit} on' \
    >"$WORK/trim.txt"
if [[ -s "$WORK/trim.txt" ]]; then cat "$WORK/trim.txt"; else echo "(dependency layer from the build cache: no trim report)"; fi
docker image ls "$IMAGE"

step "image size: budget $MAX_IMAGE_MB MB"
size=$(docker image inspect -f '{{.Size}}' "$IMAGE")
base=$(docker image inspect -f '{{.Size}}' "$BASE_IMAGE")
echo "image: $((size / 1000000)) MB (base $BASE_IMAGE: $((base / 1000000)) MB, fusionrank layers: $(((size - base) / 1000000)) MB)"
(( size <= MAX_IMAGE_MB * 1000000 )) || { echo "the image is over the budget of $MAX_IMAGE_MB MB" >&2; exit 1; }

step "image checks: OCI labels, non-root user, no torch, no pip"
docker image inspect -f '{{range $k, $v := .Config.Labels}}{{println $k "=" $v}}{{end}}' "$IMAGE" \
    | grep '^org.opencontainers' | tee "$WORK/labels.txt"
for label in title version revision created source licenses; do
    grep -q "^org.opencontainers.image.$label = ." "$WORK/labels.txt" || { echo "label $label is missing" >&2; exit 1; }
done
grep -q "^org.opencontainers.image.revision = $REVISION\$" "$WORK/labels.txt" \
    || { echo "the revision label is not $REVISION" >&2; exit 1; }

# Exactly the locked packages (and fusionrank itself), nothing resolved at build time.
normalise() { awk -F'==' '{ n = tolower($1); gsub(/[-_.]+/, "-", n); print n "==" $2 }' | sort; }
docker run --rm --network none "$IMAGE" python3 -c \
    "import importlib.metadata as m; print('\n'.join(d.metadata['Name'] + '==' + d.version for d in m.distributions()))" \
    | normalise >"$WORK/installed.txt"
{ grep -oE '^[A-Za-z0-9._-]+==[^ ]+' requirements/service.lock; echo "fusionrank==$VERSION"; } | normalise >"$WORK/locked.txt"
diff "$WORK/locked.txt" "$WORK/installed.txt" \
    || { echo "the image's packages differ from requirements/service.lock (< lock, > image)" >&2; exit 1; }
echo "packages: exactly requirements/service.lock and fusionrank ($(wc -l <"$WORK/locked.txt") distributions)"
uid=$(docker run --rm --network none "$IMAGE" id -u)
[[ "$uid" != 0 ]] || { echo "the image runs as root" >&2; exit 1; }
echo "uid: $uid"
docker run --rm --network none "$IMAGE" python3 -c \
    "import importlib.util as u, sys; sys.exit(u.find_spec('torch') is not None)" \
    || { echo "torch is installed in the runtime image" >&2; exit 1; }
echo "torch: absent"
docker run --rm --network none "$IMAGE" python3 -c \
    "import importlib.util as u, sys; sys.exit(any(u.find_spec(m) for m in ('pip', 'setuptools', 'wheel')))" \
    || { echo "pip, setuptools or wheel is installed in the runtime image" >&2; exit 1; }
echo "pip, setuptools, wheel: absent"

step "running $IMAGE on 127.0.0.1:$PORT"
docker run -d --name "$NAME" --network host -e FUSIONRANK_PORT="$PORT" "$IMAGE" >/dev/null
status=starting
for _ in $(seq 90); do
    status=$(docker inspect -f '{{.State.Health.Status}}' "$NAME" 2>/dev/null || echo gone)
    [[ "$status" == healthy || "$status" == unhealthy || "$status" == gone ]] && break
    sleep 1
done
echo "HEALTHCHECK: $status"
[[ "$status" == healthy ]] || { docker logs "$NAME" 2>&1 | tail -30 >&2; exit 1; }

step "GET /readyz"
curl -sS --fail "http://127.0.0.1:$PORT/readyz"
echo
step "POST /v1/score (model_store/demo_ranker/1/sample_request.json)"
curl -sS --fail -X POST "http://127.0.0.1:$PORT/v1/score" -H 'content-type: application/json' \
    -d @model_store/demo_ranker/1/sample_request.json >"$WORK/score.json"
python3 - "$WORK/score.json" <<'PY'
import json, sys
body = json.load(open(sys.argv[1]))
assert body["candidates"], "no ranked candidates"
print("versions:", json.dumps(body["versions"]))
print("ranked:", len(body["candidates"]), "top:", body["candidates"][0]["id"], "utility:", round(body["candidates"][0]["utility"], 6))
PY
step "POST /v1/score as Arrow (the trimmed pyarrow, in the container) and the offline formats"
# The same sample as an Arrow IPC stream, answered as Arrow: same order as the JSON answer. Then what the
# offline commands read and write (Parquet, CSV, compute) and numpy's BLAS, on the stripped libraries.
docker run --rm -i --network host -e PORT="$PORT" -e ANSWER="$(cat "$WORK/score.json")" "$IMAGE" python3 - \
    >"$WORK/arrow.log" 2>&1 <<'PY' || { cat "$WORK/arrow.log" >&2; echo "the Arrow or offline-format check failed" >&2; exit 1; }
import json, os, tempfile, urllib.request
import numpy as np
import pyarrow as pa, pyarrow.compute as pc, pyarrow.csv as pacsv, pyarrow.parquet as pq
answer = json.loads(os.environ["ANSWER"])
sample = json.load(open("/srv/fusionrank/model_store/demo_ranker/1/sample_request.json"))
rows = [{"id": c["id"], **c["features"], **c.get("attributes", {})} for c in sample["candidates"]]
batch = pa.RecordBatch.from_pylist(rows)
envelope = {k: v for k, v in sample.items() if k != "candidates"}
batch = batch.replace_schema_metadata({b"fusionrank.request": json.dumps(envelope).encode()})
sink = pa.BufferOutputStream()
with pa.ipc.new_stream(sink, batch.schema) as writer:
    writer.write_batch(batch)
request = urllib.request.Request(
    f"http://127.0.0.1:{os.environ['PORT']}/v1/score", data=sink.getvalue().to_pybytes(), method="POST",
    headers={"content-type": "application/vnd.apache.arrow.stream", "accept": "application/vnd.apache.arrow.stream"})
with urllib.request.urlopen(request, timeout=10) as response:
    table = pa.ipc.open_stream(response.read()).read_all()
assert table.column("id").to_pylist() == [c["id"] for c in answer["candidates"]], "Arrow and JSON answers differ"
print("arrow: ranked", table.num_rows, "same order as JSON")
with tempfile.TemporaryDirectory() as folder:
    pq.write_table(table, f"{folder}/t.parquet")
    pacsv.write_csv(table, f"{folder}/t.csv")
    assert pq.read_table(f"{folder}/t.parquet").equals(pacsv.read_csv(f"{folder}/t.csv").cast(table.schema))
assert abs(pc.sum(table.column("utility")).as_py() - sum(c["utility"] for c in answer["candidates"])) < 1e-9
a = np.random.default_rng(0).random((64, 64))
assert np.allclose(np.linalg.inv(a) @ a, np.eye(64))
print("parquet, csv, compute, numpy BLAS: ok")
PY
grep -v telemetry "$WORK/arrow.log"
step "POST /v1/feedback (one outcome of the top candidate) and GET /metrics"
python3 - "$WORK/score.json" >"$WORK/feedback.json" <<'PY'
import json, sys
body = json.load(open(sys.argv[1]))
top = body["candidates"][0]
event = {"event_id": "smoke-1", "task": "click", "prediction": top["predictions"]["click"], "label": 1,
         "segment": {"device": "ios"}, "event_time": "2026-01-01T00:00:00Z", **{k: v for k, v in body["versions"].items() if k != "policy_version"}}
print(json.dumps({"events": [event]}))
PY
curl -sS --fail -X POST "http://127.0.0.1:$PORT/v1/feedback" -H 'content-type: application/json' -d @"$WORK/feedback.json"
echo
curl -sS --fail "http://127.0.0.1:$PORT/metrics" >"$WORK/metrics.txt"
grep -E '^fusionrank_feedback_segment_events_total\{[^}]*task="click"[^}]*value="ios"' "$WORK/metrics.txt"
grep -E '^fusionrank_served_prediction_count\{[^}]*task="click"' "$WORK/metrics.txt"
grep -qE '^fusionrank_feedback_segment_events_total\{[^}]*task="click"[^}]*value="ios"\} 1\.0$' "$WORK/metrics.txt" \
    || { echo "the feedback event is not in /metrics" >&2; exit 1; }
step "container smoke: OK"
