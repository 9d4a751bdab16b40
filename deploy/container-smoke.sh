#!/usr/bin/env bash
# Build the scorer image on this machine, run it, and check /readyz and one /v1/score.
#
# No image registry is needed: the base image is bootstrapped with debootstrap (Debian bookworm,
# python3 + venv) and imported as $BASE_IMAGE. Starts dockerd itself when none is running, and
# stops what it started. Networking: build and run with --network host (the daemon runs with
# --bridge=none here), the container listens on 127.0.0.1:$PORT.
set -euo pipefail
cd "$(dirname "$0")/.."

BASE_IMAGE=${BASE_IMAGE:-fusionrank-base:bookworm}
IMAGE=${IMAGE:-fusionrank:smoke}
PORT=${PORT:-18080}
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
    tar -C "$WORK/rootfs" -c . | docker import - "$BASE_IMAGE" >/dev/null
fi
docker image ls "$BASE_IMAGE"

step "building $IMAGE"
docker build --network host --build-arg BASE_IMAGE="$BASE_IMAGE" -t "$IMAGE" . >"$WORK/build.log" 2>&1 \
    || { tail -30 "$WORK/build.log" >&2; exit 1; }
docker image ls "$IMAGE"

step "image checks: non-root user, no torch"
uid=$(docker run --rm --network none "$IMAGE" id -u)
[[ "$uid" != 0 ]] || { echo "the image runs as root" >&2; exit 1; }
echo "uid: $uid"
docker run --rm --network none "$IMAGE" python3 -c \
    "import importlib.util as u, sys; sys.exit(u.find_spec('torch') is not None)" \
    || { echo "torch is installed in the runtime image" >&2; exit 1; }
echo "torch: absent"

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
