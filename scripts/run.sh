#!/usr/bin/env bash
# Sets up and runs the hub: a virtualenv with the project, then `hub serve` (embedded mode with
# no config: SQLite ./hub.db, in-process jobs, HTTP on 127.0.0.1:8080, SMTP on 127.0.0.1:2525).
# Arguments go to `hub serve`, e.g. --config hub.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_venv
exec .venv/bin/hub serve "$@"
