#!/usr/bin/env bash
# Install everything the tests need into .venv (dev extra: torch CPU, onnx, pytest...) and run them.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh dev
.venv/bin/python -m ruff check app tests bench
exec .venv/bin/python -m pytest "$@"
