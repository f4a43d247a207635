#!/usr/bin/env bash
# Installs Portside and starts the all-in-one server on embedded defaults (SQLite, local
# sandboxed kernels, app proxy).  Arguments go to `portside serve` (try --dev, --port).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/portside serve "$@"
