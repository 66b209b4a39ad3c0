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
        .venv/bin/python -m mypy api flows blocks standin bench
        exec .venv/bin/python -m pytest -q "$@"
        ;;
    *)
        exec .venv/bin/workjet "$@"
        ;;
esac
