#!/usr/bin/env bash
# Makes docs/html-report.png from a real run of the demo fleet, copied into a temporary
# folder: taken to version 7, then an eighth migration that fails on two tenants, rolled out
# in three waves with a --check and a bake between them; its report written as run.html and
# photographed by headless Chromium (Debian's `chromium`).
#
#   docs/screenshot.sh [OUT.png]                  the SQLite demo fleet (tenants.yaml)
#   docs/screenshot.sh --postgres [OUT.png]       the same fleet on PostgreSQL
#                                                 (examples/postgres), in a scratch database
#                                                 made on PG_ADMIN_URL and dropped after
#
# On SQLite the eighth migration creates a table two tenants already have; on PostgreSQL it
# adds a unique index that two tenants' data violates, so the page shows the server's DETAIL.
# FLEETMIG=path/to/fleetmig picks the binary (default: target/debug/fleetmig, built if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
engine=sqlite
if [ "${1:-}" = "--postgres" ]; then engine=postgres; shift; fi
out="$(realpath -m "${1:-docs/html-report.png}")"
fleetmig="${FLEETMIG:-target/debug/fleetmig}"
[ -x "$fleetmig" ] || cargo build --quiet
fleetmig="$(realpath "$fleetmig")"
chromium="${FLEETMIG_CHROMIUM:-$(command -v chromium || command -v chromium-browser)}"
admin="${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
db="fleetmig_screenshot_$$"

work="$(mktemp -d)"
cleanup() {
  cd /
  if [ "$engine" = postgres ]; then psql -q "$admin" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null; fi
  rm -rf "$work"
}
trap cleanup EXIT
if [ "$engine" = postgres ]; then
  cp -r examples/postgres/tenants.yaml examples/postgres/migrations "$work/"
  psql -q "$admin" -c "CREATE DATABASE $db" >/dev/null
  export DEMO_PG_URL="${admin%/*}/$db"
else
  cp -r tenants.yaml migrations "$work/"
fi
cd "$work"
"$fleetmig" up --to 7 --yes >/dev/null 2>&1
if [ "$engine" = postgres ]; then
  printf 'CREATE UNIQUE INDEX accounts_name_key ON accounts (lower(name));\n' >migrations/0008_unique_account_names.up.sql
  printf 'DROP INDEX accounts_name_key;\n' >migrations/0008_unique_account_names.down.sql
  for t in wayne tyrell; do
    psql -q "$DEMO_PG_URL" -c "INSERT INTO demo_$t.accounts (name) VALUES ('DEFAULT Account')" >/dev/null
  done
else
  printf 'CREATE TABLE audit_log (id INTEGER PRIMARY KEY, account_id INTEGER NOT NULL, at TEXT NOT NULL);\n' \
    >migrations/0008_create_audit_log.up.sql
  printf 'DROP TABLE audit_log;\n' >migrations/0008_create_audit_log.down.sql
  for t in wayne tyrell; do
    python3 -c 'import sqlite3, sys; sqlite3.connect(sys.argv[1]).execute("CREATE TABLE audit_log (x TEXT)")' "data/$t.db"
  done
fi
"$fleetmig" up --waves 4,100% --max-failures 2 --check "SELECT count(*) >= 0 FROM accounts" \
  --bake 2s -j 2 --report run.html >/dev/null 2>&1 || true
"$chromium" --headless --disable-gpu --no-sandbox --hide-scrollbars --window-size=1280,1200 \
  --screenshot="$out" "file://$work/run.html" 2>/dev/null
echo "wrote $out"
