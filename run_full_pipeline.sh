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
run stops at the first failure, naming the stage. Starts with the plan (each stage and run with
its budget and estimated end time); ends with a table of what each stage took (summed over
resumed parts) and the headline test result of each model.

Stages (inputs -> outputs, under the data folder):
  setup       requirements.lock -> .venv (exact versions; created when missing, refreshed when
              the lock changes; regenerate the lock with data_tools/lock.sh). Always runs
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

Profiles (pipeline/configs/<name>.yaml; each training run has its own time budget, so the
total is bounded whatever the machine's speed; the plan is printed at start and written to
<runs_dir>/plan.json, the stage times and each model's headline test result at the end, to
<runs_dir>/summary.json, summed over interrupted and resumed parts):
  cpu    the default without a GPU: under 3 h on 2 cores (profile.budget_hours: 3). unet1d
         denoiser 30 min (mixed levels, MSE + 0.3 MAE), liteecgnet with rhythm features
         20 min, narrow conformer on rhythm sequences 20 min, narrow PTB-XL cnn 5 min; tuning
         8 trials x 4 epochs x 10,240 segments; k-fold 4 folds x 10 epochs x 10,240; final
         evaluation of every model plus the classic baseline
  gpu    the default where TensorFlow sees a GPU: the same models at the builders' widths,
         full passes, more epochs and trials (profile.budget_hours: 8): unet1d 2 h,
         liteecgnet 40 min, conformer 1 h, cnn 30 min; tuning 20 trials x 10 epochs; 5 folds
  quick  a handful of records, one or two epochs, the smallest models: minutes
  See every run's budget: python -m pipeline.profile plan --config cpu [--budget-hours H]

Options:
  --profile NAME      cpu, gpu or quick (default: chosen by python -m pipeline.core.hardware,
                      after set-up: gpu when TensorFlow sees a GPU, else cpu)
  --quick             the same as --profile quick
  --budget-hours H    scale every training budget of the profile (each run's time budget,
                      the tune and k-fold examples per epoch) by H / its nominal hours
  --config FILE       another config file or name in pipeline/configs (e.g. full)
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

VALID_STAGES=(download windows scalograms tfrecords train tune kfold final_eval)
PROFILES=(cpu gpu quick)
START_S="$(date +%s)"
CONFIG=""
BUDGET=()
STAGES="${VALID_STAGES[*]}"
ALL_MODELS=()
FORCE=()
COMMON=()
SETUP_ONLY=0

die() { echo "error: $*" >&2; exit 2; }
# need_value OPTION N_ARGS_LEFT VALUE: the option's value must be there and must not be an option.
need_value() {
  if [[ $2 -lt 2 || "$3" == --* ]]; then die "$1 needs a value (see --help)"; fi
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) CONFIG="quick"; shift ;;
    --profile) need_value "$1" $# "${2-}"
      [[ " ${PROFILES[*]} " == *" $2 "* ]] || die "unknown profile '$2'; known: ${PROFILES[*]}"
      CONFIG="$2"; shift 2 ;;
    --budget-hours) need_value "$1" $# "${2-}"
      [[ "$2" =~ ^[0-9]*[.]?[0-9]+$ && "$2" =~ [1-9] ]] ||
        die "--budget-hours needs a number of hours > 0, got '$2'"
      BUDGET=(--budget-hours "$2"); shift 2 ;;
    --config) need_value "$1" $# "${2-}"; CONFIG="$2"; shift 2 ;;
    --mirror) need_value "$1" $# "${2-}"; COMMON+=(--mirror "$2"); shift 2 ;;
    --data-dir) need_value "$1" $# "${2-}"; COMMON+=(--data-dir "$2"); shift 2 ;;
    --set) need_value "$1" $# "${2-}"; COMMON+=(--set "$2"); shift 2 ;;
    --stages) need_value "$1" $# "${2-}"; STAGES="$2"; shift 2 ;;
    --force) FORCE=(--force); shift ;;
    --all-models) ALL_MODELS=(--all-models); shift ;;
    --setup-only) SETUP_ONLY=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done

