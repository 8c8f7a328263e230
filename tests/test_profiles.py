"""Profiles by hardware: the profile choice through run_full_pipeline.sh, the plan with its
budgets, ``--budget-hours`` scaling, the timing ledger summed over resumed parts, and
``summary.json``. Fast: no training (the script runs with a fake venv whose python logs its
arguments; only ``python -m pipeline.core.hardware`` is passed to the real interpreter).

The CPU profile names rhythm tasks another change adds; where they are not registered yet the
tests use their plain twins (``cpu_config``), so they test this code, not that one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import profile as profile_cmd
from pipeline.core.config import ConfigError, load_config
from pipeline.core.io_utils import PipelineError
from pipeline.data.tasks import TASKS
from pipeline.training import profile_plan, profile_summary, profiles

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "run_full_pipeline.sh"
ALL_STAGES = list(profile_plan.ALL_STAGES)


def _known(entry: str) -> str:
    task, _, rest = entry.partition(":")
    task = task if task in TASKS else task.replace("_rhythm", "")
    return f"{task}:{rest}" if rest else task


def cpu_config(runs_dir: Path):
    """``load_config('cpu')`` with its runs folder in tmp (and rhythm tasks mapped to their
    plain twins where not registered)."""
    cfg = load_config("cpu", {"profile": {"runs_dir": str(runs_dir)}})
    p = cfg.profile
    return dataclasses.replace(cfg, profile=dataclasses.replace(
        p, train=tuple(map(_known, p.train)), tune=tuple(map(_known, p.tune)),
        classic=tuple(map(_known, p.classic)),
        train_overrides={_known(k): v for k, v in p.train_overrides.items()}))


# --------------------------------------------------------------- the shell's profile choice


def fake_venv(tmp_path: Path) -> Path:
    """A venv that is up to date (stamp = lock hash) whose python logs every call and does
    nothing, except the hardware probe, which runs for real (so ECG_FAKE_GPUS decides)."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    py = venv / "bin" / "python"
    py.write_text(
        "#!/bin/sh\n"
        'echo "$*" >> "$(dirname "$0")/calls.log"\n'
        f'if [ "$1 $2" = "-m pipeline.core.hardware" ]; then exec "{sys.executable}" "$@"; fi\n'
    )
    py.chmod(0o755)
    lock = hashlib.sha256((ROOT / "requirements.lock").read_bytes()).hexdigest()
    (venv / ".lock.sha256").write_text(lock + "\n")
    return venv


def run_script(venv: Path, *args: str, fake_gpus: str = "0") -> subprocess.CompletedProcess:
    env = {**os.environ, "ECG_VENV": str(venv), "PYTHON": "/bin/false",
           "ECG_FAKE_GPUS": fake_gpus, "PYTHONPATH": str(ROOT)}
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def calls(venv: Path) -> list[str]:
    return (venv / "bin" / "calls.log").read_text().splitlines()


@pytest.mark.parametrize("fake_gpus, want", [("1", "gpu"), ("0", "cpu")])
def test_without_a_profile_option_the_hardware_picks_the_profile(tmp_path, fake_gpus, want):
    venv = fake_venv(tmp_path)
    out = run_script(venv, "--stages", "download", fake_gpus=fake_gpus)
    assert out.returncode == 0, out.stderr
    assert f"profile: {want} (chosen by python -m pipeline.core.hardware" in out.stdout
    log = calls(venv)
    assert log[0] == "-m pipeline.core.hardware"
    assert any(c.startswith(f"-m pipeline.profile plan --config {want} --stages download --begin ")
               for c in log), log
    assert f"-m pipeline.download --config {want}" in log
    # the stage's wall seconds: 0 with a fake python, more on a loaded machine
    assert any(re.fullmatch(rf"-m pipeline.profile record --config {want} --stage download "
                            r"--seconds \d+", c) for c in log), log
    assert f"-m pipeline.profile summary --config {want}" in log


@pytest.mark.parametrize("args, want", [(["--profile", "gpu"], "gpu"), (["--quick"], "quick"),
                                        (["--profile", "quick"], "quick")])
def test_profile_option_and_quick_alias_skip_the_hardware_probe(tmp_path, args, want):
    venv = fake_venv(tmp_path)
    out = run_script(venv, *args, "--stages", "windows", fake_gpus="0")
    assert out.returncode == 0, out.stderr
    log = calls(venv)
    assert "-m pipeline.core.hardware" not in log
    assert f"-m pipeline.windows --config {want}" in log


