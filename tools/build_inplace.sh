#!/usr/bin/env bash
# Developer build: compiles the native core into build/dev and copies it into src/sparseinfer,
# so `pytest` (which puts src/ on sys.path) uses this checkout's sources and module.
set -euo pipefail
cd "$(dirname "$0")/.."
py=$(command -v python3 || command -v python)
if [ ! -f build/dev/CMakeCache.txt ]; then
  cmake -S . -B build/dev -G Ninja -DCMAKE_BUILD_TYPE=Release -DSI_INPLACE=ON \
    -DPython_EXECUTABLE="$py" > /dev/null
fi
cmake --build build/dev -j "${JOBS:-2}"
