#!/usr/bin/env bash
# The test run: creates or refreshes .venv from requirements.lock (via run_full_pipeline.sh
# --setup-only; $ECG_VENV picks another venv), then runs the default (fast) test suite on
# $ECG_TEST_WORKERS pytest-xdist workers (default 2; each test file stays on one worker, so its
# module fixtures are built once; 0 runs in this process). Extra arguments go to pytest, e.g.
# --run-slow, -k loader, or -n 0 for one process.
set -euo pipefail
cd "$(dirname "$0")"
./run_full_pipeline.sh --setup-only
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
exec "${ECG_VENV:-.venv}/bin/python" -m pytest -n "${ECG_TEST_WORKERS:-2}" --dist loadfile "$@"