def test_budget_hours_reaches_the_plan_and_the_model_stages(tmp_path):
    venv = fake_venv(tmp_path)
    out = run_script(venv, "--profile", "cpu", "--budget-hours", "1.5", "--stages", "train tune")
    assert out.returncode == 0, out.stderr
    log = calls(venv)
    assert any(c.startswith("-m pipeline.profile plan --config cpu --budget-hours 1.5") for c in log)
    assert "-m pipeline.profile train --config cpu --budget-hours 1.5" in log
    assert "-m pipeline.profile tune --config cpu --budget-hours 1.5" in log


@pytest.mark.parametrize("args, message", [
    (["--profile", "fast"], "unknown profile 'fast'; known: cpu gpu quick"),
    (["--profile"], "--profile needs a value"),
    (["--budget-hours", "two"], "--budget-hours needs a number of hours > 0, got 'two'"),
    (["--budget-hours", "0"], "--budget-hours needs a number of hours > 0, got '0'"),
    (["--budget-hours"], "--budget-hours needs a value"),
])
def test_bad_profile_or_budget_is_refused_before_setup(tmp_path, args, message):
    venv = tmp_path / "venv"
    out = run_script(venv, *args)
    assert out.returncode == 2 and out.stdout == ""
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {message}"), out.stderr
    assert not venv.exists()


def test_help_describes_the_profiles_and_their_budgets(tmp_path):
    out = run_script(tmp_path / "venv", "--help")
    assert out.returncode == 0
    for text in ("--profile NAME", "--budget-hours H", "cpu    the default without a GPU: under 3 h",
                 "unet1d\n         denoiser 30 min", "gpu    the default where TensorFlow sees a GPU",
                 "quick  a handful of records", "python -m pipeline.profile plan --config cpu"):
        assert text in out.stdout, text


# ------------------------------------------------------------------------- profiles load


@pytest.mark.parametrize("name", ["cpu", "gpu", "quick"])
def test_every_profile_loads_and_names_runs_dir_after_itself(name):
    cfg = load_config(name)
    assert cfg.profile.runs_dir == f"Research_Runs/pipeline_{name}"
    for stage in profiles.STAGES:
        profiles.stage_settings(cfg, stage)  # every stage override is a known, valid key


def test_cpu_profile_holds_the_chosen_recipes():
    cfg = load_config("cpu")
    p = cfg.profile
    assert p.budget_hours == 3.0 and cfg.noise.schedule == "mix"
    assert p.train_overrides["mitdb_denoise:unet1d"]["denoise_loss"] == "mse_mae"
    assert p.train_overrides["mitdb_denoise:unet1d"]["max_train_seconds"] == 30 * 60
    assert p.model_kwargs["conformer"] == {"filters": [16, 32], "d_model": 32, "n_blocks": 1,
                                           "dense_units": 32}
    kfold = profiles.stage_settings(cfg, "kfold")
    assert kfold == {"splits.n_folds": 4, "train.epochs": 10, "train.examples_per_epoch": 10240}
    assert profiles.stage_settings(cfg, "tune")["tune.max_trials"] == 8


def test_cpu_plan_fits_its_nominal_three_hours(tmp_path):
    plan = profile_plan.make_plan(cpu_config(tmp_path), "cpu", ALL_STAGES)
    assert plan["total_s"] <= 3 * 3600


# ------------------------------------------------------------------------------- the plan


def test_plan_lists_every_run_with_its_budget_and_end_time(tmp_path):
    cfg = cpu_config(tmp_path)
    now = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
    plan = profile_plan.make_plan(cfg, "cpu", ALL_STAGES, now=now)
    runs = [(s["stage"], s["run"]) for s in plan["steps"]]
    want = ([(s, "") for s in profile_plan.DATA_STAGES]
            + [("train", r) for r in cfg.profile.train] + [("tune", r) for r in cfg.profile.tune]
            + [("kfold", r) for r in cfg.profile.tune] + [("final_eval", r) for r in cfg.profile.train]
            + [("final_eval", f"{t}:classic") for t in cfg.profile.classic])
    assert runs == want
    unet = next(s for s in plan["steps"] if s["run"] == "mitdb_denoise:unet1d")
    assert unet["basis"] == "time budget" and unet["budget_s"] == 1800 + profile_plan.RUN_START_S
    ends = [s["end_offset_s"] for s in plan["steps"]]
    assert ends == sorted(ends) and ends[-1] == plan["total_s"]
    assert plan["estimated_end"] == (now + dt.timedelta(seconds=plan["total_s"])).isoformat()
    text = profile_plan.plan_text(plan)
    for step in plan["steps"]:
        assert any(step["stage"] in line and (step["run"] or "-") in line
                   and profile_plan.human_duration(step["budget_s"]) in line
                   for line in text.splitlines()), step


