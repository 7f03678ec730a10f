#!/usr/bin/env bash
# The README's test command: install the package with its test extras, then run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --upgrade pip > /dev/null
python3 -m pip install -e ".[test]"
python3 -m pytest -n 2 --dist loadfile -q -rs "$@"
