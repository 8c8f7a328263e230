#!/usr/bin/env bash
# The test run: creates or refreshes .venv from requirements.lock (via run_full_pipeline.sh
# --setup-only; $ECG_VENV picks another venv), then runs the default (fast) test suite. Extra
# arguments go to pytest, e.g. --run-slow or -k loader.
set -euo pipefail
cd "$(dirname "$0")"
./run_full_pipeline.sh --setup-only
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
exec "${ECG_VENV:-.venv}/bin/python" -m pytest "$@"
