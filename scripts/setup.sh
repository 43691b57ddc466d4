#!/usr/bin/env bash
# Sets up everything Valley needs on a fresh Debian machine: a virtualenv with the package and
# its dev tools and benchmark extras, generated gRPC code, and (with --system) the servers the tests use.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}

if [ "${1:-}" = "--system" ]; then
  need=()
  command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
  command -v promtool >/dev/null 2>&1 || need+=(prometheus)
  if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
    need+=(postgresql)
  fi
  if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq
      apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    else
      echo "setup: missing ${need[*]}; install them (apt-get install ${need[*]}) or run as root" >&2
    fi
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[dev,bench]"
if [ -f scripts/gen_proto.sh ]; then
  bash scripts/gen_proto.sh "$VENV/bin/python"
fi