def test_plan_command_prints_the_plan_and_writes_plan_json(tmp_path, capsys):
    rc = profile_cmd.main(["plan", "--config", "quick", "--set", f"profile.runs_dir={tmp_path}",
                           "--stages", "train final_eval"])
    assert rc == 0
    out = capsys.readouterr().out
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert {s["stage"] for s in plan["steps"]} == {"train", "final_eval"}
    for entry in load_config("quick").profile.train:
        assert f"train       {entry}" in out
    assert "total about" in out and "estimated end" in out
    assert not (tmp_path / "timings.json").exists()  # no --begin: no timing part opened


def test_plan_of_an_unknown_stage_is_refused(tmp_path):
    with pytest.raises(PipelineError, match="unknown stage.*'deploy'.*valid stages: download"):
        profile_plan.plan_steps(load_config("quick"), ["train", "deploy"])


# ------------------------------------------------------------------------ --budget-hours


def test_budget_hours_1_5_halves_every_budget_of_a_3_hour_profile(tmp_path):
    cfg = cpu_config(tmp_path)
    factor = profiles.budget_factor(cfg, 1.5)
    assert factor == 0.5
    for entry in cfg.profile.train:
        task, model = entry.split(":")
        full = profiles.run_settings(cfg, "train", task, model)
        half = profiles.run_settings(cfg, "train", task, model, factor)
        assert half["train.max_train_seconds"] == full["train.max_train_seconds"] / 2
    task, model = cfg.profile.tune[0].split(":")
    for stage in ("tune", "kfold"):
        assert profiles.run_settings(cfg, stage, task, model, factor)["train.examples_per_epoch"] == 5120
    base = profile_plan.make_plan(cfg, "cpu", ["train", "tune", "kfold"])
    scaled = profile_plan.make_plan(cfg, "cpu", ["train", "tune", "kfold"], budget_hours=1.5)
    for b, s in zip(base["steps"], scaled["steps"]):
        start = profile_plan.RUN_START_S if b["basis"] == "time budget" else 0.0
        assert s["budget_s"] - start == pytest.approx((b["budget_s"] - start) / 2)


def test_budget_scaling_refuses_bad_hours_and_profiles_without_nominal_hours(tmp_path):
    with pytest.raises(PipelineError, match=r"--budget-hours must be a number of hours > 0. Received: -1"):
        profiles.budget_factor(cpu_config(tmp_path), -1.0)
    with pytest.raises(PipelineError, match="states no profile.budget_hours"):
        profiles.budget_factor(load_config("quick"), 1.0)


def test_budget_hours_on_the_command_line_of_a_profile_without_nominal_hours_exits_2(tmp_path, capsys):
    from pipeline.core.io_utils import run_cli

    rc = run_cli(profile_cmd.main, ["plan", "--config", "quick", "--set",
                                    f"profile.runs_dir={tmp_path}", "--budget-hours", "2"])
    assert rc == 2
    assert "error: --budget-hours 2: this profile states no profile.budget_hours" in capsys.readouterr().err


def test_bad_stage_overrides_are_named(tmp_path):
    cfg = load_config("quick", {"profile": {"stage_overrides": {"kfold": {"train": {"epoch": 3}}}}})
    with pytest.raises(ConfigError, match=r"profile.stage_overrides.kfold.train: unknown key\(s\) \['epoch'\]"):
        profiles.stage_settings(cfg, "kfold")
    cfg = load_config("quick", {"profile": {"stage_overrides": {"deploy": {}}}})
    with pytest.raises(PipelineError, match=r"profile.stage_overrides: unknown stage\(s\) \['deploy'\]"):
        profiles.stage_settings(cfg, "train")


# ------------------------------------------------------------------ budgets across resumes


def _state(run: Path, **state) -> None:
    run.mkdir(parents=True, exist_ok=True)
    (run / "train_state.json").write_text(json.dumps({"finished": False, "train_seconds": 0.0, **state}))


