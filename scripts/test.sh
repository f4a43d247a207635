#!/usr/bin/env bash
# The test command: lint, types, and the suite on SQLite, then its database-facing part on PostgreSQL.
# It installs what the tests need first (the venv, bubblewrap and chromium where apt works,
# the official client venvs), so it runs the same on a fresh clone as on a dev machine.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install.sh --dev
bash scripts/setup-compat.sh

echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy"
.venv/bin/mypy src

PG_URL=${PORTSIDE_TEST_PG_URL:-postgresql+asyncpg://postgres@127.0.0.1:5432/test}

echo "== pytest (SQLite)"
# With no arguments: the SQLite pass runs everything but the Ray cluster tests; the PostgreSQL
# pass runs what talks to the database (clusters use PostgreSQL, so the Ray tests run there).
# tests/scaleout always uses PostgreSQL: two API servers need it.
if [ $# -gt 0 ]; then
    sqlite_args=("$@")
    pg_args=("$@")
else
    sqlite_args=(--ignore=tests/ray)
    pg_args=(tests/unit tests/integration tests/ray)
fi
.venv/bin/pytest -p no:cacheprovider "${sqlite_args[@]}"

if .venv/bin/python - "$PG_URL" <<'PY'
import asyncio, sys
import asyncpg
url = sys.argv[1].replace("postgresql+asyncpg", "postgresql")
async def ping():
    conn = await asyncpg.connect(url, timeout=3)
    await conn.close()
try:
    asyncio.run(ping())
except Exception as e:
    print(f"PostgreSQL is not reachable at {url}: {e}", file=sys.stderr)
    sys.exit(1)
PY
then
    echo "== pytest (PostgreSQL)"
    PORTSIDE_TEST_DATABASE_URL=$PG_URL .venv/bin/pytest -p no:cacheprovider "${pg_args[@]}"
elif [ "${CI:-}" = "true" ]; then
    echo "CI needs PostgreSQL for the second pass" >&2
    exit 1
else
    echo "== skipping the PostgreSQL pass: no server at $PG_URL"
fi
