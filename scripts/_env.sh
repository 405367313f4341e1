# Sourced by scripts/run, scripts/test, scripts/bench, scripts/chaos: make .venv with masd and the
# benchmark (scripts/benchmark, a distribution of its own) installed editable, and reinstall only when
# either pyproject.toml changed. Works on a fresh Debian/Ubuntu machine with Python 3.11+.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

find_python() {
    for py in python3.13 python3.12 python3.11 python3; do
        if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
            echo "$py"; return 0
        fi
    done
    return 1
}

PY="$(find_python || true)"
if [ -z "$PY" ]; then
    echo "masd needs Python 3.11 or newer; installing it from Debian's packages" >&2
    as_root apt-get update -qq && as_root apt-get install -y -qq python3 python3-venv python3-pip >/dev/null
    PY="$(find_python)"
fi
if ! "$PY" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    as_root apt-get update -qq && as_root apt-get install -y -qq python3-venv >/dev/null
fi

VENV="$ROOT/.venv"
STAMP="$VENV/.masd-installed"
WANT="$(cat pyproject.toml scripts/benchmark/pyproject.toml | sha256sum | cut -d' ' -f1)-${MASD_EXTRAS:-dev}"
if [ ! -x "$VENV/bin/python" ]; then
    echo "creating $VENV" >&2
    "$PY" -m venv "$VENV"
fi
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
    echo "installing masd, its dependencies and its benchmark into .venv (first run takes a minute)" >&2
    LOG="$VENV/install.log"
    if ! { "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip \
           && "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[${MASD_EXTRAS:-dev}]" \
           && "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e scripts/benchmark; } \
         >"$LOG" 2>&1 || ! "$VENV/bin/python" -c 'import masd, masd_adapters, masd_bench' 2>>"$LOG"; then
        tail -n 40 "$LOG" >&2
        echo "installing masd failed; the whole log is in $LOG" >&2
        exit 1
    fi
    echo "$WANT" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
mkdir -p "$VENV/mypy-path"
ln -sfn "$ROOT/adapters" "$VENV/mypy-path/masd_adapters"