def test_a_resumed_run_gets_what_is_left_of_its_budget(tmp_path):
    assert profiles.remaining_train_seconds(tmp_path / "new", 1200.0) == 1200.0
    _state(tmp_path / "killed", train_seconds=1000.0)
    assert profiles.remaining_train_seconds(tmp_path / "killed", 1200.0) == 200.0
    _state(tmp_path / "over", train_seconds=1300.0)
    assert profiles.remaining_train_seconds(tmp_path / "over", 1200.0) == 1.0
    assert profiles.remaining_train_seconds(tmp_path / "killed", 0.0) == 0.0  # no limit


def test_a_run_stopped_at_its_budget_is_not_given_a_new_one(tmp_path):
    run = tmp_path / "spent"
    _state(run, train_seconds=1210.0)
    (run / "summary.json").write_text(json.dumps(
        {"stop_reason": "time budget of 1200 s reached (resumable)", "finished": False}))
    assert profiles.remaining_train_seconds(run, 1200.0) is None


def test_a_damaged_training_state_is_named(tmp_path):
    run = tmp_path / "bad"
    run.mkdir()
    (run / "train_state.json").write_text("{not json")
    with pytest.raises(PipelineError, match="train_state.json"):
        profiles.remaining_train_seconds(run, 60.0)


# ------------------------------------------------------------------ timings and summary.json


def _metrics(runs: Path) -> None:
    den = {"model": "unet1d", "results": {"unet1d": {
        n: {lvl: {"snr_imp_db": {"mean": base + float(lvl) / 10}} for lvl in ("24", "12", "6", "0")}
        for n, base in (("gaussian", 1.0), ("mix", 3.0))}, "bandpass": {}}}
    cls = {"macro_f1": 0.5, "accuracy": 0.9, "per_class": {"S": {"f1": 0.4}, "V": {"f1": 0.8}}}
    ptb = {"macro_auc": 0.8, "fmax": 0.7, "macro_f1": 0.6}
    for name, m in (("mitdb_denoise_unet1d", den), ("seg_liteecgnet_final", cls), ("ptbxl_cnn", ptb)):
        (runs / name).mkdir(parents=True)
        (runs / name / "metrics_test.json").write_text(json.dumps(m))


def test_summary_keys_and_total_summed_over_two_resumed_parts(tmp_path, capsys):
    runs = tmp_path / "runs"
    profile_summary.begin_part(runs, "cpu", started_at=1000.0)
    profile_summary.record_stage(runs, "cpu", "download", 5.0, now=1010.0)
    profile_summary.record_stage(runs, "cpu", "train", 30.0, now=1050.0)  # killed after this
    profile_summary.begin_part(runs, "cpu", started_at=2000.0)  # the resumed part
    profile_summary.record_stage(runs, "cpu", "train", 20.0, now=2030.0)
    _metrics(runs)
    assert profile_cmd.main(["summary", "--config", "cpu", "--set", f"profile.runs_dir={runs}"]) == 0
    summary = json.loads((runs / "summary.json").read_text())
    assert {"profile", "total_s", "stages", "results"} <= set(summary)
    assert summary["profile"] == "cpu" and summary["parts"] == 2
    assert summary["total_s"] == 50.0 + 30.0
    assert summary["stages"] == {"download": 5.0, "train": 50.0}
    res = summary["results"]
    assert res["mitdb_denoise_unet1d"]["snr_imp_db"] == {"24": 4.4, "12": 3.2, "6": 2.6, "0": 2.0}
    assert res["mitdb_denoise_unet1d"]["snr_imp_db_mix"]["0"] == 3.0
    assert res["seg_liteecgnet_final"] == {"kind": "classifier", "macro_f1": 0.5, "accuracy": 0.9,
                                           "f1_S": 0.4, "f1_V": 0.8}
    assert res["ptbxl_cnn"] == {"kind": "multilabel", "macro_auc": 0.8, "fmax": 0.7}
    out = capsys.readouterr().out
    assert "1 min 20 s" in out and "2 part(s)" in out
    assert "macro F1 0.500, accuracy 0.900, F1(S) 0.400, F1(V) 0.800" in out
    assert "SNR improvement (dB, mean over 2 noise types): 24 dB +4.40" in out


def test_a_stage_recorded_without_an_open_part_opens_one(tmp_path):
    ledger = profile_summary.record_stage(tmp_path, "quick", "tfrecords", 12.0, now=500.0)
    assert profile_summary.totals(ledger) == (12.0, {"tfrecords": 12.0})


