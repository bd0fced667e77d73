#!/usr/bin/env bash
# One entry point for set-up and the project's jobs. Usage:
#   ./run.sh demo [ARGS…]   set up .venv if needed, then run the demo on simulated analysers
#   ./run.sh test [ARGS…]   set up .venv if needed, then lint, type-check, check layers, run pytest
#   ./run.sh bench [ARGS…]  set up .venv if needed, then run the benchmarks
#   ./run.sh setup          only set up .venv
set -euo pipefail
cd "$(dirname "$0")"

find_python() {
    if command -v python3.13 >/dev/null 2>&1 && python3.13 -c 'import sys; assert sys.version_info[:2] == (3, 13)' 2>/dev/null; then
        command -v python3.13; return
    fi
    if command -v pyenv >/dev/null 2>&1; then
        local v
        v=$(pyenv versions --bare 2>/dev/null | grep -E '^3\.13(\.[0-9]+)?$' | sort -V | tail -n 1 || true)
        if [ -n "$v" ]; then echo "$(pyenv root)/versions/$v/bin/python"; return; fi
    fi
    for p in /usr/local/bin/python3.13 /usr/bin/python3.13 "$HOME/.pyenv/versions/3.13.0/bin/python"; do
        [ -x "$p" ] && { echo "$p"; return; }
    done
    echo "error: Python 3.13 not found (install it, e.g. 'pyenv install 3.13')" >&2
    exit 1
}

setup() {
    local stamp=.venv/.installed hash
    hash=$(sha256sum pyproject.toml | cut -d' ' -f1)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$hash" ] && [ -x .venv/bin/python ]; then return; fi
    if [ ! -x .venv/bin/python ]; then
        "$(find_python)" -m venv .venv
    fi
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e '.[test]'
    echo "$hash" > "$stamp"
}

cmd=${1:-test}; shift || true
case "$cmd" in
    setup) setup ;;
    demo) setup; exec .venv/bin/ophyd-servomex demo "$@" ;;
    bench) setup; exec .venv/bin/python -m benchmarks "$@" ;;
    test)
        setup
        .venv/bin/ruff check ophyd_servomex tests benchmarks example_plans
        .venv/bin/ruff format --check ophyd_servomex tests benchmarks example_plans
        .venv/bin/mypy
        .venv/bin/lint-imports
        exec .venv/bin/python -m pytest "$@"
        ;;
    *) echo "usage: $0 {demo|test|bench|setup} [ARGS…]" >&2; exit 2 ;;
esac
