#!/usr/bin/env bash
# The test run: creates .venv when missing (via run_full_pipeline.sh --setup-only), then runs
# the default (fast) test suite. Extra arguments go to pytest, e.g. --run-slow or -k loader.
set -euo pipefail
cd "$(dirname "$0")"
./run_full_pipeline.sh --setup-only
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
exec .venv/bin/python -m pytest "$@"