# Every stage name is checked before anything runs (set-up included).
read -ra STAGE_LIST <<< "$STAGES"
[[ ${#STAGE_LIST[@]} -gt 0 ]] || die "--stages is empty; valid stages: ${VALID_STAGES[*]}"
for stage in "${STAGE_LIST[@]}"; do
  [[ " ${VALID_STAGES[*]} " == *" $stage "* ]] ||
    die "unknown stage '$stage' in --stages; valid stages: ${VALID_STAGES[*]} (setup always runs)"
done

LOCK="$ROOT/requirements.lock"

# Prints the installed distributions that requirements.lock does not list (pip, setuptools, wheel
# and editable installs such as the project itself excepted), so that a refreshed venv matches it.
not_in_lock() {
  "$PY" - "$LOCK" <<'PYCODE'
import json, re, sys
from importlib.metadata import distributions

def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()

keep = {"pip", "setuptools", "wheel"}
for line in open(sys.argv[1], encoding="utf-8"):
    line = line.split("#", 1)[0].strip()
    if line:
        keep.add(norm(re.split(r"[\s=<>!~;\[@]", line, maxsplit=1)[0]))
for dist in distributions():
    name = dist.metadata["Name"]
    if not name or norm(name) in keep or not str(dist.locate_file("")).startswith(sys.prefix):
        continue
    if not json.loads(dist.read_text("direct_url.json") or "{}").get("dir_info", {}).get("editable"):
        print(name)
PYCODE
}

# The venv is up to date when its stamp holds the sha256 of requirements.lock. Otherwise it is
# created (when missing) or refreshed in place: the lock is installed and anything it does not
# list is removed, so a changed lock gives the same packages as a fresh venv. Every step ends in
# `|| return 1`: run_stage calls this inside `if`, where bash ignores `set -e`, and a failed
# install must not be stamped as up to date.
setup_venv() {
  local stamp="$VENV/.lock.sha256"
  local want extra
  [[ -f "$LOCK" ]] || { echo "error: $LOCK is missing (regenerate it: data_tools/lock.sh)" >&2; return 1; }
  want="$(sha256sum "$LOCK" | cut -d' ' -f1)"
  if [[ -x "$PY" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "setup: $VENV is up to date (requirements.lock sha256 ${want:0:12})"
    return 0
  fi
  if [[ ! -x "$PY" ]]; then
    local base="${PYTHON:-python3.11}"
    command -v "$base" >/dev/null 2>&1 || base=python3
    echo "setup: creating $VENV with $base"
    "$base" -m venv "$VENV" || return 1
  fi
  echo "setup: installing requirements.lock into $VENV"
  "$PY" -m pip install --quiet --upgrade pip || return 1
  "$PY" -m pip install --quiet -r "$LOCK" || return 1
  extra="$(not_in_lock)" || return 1
  if [[ -n "$extra" ]]; then
    echo "setup: removing packages not in the lock: ${extra//$'\n'/ }"
    # shellcheck disable=SC2086  # one name a word
    "$PY" -m pip uninstall --quiet --yes $extra || return 1
  fi
  "$PY" -m pip check || return 1
  rm -f "$VENV/.requirements.sha256"
  echo "$want" > "$stamp"
}

# record STAGE SECONDS [--failed]: adds the stage's wall time to <runs_dir>/timings.json (a
# failure to record is reported, never fatal: the timings are a report, not a result).
record() {
  [[ -n "$CONFIG" ]] || return 0
  "$PY" -m pipeline.profile record --config "$CONFIG" "${COMMON[@]}" --stage "$1" \
    --seconds "$2" "${@:3}" || echo "warning: could not record the time of stage '$1'" >&2
}

SETUP_S=0
run_stage() {
  local name="$1"; shift
  local t0=$SECONDS
  echo "=== stage: $name"
  if ! "$@"; then
    [[ "$name" == setup ]] || record "$name" "$((SECONDS - t0))" --failed
    echo "error: stage '$name' failed (command: $*)" >&2
    exit 1
  fi
  if [[ "$name" == setup ]]; then SETUP_S=$((SECONDS - t0)); else record "$name" "$((SECONDS - t0))"; fi
}

run_stage setup setup_venv
[[ $SETUP_ONLY -eq 1 ]] && exit 0

export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
if [[ -z "$CONFIG" ]]; then
  CONFIG="$("$PY" -m pipeline.core.hardware)" && [[ -n "$CONFIG" ]] ||
    die "could not tell cpu from gpu (python -m pipeline.core.hardware); pass --profile"
  echo "profile: $CONFIG (chosen by python -m pipeline.core.hardware; --profile overrides)"
fi
echo "=== plan"
"$PY" -m pipeline.profile plan --config "$CONFIG" "${COMMON[@]}" "${BUDGET[@]}" \
  --stages "${STAGE_LIST[*]}" --begin "$START_S" || die "the plan of profile '$CONFIG' failed (see above)"
record setup "$SETUP_S"
for stage in "${STAGE_LIST[@]}"; do
  case "$stage" in
    download|windows|scalograms|tfrecords)
      run_stage "$stage" "$PY" -m "pipeline.$stage" --config "$CONFIG" "${COMMON[@]}" "${FORCE[@]}" ;;
    train|tune|kfold|final_eval)
      run_stage "$stage" "$PY" -m pipeline.profile "$stage" --config "$CONFIG" "${COMMON[@]}" \
        "${BUDGET[@]}" "${FORCE[@]}" "${ALL_MODELS[@]}" ;;
  esac
done

echo
echo "=== summary (config: $CONFIG)"
"$PY" -m pipeline.profile summary --config "$CONFIG" "${COMMON[@]}" ||
  echo "warning: the summary could not be written" >&2
echo
"$PY" -m data_tools.compare_runs --config "$CONFIG" "${COMMON[@]}" || true
