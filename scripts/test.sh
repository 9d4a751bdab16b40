#!/usr/bin/env bash
# Install everything the tests need into .venv (dev extra: torch CPU, onnx, pytest...), lint, type-check, test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh dev
.venv/bin/python -m ruff check app tests bench
.venv/bin/python -m mypy app
exec .venv/bin/python -m pytest "$@"
