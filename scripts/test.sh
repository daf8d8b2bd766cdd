#!/usr/bin/env bash
# The one test entry point, used by developers and by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh --dev --voices
.venv/bin/ruff check agent tests scripts testbed
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
