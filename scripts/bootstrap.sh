#!/usr/bin/env bash
# Create or refresh .venv with kubeling and its test dependencies, and install the
# system packages the tests need (etcd-server for the etcd backend tests) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v etcd >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null) \
    || echo "note: etcd-server could not be installed; etcd tests will be skipped" >&2
fi
# The interpreter: $PY when set; else the distribution's /usr/bin/python3 (3.11 or newer) when it
# can make a venv; else python3 on PATH. Distributions build CPython with profile-guided
# optimisation and LTO into a statically linked interpreter; a python3 built by pyenv, first on
# PATH on these machines, has neither (a shared libpython, no PGO): the API server spent 13% less
# CPU per pod create on Debian's 3.11 than on pyenv's 3.11.7 (seven paired benchmark runs), 8%
# fewer instructions (callgrind).
make_venv() {
  "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || return 1
  if ! "$1" -m venv .venv 2>/dev/null; then
    rm -rf .venv
    return 1
  fi
}
if [ ! -x .venv/bin/python ]; then
  if [ -n "${PY:-}" ]; then
    "$PY" -m venv .venv
  else
    make_venv /usr/bin/python3 || make_venv python3 || python3 -m venv .venv
  fi
  echo "bootstrap: .venv made from $(.venv/bin/python -c 'import sys; print(sys._base_executable, sys.version.split()[0])')" >&2
fi
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
.venv/bin/python -m pip install -q -e '.[test]' 2>&1 | grep -v '^WARNING: Location' || true
.venv/bin/python -c 'import kubeling, aiohttp, kubernetes, lightkube' 
# Bytecode for kubeling itself (an editable install gets none): with PYTHONDONTWRITEBYTECODE set,
# as on these machines, every start would otherwise compile the whole package (~0.3 s of start-up).
.venv/bin/python -m compileall -q -j 0 kubeling >/dev/null