def test_a_failed_stage_is_counted_and_listed(tmp_path):
    profile_summary.begin_part(tmp_path, "quick", started_at=0.0)
    profile_summary.record_stage(tmp_path, "quick", "windows", 3.0, failed=True, now=4.0)
    summary = profile_summary.write_summary(tmp_path, "quick")
    assert summary["failed_stages"] == ["windows"] and summary["total_s"] == 4.0


def test_recording_an_unknown_stage_or_negative_seconds_is_refused(tmp_path):
    with pytest.raises(PipelineError, match="unknown stage 'deploy'"):
        profile_summary.record_stage(tmp_path, "quick", "deploy", 1.0)
    with pytest.raises(PipelineError, match=r"stage train: seconds must be >= 0. Received: -2.0"):
        profile_summary.record_stage(tmp_path, "quick", "train", -2.0)


def test_a_damaged_timings_ledger_exits_2_naming_the_file(tmp_path, capsys):
    from pipeline.core.io_utils import run_cli

    (tmp_path / "timings.json").write_text('{"parts": 3}')
    rc = run_cli(profile_cmd.main, ["record", "--config", "quick", "--set",
                                    f"profile.runs_dir={tmp_path}", "--stage", "train",
                                    "--seconds", "4"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "timings.json: not a timings ledger" in err and err.startswith("error: ")


def test_compare_runs_does_not_list_the_profile_summary_as_a_run(tmp_path, capsys):
    from data_tools import compare_runs

    profile_summary.begin_part(tmp_path, "quick", started_at=0.0)
    profile_summary.write_summary(tmp_path, "quick")
    assert compare_runs.main([str(tmp_path)]) == 0
    assert "no runs found" in capsys.readouterr().out


def _aami_run(d, f1_s: float, f1_v: float, seconds: float | None = None):
    import json

    d.mkdir(parents=True)
    per = {c: {"sensitivity": 0.5, "ppv": 0.5, "f1": f} for c, f in
           (("N", 0.9), ("S", f1_s), ("V", f1_v), ("F", 0.1), ("Q", 0.0))}
    (d / "metrics_test.json").write_text(json.dumps(
        {"model": d.name, "accuracy": 0.9, "macro_f1": 0.3, "per_class": per}))
    if seconds is not None:
        (d / "summary.json").write_text(json.dumps(
            {"model": d.name, "params": 1234, "train_seconds": seconds, "best_epoch": 2}))


def test_compare_runs_aami_table_rows_and_baseline_verdicts(tmp_path, capsys):
    from data_tools import compare_runs

    _aami_run(tmp_path / "runs" / "deep", 0.6, 0.9, seconds=300.0)
    _aami_run(tmp_path / "runs" / "weak", 0.2, 0.5, seconds=60.0)
    _aami_run(tmp_path / "classic", 0.5, 0.9)
    assert compare_runs.main(["--aami", str(tmp_path / "runs"),
                              "--baseline", str(tmp_path / "classic")]) == 0
    lines = {ln.split(" | ")[0].strip("| "): ln for ln in capsys.readouterr().out.splitlines()}
    # macro F1 over N, S, V, F: (0.9 + 0.6 + 0.9 + 0.1) / 4 = 0.625 against 0.6 for the baseline
    assert "| 5.0 | 2 | 0.900 | 0.625 |" in lines["deep"] and "beats (+0.025)" in lines["deep"]
    assert "below (-0.175)" in lines["weak"]
    assert compare_runs.main(["--aami", str(tmp_path / "runs"),
                              "--baseline", str(tmp_path / "nothing")]) == 2
    assert "nothing: no AAMI test metrics" in capsys.readouterr().err


SHIPPED_CONFIGS = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "pipeline" / "configs").glob("*.yaml"))


@pytest.mark.parametrize("name", SHIPPED_CONFIGS)
def test_every_shipped_config_loads_and_names_registered_models(name):
    from models import registry
    from pipeline.core.config import load_config
    from pipeline.training.profiles import parse_pair

    cfg = load_config(name, apply_env=False)
    known = set(registry.names("classifier")) | set(registry.names("denoiser"))
    pairs = [parse_pair(p) for p in (*cfg.profile.train, *cfg.profile.tune)]
    assert {m for _, m in pairs} <= known
    assert {k.rpartition(":")[2] for k in cfg.profile.model_kwargs} <= known  # model or task:model
    assert all(parse_pair(k) for k in cfg.profile.train_overrides if ":" in k)


