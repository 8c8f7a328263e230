#!/usr/bin/env bash
# Runs the ECG pipeline end to end: set-up, download, windows, scalograms, TFRecords, training,
# tuning, k-fold evaluation and the final held-out evaluation.
# Each stage is skipped when its outputs are up to date (pass --force to redo them).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"
VENV="${ECG_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"

usage() {
  cat <<'USAGE'
Usage: ./run_full_pipeline.sh [options]

Runs every stage in order; each is skipped when already done unless --force is given, and the
run stops at the first failure, naming the stage. Ends with a table of what each stage took.

Stages (inputs -> outputs, under the data folder):
  setup       requirements.txt -> .venv (created when missing or when requirements change)
  download    PhysioNet (or --mirror) -> raw/{mitdb,nstdb,ptbxl}, every file SHA-256 verified
  windows     raw records -> windows/mitdb/<rec>.npz (beats, 2 s segments, denoising windows,
              AAMI labels, RR features) and windows/ptbxl/foldNN.npz; manifest.json
  scalograms  beats -> scalograms/mitdb/<rec>.npz (Morlet CWT, unnormalized)
  tfrecords   windows + scalograms -> tfrecords/{segments,beats,denoise,ptbxl}/ (batched,
              self-describing, one file per record) with a manifest per kind
  train       TFRecords -> <runs_dir>/<task>_<model>/ for each profile.train entry: model
              checkpoints (git-ignored), history, normalization stats, splits, plots;
              validation on held-out training patients; resumes when interrupted
  tune        Keras Tuner search for each profile.tune entry -> <runs_dir>/tuning/<task>_<model>/
              best_hparams.json (validation patients only; resumable)
  kfold       patient-grouped k-fold over the training records with the tuned settings ->
              <runs_dir>/<task>_<model>_kfold/ (per-fold table, mean +- sd, plot)
  final_eval  the only reader of the test split: tuned entries are retrained on all training
              records (<task>_<model>_final/), the others' best checkpoints are evaluated;
              metrics_test.json, report.md, bootstrap 95 % intervals, plots

Options:
  --quick             quick profile (pipeline/configs/quick.yaml): a handful of records
  --config FILE       config file or name in pipeline/configs (default: full)
  --mirror DIR_OR_URL PhysioNet mirror laid out like shared/data (or set ECG_MIRROR)
  --data-dir DIR      data folder (default from the config; or set ECG_DATA_DIR)
  --set SECTION.KEY=VALUE
                      override one config value (repeatable), e.g. --set train.epochs=3
                      (with the shared mirror: --set data.ptbxl_max_records=500)
  --stages "A B ..."  run only these stages (default: all, in the order above)
  --all-models        train and evaluate every registered model, not just the profile's
  --force             redo stages even when their outputs are up to date
  --setup-only        create/refresh the virtual environment and exit
  -h, --help          this help
USAGE
}

CONFIG="full"
STAGES="download windows scalograms tfrecords train tune kfold final_eval"
ALL_MODELS=()
FORCE=()
COMMON=()
SETUP_ONLY=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) CONFIG="quick"; shift ;;
    --config) CONFIG="$2"; shift 2 ;;
    --mirror) COMMON+=(--mirror "$2"); shift 2 ;;
    --data-dir) COMMON+=(--data-dir "$2"); shift 2 ;;
    --set) COMMON+=(--set "$2"); shift 2 ;;
    --stages) STAGES="$2"; shift 2 ;;
    --force) FORCE=(--force); shift ;;
    --all-models) ALL_MODELS=(--all-models); shift ;;
    --setup-only) SETUP_ONLY=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

setup_venv() {
  local stamp="$VENV/.requirements.sha256"
  local want
  want="$(sha256sum requirements.txt | cut -d' ' -f1)"
  if [[ -x "$PY" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "setup: $VENV is up to date"
    return 0
  fi
  local base="${PYTHON:-python3.11}"
  command -v "$base" >/dev/null 2>&1 || base=python3
  echo "setup: creating $VENV with $base (requirements.txt)"
  "$base" -m venv "$VENV"
  "$PY" -m pip install --quiet --upgrade pip
  "$PY" -m pip install --quiet -r requirements.txt
  echo "$want" > "$stamp"
}

declare -a SUMMARY=()
run_stage() {
  local name="$1"; shift
  local t0=$SECONDS
  echo "=== stage: $name"
  if ! "$@"; then
    echo "error: stage '$name' failed (command: $*)" >&2
    exit 1
  fi
  SUMMARY+=("$(printf '%-12s %6ss' "$name" "$((SECONDS - t0))")")
}

run_stage setup setup_venv
[[ $SETUP_ONLY -eq 1 ]] && exit 0

export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
for stage in $STAGES; do
  case "$stage" in
    download|windows|scalograms|tfrecords)
      run_stage "$stage" "$PY" -m "pipeline.$stage" --config "$CONFIG" "${COMMON[@]}" "${FORCE[@]}" ;;
    train|tune|kfold|final_eval)
      run_stage "$stage" "$PY" -m pipeline.profile "$stage" --config "$CONFIG" "${COMMON[@]}" \
        "${FORCE[@]}" "${ALL_MODELS[@]}" ;;
    *) echo "error: unknown stage '$stage'" >&2; exit 2 ;;
  esac
done

echo
echo "=== summary (config: $CONFIG)"
printf '%s\n' "${SUMMARY[@]}"
"$PY" -m data_tools.compare_runs --config "$CONFIG" "${COMMON[@]}" || true
