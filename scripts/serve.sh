#!/usr/bin/env bash
# Install the service (no torch) into .venv and serve the shipped demo bundle on 127.0.0.1:8000.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/fusionrank serve --model-store model_store --policies policies --host 127.0.0.1 --port "${PORT:-8000}" "$@"
