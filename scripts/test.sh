#!/usr/bin/env bash
# Set up a virtual environment with every extra and run the whole test suite (CPU only).
# Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[all,test]"
# Browser tests drive Debian's Chromium; install it when we may (root) and it is missing.
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
# The web tests mark real HTML not written here: Debian's Python documentation (python3-doc).
if [ ! -e /usr/share/doc/python3-doc/html/library/os.html ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-doc >/dev/null
fi
exec .venv/bin/python -m pytest "$@"
