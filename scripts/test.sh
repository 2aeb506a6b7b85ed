#!/usr/bin/env bash
# Sets up and runs every test: system packages when missing (redis-server, PostgreSQL),
# a virtualenv with the project, a private PostgreSQL and the tests' own Redis on free ports,
# then pytest over the whole suite (storage tests run on SQLite and on PostgreSQL).
# Extra arguments go to pytest. HUB_TEST_POSTGRES_URL=postgresql+asyncpg://... uses that server;
# HUB_TEST_BACKENDS=sqlite skips PostgreSQL; --full (or HUB_TEST_FULL=1) runs slow_e2e on both.
# Tests run in one pytest-xdist process per core (HUB_TEST_WORKERS=N picks N; 0 runs them in
# this process): many wait on child processes, browsers and sockets, so the cores stay busy.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_system_packages
ensure_venv test

cleanup() { stop_private_postgres; }
trap cleanup EXIT
if [[ -z "${HUB_TEST_POSTGRES_URL:-}" && "${HUB_TEST_BACKENDS:-postgres}" == *postgres* ]]; then
    start_private_postgres
    export HUB_TEST_POSTGRES_URL="$PRIVATE_PG_URL"
fi

set +e
.venv/bin/python -m pytest -n "${HUB_TEST_WORKERS:-auto}" "$@"
status=$?
set -e
exit $status
