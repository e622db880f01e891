#!/usr/bin/env bash
# The project's two entry points on a fresh machine (see README.md):
#   ./dev.sh demo          install into .venv and run the user guide's map_job on this machine
#   ./dev.sh test [ARGS]   install what the tests need and run the whole suite (ARGS go to pytest)
set -euo pipefail
cd "$(dirname "$0")"

VENV=${DATO_DIST_VENV:-.venv}
PYTHON=${PYTHON:-python3}

say() { printf '==> %s\n' "$*" >&2; }

ensure_venv() {  # ensure_venv EXTRAS
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating the virtualenv $VENV"
    "$PYTHON" -m venv "$VENV"
  fi
  say "installing dato-dist${1:+[$1]} into $VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip setuptools wheel
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".${1:+[$1]}"
}

cmd=${1:-}
shift || true
case "$cmd" in
  demo)
    ensure_venv ""
    exec "$VENV/bin/dato-dist" demo "$@"
    ;;
  test)
    ensure_venv "test,yarn,ec2"
    say "installing system packages the tests use (openssh-server, as root)"
    "$VENV/bin/python" -c 'from tests.infra.sshd import ensure_openssh_server as e; print(e())'
    say "lint: ruff check (pyflakes, import order, bugbear; pyproject.toml)"
    "$VENV/bin/ruff" check .
    say "running the test suite"
    exec "$VENV/bin/python" -m pytest -ra "$@"
    ;;
  *)
    echo "usage: ./dev.sh demo | test [pytest args]" >&2
    exit 2
    ;;
esac
