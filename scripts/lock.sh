#!/usr/bin/env bash
# Refresh the image's lock files from pyproject.toml (the one command: scripts/lock.sh).
#
#   requirements/service.lock  the service's dependencies ([project] dependencies, no extras), every
#                              transitive package pinned, with the sha256 of every file on the index
#   requirements/build.lock    what installs and builds in the image's build stage: pip and the
#                              [build-system] requires (setuptools, wheel), pinned the same way
#
# The Dockerfile installs both with `pip install --require-hashes --no-deps`, so an image built today and one
# built next month from the same commit hold the same packages. Resolved for CPython 3.11 on Linux, the
# interpreter of both base images (python:3.11-slim-bookworm and the debootstrapped bookworm base).
# Needs uv (dev extra). Rerun after changing a dependency range in pyproject.toml, or to take upgrades
# (UPGRADE=1 scripts/lock.sh re-resolves from scratch; without it, pins still allowed by pyproject stay);
# tests/deploy/test_lock.py fails when the lock no longer satisfies pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-.venv/bin/python}
"$PYTHON" -m uv --version >/dev/null 2>&1 \
    || { echo "uv is missing for $PYTHON: install the dev extra (pip install 'uv>=0.13,<0.14')" >&2; exit 2; }

compile() {  # compile <output> <input>: the input is a file or - (stdin)
    local output=$1 input=$2 upgrade=()
    [[ "${UPGRADE:-0}" == 1 ]] && upgrade=(--upgrade)
    "$PYTHON" -m uv pip compile "$input" --output-file "$output" "${upgrade[@]}" \
        --python-version 3.11 --python-platform linux --generate-hashes --no-annotate --quiet \
        --custom-compile-command "scripts/lock.sh"
}

compile requirements/service.lock pyproject.toml
"$PYTHON" - <<'PY' | compile requirements/build.lock -
import tomllib
print("\n".join(["pip", *tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"]]))
PY
echo "wrote requirements/service.lock ($(grep -c '==' requirements/service.lock) packages)" \
     "and requirements/build.lock ($(grep -c '==' requirements/build.lock) packages)"
