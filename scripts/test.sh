#!/usr/bin/env bash
# The README's test command: install into .venv (pinned lock) and run the whole test suite.
# Tests that need PostgreSQL or MariaDB skip with a reason when the server is absent, except under CI=true.
# The suite runs under a hard kill timeout: a test stuck on a human-approval task can ignore SIGTERM.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec timeout -s KILL "${LETHE_TEST_TIMEOUT:-4800}" .venv/bin/python -m pytest "$@"
