#!/usr/bin/env bash
# Make sure a Java 17+ runtime is present for the Spark engine (pyspark 4 needs Java 17 or 21).
# Idempotent: does nothing when `java` already runs; otherwise installs openjdk-17-jre-headless with apt-get
# (as root, or through sudo). usage: scripts/java.sh
set -euo pipefail
if command -v java >/dev/null 2>&1; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "no java and no apt-get: install a Java 17 runtime (e.g. Temurin 17) and put java on PATH" >&2
    exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends openjdk-17-jre-headless
java -version
