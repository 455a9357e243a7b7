#!/usr/bin/env bash
# Create or refresh .venv with kubeling and its test dependencies, and install the
# system packages the tests need (etcd-server for the etcd backend tests) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
if ! command -v etcd >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null) \
    || echo "note: etcd-server could not be installed; etcd tests will be skipped" >&2
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
.venv/bin/python -m pip install -q -e '.[test]' 2>&1 | grep -v '^WARNING: Location' || true
.venv/bin/python -c 'import kubeling, aiohttp, kubernetes, lightkube' 
# Bytecode for kubeling itself (an editable install gets none): with PYTHONDONTWRITEBYTECODE set,
# as on these machines, every start would otherwise compile the whole package (~0.3 s of start-up).
.venv/bin/python -m compileall -q -j 0 kubeling >/dev/null
