"""Training objectives and the tune -> k-fold -> final protocol: the SNR-in-dB denoising loss,
the cosine learning-rate schedule, the tuning objective, and the final retrain's epoch count
taken from the k-fold run (synthetic records through the real stages, see _trained_runs.py).
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import _trained_runs as TR  # noqa: E402

from pipeline import train as train_cmd  # noqa: E402
from pipeline.core.config import load_config  # noqa: E402
from pipeline.core.io_utils import PipelineError  # noqa: E402
from pipeline.data.tasks import get_task  # noqa: E402


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return TR.data_root(tmp_path_factory)


def _argv(root: Path, *sets: str) -> list[str]:
    out = ["--data-dir", str(root)]
    for s in (*TR.SETS, *sets):
        out += ["--set", s]
    return out


# ------------------------------------------------------------------- SNR-in-dB loss


def test_snr_loss_is_minus_the_output_snr_of_the_metrics_code():
    from pipeline.evaluation.denoise_metrics import window_metrics
    from pipeline.training.losses import SNRLoss

    rng = np.random.default_rng(0)
    clean = rng.normal(size=(6, 360, 1)).astype("float32")
    noisy = clean + rng.normal(scale=0.3, size=clean.shape).astype("float32")
    den = clean + rng.normal(scale=[[[0.01]], [[0.05]], [[0.1]], [[0.2]], [[0.5]], [[1.0]]],
                             size=clean.shape).astype("float32")
    snr_out = window_metrics(clean, noisy, den)["snr_out_db"]
    uncapped = np.asarray(SNRLoss(max_snr_db=200.0, reduction=None)(clean, den))
    np.testing.assert_allclose(uncapped, -snr_out, rtol=1e-4, atol=1e-3)
    # The mean is what training minimizes: minus the mean output SNR ...
    assert float(SNRLoss(max_snr_db=200.0)(clean, den)) == pytest.approx(-np.mean(snr_out), rel=1e-4)
    # ... with the default cap of 40 dB acting like 10^-4 of the clean power added to the error.
    capped = np.asarray(SNRLoss(reduction=None)(clean, den))
    np.testing.assert_allclose(capped, 10 * np.log10(10 ** (-snr_out / 10) + 1e-4), rtol=1e-4, atol=1e-3)


def test_snr_loss_is_capped_so_a_perfect_window_stays_finite():
    from pipeline.training.losses import SNRLoss

    x = np.ones((2, 100, 2), "float32")
    assert float(SNRLoss(max_snr_db=40.0)(x, x)) == pytest.approx(-40.0, abs=1e-3)
    assert float(SNRLoss(max_snr_db=30.0)(x, x)) == pytest.approx(-30.0, abs=1e-3)
    with pytest.raises(ValueError, match="max_snr_db"):
        SNRLoss(max_snr_db=0)


def test_unknown_denoise_loss_is_refused():
    from pipeline.training.trainer import make_loss

    cfg = load_config(None, {"train": {"denoise_loss": "l1"}}, apply_env=False)
    with pytest.raises(PipelineError, match="denoise_loss 'l1'.*mse_mae, snr_db"):
        make_loss(get_task("mitdb_denoise"), cfg)


# ------------------------------------------------------------- cosine schedule


def test_cosine_learning_rate_runs_from_the_start_value_to_the_minimum():
    from pipeline.training.trainer import cosine_learning_rate

    t = load_config(None, {"train": {"epochs": 5, "learning_rate": 1e-3,
                                     "min_learning_rate": 1e-5}}, apply_env=False).train
    lrs = [cosine_learning_rate(t, e) for e in range(5)]
    assert lrs[0] == pytest.approx(1e-3) and lrs[-1] == pytest.approx(1e-5)
    assert lrs[2] == pytest.approx(1e-5 + (1e-3 - 1e-5) / 2)
    assert all(a > b for a, b in zip(lrs, lrs[1:], strict=False))
    one = dataclasses.replace(t, epochs=1)
    assert cosine_learning_rate(one, 0) == pytest.approx(1e-3)


def test_denoiser_trains_with_the_snr_loss_and_a_cosine_schedule(root, tmp_path):

    run = tmp_path / "run"
    assert train_cmd.main([*_argv(root, "train.epochs=3", "train.denoise_loss=snr_db",
                              "train.lr_schedule=cosine", "train.min_learning_rate=1e-5",
                              "noise.schedule=mix"),
                       "--task", "mitdb_denoise", "--model", "cnn_dae",
                       "--model-kwargs", json.dumps({"filters": [8, 8]}),
                       "--run-dir", str(run)]) == 0
    hist = json.loads((run / "history.json").read_text())
    assert [h["learning_rate"] for h in hist] == pytest.approx([1e-3, (1e-3 + 1e-5) / 2, 1e-5])
    # Losses are minus output SNRs in dB: negative numbers of a few dB to tens of dB.
    for h in hist:
        assert -60 < h["loss"] < 20 and -60 < h["val_loss"] < 20
        assert h["val_loss"] == pytest.approx(h["val_loss_12dB"])  # the one validation level
    saved = (run / "config.yaml").read_text()
    assert "denoise_loss: snr_db" in saved and "lr_schedule: cosine" in saved


def test_unknown_lr_schedule_is_refused(root, tmp_path):

    with pytest.raises(PipelineError, match="lr_schedule 'step'.*plateau, cosine"):
        train_cmd.main([*_argv(root, "train.lr_schedule=step"), "--task", "mitdb_denoise",
                    "--model", "cnn_dae", "--model-kwargs", json.dumps({"filters": [8, 8]}),
                    "--run-dir", str(tmp_path / "run")])


# ------------------------------------------------------------- tuning objective


@pytest.mark.parametrize(
    "task, objective, expected",
    [
        ("mitdb_aami5_segments", "auto", ("val_macro_f1", "max")),
        ("mitdb_aami4_segments", "auto", ("val_macro_f1", "max")),
        # auto follows train.selection_metric (issue 14.3): the objective that matters.
        ("mitdb_denoise", "auto", ("val_snr_improvement_db", "max")),
        ("ptbxl_superdiagnostic", "auto", ("val_macro_auc", "max")),
        ("ptbxl_superdiagnostic", "val_loss", ("val_loss", "min")),
        ("mitdb_aami5_segments", "val_loss", ("val_loss", "min")),
    ],
)
def test_tuning_objective_by_task(task, objective, expected):
    from pipeline.training.tuning import resolve_objective

    cfg = load_config(None, {"tune": {"objective": objective}}, apply_env=False)
    assert resolve_objective(cfg, get_task(task)) == expected


@pytest.mark.parametrize("task, objective, match", [
    ("ptbxl_superdiagnostic", "val_macro_f1", "single-label"),
    ("mitdb_aami5_segments", "accuracy", "unknown tune.objective"),
])
def test_impossible_tuning_objective_is_refused(task, objective, match):
    from pipeline.training.tuning import resolve_objective

    cfg = load_config(None, {"tune": {"objective": objective}}, apply_env=False)
    with pytest.raises(PipelineError, match=match):
        resolve_objective(cfg, get_task(task))


def test_macro_f1_objective_metric_is_the_sklearn_macro_f1_on_arg_max():
    from sklearn.metrics import f1_score

    from pipeline.training.tuning import objective_metrics

    cfg = load_config(None, {}, apply_env=False)
    (metric,) = objective_metrics(cfg, get_task("mitdb_aami5_segments"))
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 200)
    probs = rng.dirichlet(np.ones(5), 200).astype("float32")
    probs[np.arange(150), y[:150]] += 1.0  # mostly right
    metric.update_state(np.eye(5, dtype="float32")[y], probs)
    assert float(metric.result()) == pytest.approx(
        f1_score(y, probs.argmax(1), average="macro", labels=range(5)), abs=1e-5)


# ------------------------------------------------ final retrain epochs from k-fold


def test_best_epoch_median_rounds_half_up_and_ignores_missing():
    from pipeline.protocol.kfold import best_epoch_median

    assert best_epoch_median([{"best_epoch": 3}, {"best_epoch": 8}, {"best_epoch": 5}]) == 5
    assert best_epoch_median([{"best_epoch": 3}, {"best_epoch": 6}]) == 5  # 4.5 -> 5
    assert best_epoch_median([{"best_epoch": 0}, {}]) is None


def _kfold_dir(runs: Path, name: str, task: str, model: str, hparams: str | None, med: int) -> Path:
    d = runs / name
    d.mkdir(parents=True)
    (d / "kfold.json").write_text(json.dumps({"task": task, "model": model, "hparams": hparams,
                                              "folds": [], "best_epoch_median": med}))
    return d


def test_final_epochs_come_from_the_newest_matching_kfold_run(tmp_path):
    from pipeline.protocol.final import final_epochs, find_kfold_run

    task = get_task("mitdb_aami5_segments")
    hp = tmp_path / "best_hparams.json"
    hp.write_text("{}")
    runs = tmp_path / "runs"
    _kfold_dir(runs, "2026-01-01_mitdb_aami5_segments_ldcnn_kfold", task.name, "ldcnn", str(hp), 4)
    newest = _kfold_dir(runs, "2026-02-01_mitdb_aami5_segments_ldcnn_kfold", task.name, "ldcnn",
                        str(hp), 6)
    _kfold_dir(runs, "2026-03-01_mitdb_aami5_segments_ldcnn_kfold", task.name, "ldcnn", None, 9)
    _kfold_dir(runs, "2026-04-01_mitdb_aami5_segments_ldcnn_kfold_x", task.name, "liteecgnet",
               str(hp), 2)
    assert find_kfold_run(task, "ldcnn", hp, runs) == newest  # same hparams, newest first
    assert find_kfold_run(task, "ldcnn", None, runs).name.startswith("2026-03-01")
    assert find_kfold_run(task, "resnet1d", hp, runs) is None

    cfg = load_config(None, {"train": {"epochs": 30}}, apply_env=False)
    assert final_epochs(cfg, task, "ldcnn", hp, newest)[0] == 6
    n, why = final_epochs(cfg, task, "resnet1d", hp, None)
    assert n == 30 and "no k-fold run" in why
    fixed = load_config(None, {"train": {"epochs": 30}, "eval": {"final_epochs": "config"}},
                        apply_env=False)
    assert final_epochs(fixed, task, "ldcnn", hp, newest)[0] == 30
    bad = _kfold_dir(runs, "old_kfold", task.name, "ldcnn", str(hp), 0)
    with pytest.raises(PipelineError, match="best_epoch_median"):
        final_epochs(cfg, task, "ldcnn", hp, bad)
    odd = load_config(None, {"eval": {"final_epochs": "best"}}, apply_env=False)
    with pytest.raises(PipelineError, match="unknown eval.final_epochs 'best'; known: kfold, config"):
        final_epochs(odd, task, "ldcnn", hp, newest)


def test_final_retrain_uses_the_kfold_epochs_and_ends_at_the_minimum_learning_rate(root, tmp_path):
    from pipeline import final_eval as final_eval_cmd

    kdir = _kfold_dir(tmp_path, "k_kfold", "mitdb_aami5_segments", "ldcnn", None, 3)
    out = tmp_path / "final"
    assert final_eval_cmd.main([*_argv(root, "train.min_learning_rate=1e-5", "eval.bootstrap_samples=20"),
                            "--task", "mitdb_aami5_segments", "--model", "ldcnn",
                            "--set", "train.model_kwargs={filters: 8, dilations: [1, 2]}",
                            "--kfold", str(kdir), "--out", str(out)]) == 0
    hist = json.loads((out / "history.json").read_text())
    assert len(hist) == 3  # the k-fold median, not train.epochs (1)
    assert hist[-1]["learning_rate"] == pytest.approx(1e-5)
    m = json.loads((out / "metrics_test.json").read_text())
    assert "median best epoch of the k-fold run k_kfold = 3" in m["mode"]
    assert "cosine" in m["mode"] and math.isfinite(m["accuracy"])


# ------------------------------------------------- an epoch covers every record


def test_an_epoch_subset_is_drawn_from_every_training_record(root):
    """``examples_per_epoch`` below the training size: a fresh random subset of *all* records
    each epoch, not the first examples of the stream (a few records)."""
    from pipeline.data import noise as NZ
    from pipeline.data.loader import create_dataset
    from pipeline.data.tfrecord_writer import tfrecord_dir
    from pipeline.training.trainer import epoch_masks, stored_counts

    cfg = load_config(None, {"data": {"data_dir": str(root)}, "loader": {"cycle_length": 1, "shuffle_buffer": 16},
                             "noise": {"mix_snr_db": [12.0]}}, apply_env=False)
    files = sorted(str(p) for p in tfrecord_dir(cfg, "denoise").glob("*.tfrecord"))
    sizes = stored_counts(cfg, "denoise")
    n_total = sum(sizes.values())
    fn = NZ.make_mixed_level_noise_fn(cfg, "train", (12.0,), ("gaussian",))

    def records_in_first(n: int, masks) -> set[str]:
        ds = create_dataset(files, cfg, 16, True, task="mitdb_denoise", noise_fn=fn,
                            include=masks, seed=0, with_index=True)
        seen = set()
        for _, _, rec, _ in ds.unbatch().take(n):
            seen.add(rec.numpy().decode())
        return seen

    n = 64  # a small epoch: a few percent of the stored windows
    assert len(records_in_first(n, None)) < len(files)  # the stream's head: few records
    m1 = epoch_masks(files, sizes, 1.1 * n / n_total, seed=1)
    m2 = epoch_masks(files, sizes, 1.1 * n / n_total, seed=2)
    assert len(records_in_first(n, m1)) == len(files)
    kept = sum(int(v.sum()) for v in m1.values())
    assert n // 2 <= kept < 2 * n  # about 1.1 n
    assert any((m1[f] != m2[f]).any() for f in files)  # a fresh subset each epoch
    # An intra-patient base mask is respected.
    base = {f: np.arange(len(m1[f])) % 2 == 0 for f in files}
    m3 = epoch_masks(files, sizes, 0.5, seed=3, base=base)
    assert all(not (m3[f] & ~base[f]).any() for f in files)
    assert epoch_masks(files, sizes, 1.0, seed=3) is None


def test_a_run_stopped_by_its_time_budget_resumes_to_the_end(root, tmp_path):
    """The budget applies per invocation: the rerun must not stop again after one epoch
    because the saved state still carries the earlier stop."""

    run = tmp_path / "run"
    args = ["--task", "mitdb_denoise", "--model", "cnn_dae", "--model-kwargs",
            json.dumps({"filters": [8, 8]}), "--run-dir", str(run)]
    assert train_cmd.main([*_argv(root, "train.epochs=3", "train.max_train_seconds=0.001"), *args]) == 0
    state = json.loads((run / "train_state.json").read_text())
    assert state["epoch"] == 1 and not state["finished"]
    assert "time budget" in state["stop_reason"]
    assert train_cmd.main([*_argv(root, "train.epochs=3"), *args]) == 0
    state = json.loads((run / "train_state.json").read_text())
    assert state["epoch"] == 3 and state["finished"] and state["stop_reason"] == "3 epochs"
    assert [h["epoch"] for h in json.loads((run / "history.json").read_text())] == [1, 2, 3]
