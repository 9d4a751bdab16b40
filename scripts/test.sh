#!/usr/bin/env bash
# Install everything the tests need into .venv (dev extra: torch CPU, onnx, pyspark, pytest...) and a Java 17
# runtime for the Spark tests when none is present, then lint, type-check, build the docs site strictly, test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh dev
scripts/java.sh
.venv/bin/python -m ruff check app tests bench
.venv/bin/python -m mypy app
site_dir="$(mktemp -d)"
trap 'rm -rf "$site_dir"' EXIT
NO_MKDOCS_2_WARNING=1 .venv/bin/python -m mkdocs build --strict --quiet --site-dir "$site_dir"
.venv/bin/python -m pytest "$@"