@pytest.mark.parametrize("name, kind", [("seedtable", "classifier"), ("denoise_seedtable", "denoiser")])
def test_seed_table_profiles_cover_every_registered_model(name, kind):
    from models import registry
    from pipeline.core.config import load_config

    cfg = load_config(name, apply_env=False)
    assert sorted(p.split(":", 1)[1] for p in cfg.profile.train) == sorted(registry.names(kind))
    budgets = {profiles.run_settings(cfg, "train", *p.split(":", 1), 1.0).get(
        "train.max_train_seconds", cfg.train.max_train_seconds) for p in cfg.profile.train}
    assert len(budgets) == 1, f"{name}: one budget for every model, got {budgets}"


def test_final_eval_stage_also_scores_each_run_on_the_profiles_external_records_once(
        tmp_path, monkeypatch):
    from pipeline.core.config import load_config

    calls = []
    monkeypatch.setattr(profiles, "_run", lambda cmd, what: calls.append(cmd))
    cfg = load_config("denoise_seedtable", {"profile": {"runs_dir": str(tmp_path / "runs"),
                                                        "train": ["mitdb_denoise:cnn"]},
                                            "data": {"data_dir": str(tmp_path / "data")}},
                      apply_env=False)
    assert cfg.profile.external == {"mitdb_denoise": "raw/ptbxl/records100/00000"}
    run = tmp_path / "runs" / "mitdb_denoise_cnn"
    run.mkdir(parents=True)
    (run / "summary.json").write_text("{}")
    (run / "metrics_test.json").write_text("{}")  # already read on the test split: not again
    with pytest.raises(PipelineError, match=r"profile.external\[mitdb_denoise\]: .*00000 is not "
                                            "a folder of WFDB records"):
        profiles.run_stage(cfg, "final_eval", [], all_models=False, force=False)
    folder = tmp_path / "data" / "raw" / "ptbxl" / "records100" / "00000"
    folder.mkdir(parents=True)
    profiles.run_stage(cfg, "final_eval", [], all_models=False, force=False)
    external = [c for c in calls if "--external" in c]
    assert len(external) == 1 and external[0][external[0].index("--external") + 1] == str(folder)
    assert external[0][external[0].index("--run") + 1] == str(run)
    assert ["--lead", "II"] == external[0][external[0].index("--lead"):][:2]
    assert "--max-test-windows" in external[0]
    classic = [c for c in calls if "--classic" in c]  # the filters on the denoisers' windows
    assert len(classic) == 1 and classic[0][classic[0].index("--max-test-windows") + 1] == "300"
    (run / "external_00000").mkdir()
    (run / "external_00000" / "metrics_test.json").write_text("{}")
    calls.clear()
    profiles.run_stage(cfg, "final_eval", [], all_models=False, force=False)
    assert not [c for c in calls if "--external" in c]  # scored once


@pytest.mark.parametrize("name", SHIPPED_CONFIGS)
def test_every_profile_run_gets_kwargs_its_builder_accepts(name):
    """Each run's kwargs bind to its own builder: the denoiser and the PTB-XL classifier
    both called ``cnn`` take different arguments (a ``task:model`` key tells them apart)."""
    import inspect

    from models import registry
    from pipeline.core.config import load_config
    from pipeline.data.tasks import get_task
    from pipeline.training.profiles import parse_pair

    cfg = load_config(name, apply_env=False)
    for task, model in {parse_pair(p) for p in (*cfg.profile.train, *cfg.profile.tune)}:
        kind = "denoiser" if get_task(task).denoising else "classifier"
        kw = profiles.run_settings(cfg, "train", task, model).get("train.model_kwargs", {})
        inspect.signature(registry.get(kind, model).build).bind_partial(None, **kw)


def test_a_task_model_kwargs_key_replaces_the_model_names_entry_for_that_task():
    from pipeline.core.config import load_config

    cfg = load_config("denoise_seedtable", apply_env=False)
    assert profiles.run_settings(cfg, "train", "mitdb_denoise", "cnn")["train.model_kwargs"] == {
        "filters": [64, 32, 32], "output_mode": "residual"}
    assert profiles.run_settings(cfg, "train", "ptbxl_superdiagnostic", "cnn")[
        "train.model_kwargs"] == {"filters": [16, 32, 64], "dense_units": 32}
