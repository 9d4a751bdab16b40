#!/usr/bin/env bash
# Install everything the tests need into .venv (dev extra: torch CPU, onnx, pyspark, pytest...) and a Java 17
# runtime for the Spark tests when none is present, then lint, type-check, test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh dev
scripts/java.sh
.venv/bin/python -m ruff check app tests bench
.venv/bin/python -m mypy app
exec .venv/bin/python -m pytest "$@"
