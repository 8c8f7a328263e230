"""Finished-looking run folders without training, for the preset tests.

Each holds what a real run leaves (``config.yaml``, ``model.json``, ``normalization.json``,
``splits.json``, ``summary.json``, ``history.json``, ``env.json``, optionally a final
evaluation's ``metrics_test.json``) and a seeded, untrained model saved as
``checkpoints/best.keras`` (compiled, so it carries an optimizer like a real checkpoint).
Building one takes a second; nothing is trained.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

RUNS = {
    "segments_rr": ("mitdb_aami5_segments_rr", "ldcnn", "classifier", (720, 4),
                    {"filters": 8, "dilations": [1, 2]}),
    "denoise": ("mitdb_denoise", "cnn_dae", "denoiser", (1440, 2), {"filters": [8, 8]}),
    "ptbxl": ("ptbxl_superdiagnostic", "cnn", "classifier", (1000, 12),
              {"filters": [4, 8], "dense_units": 8}),
}

DS1_TRAIN = ["101", "106", "108", "109", "112", "114", "115", "116", "118", "119", "122"]
DS1_VAL = ["124", "201", "203"]
DS2 = ["100", "103", "105"]


def _norm(which: str, n_ch: int) -> dict:
    if which == "segments_rr":
        mean, scale = [-0.3, 1.0, 1.0, 0.8], [0.5, 0.16, 0.47, 0.23]
    elif which == "denoise":
        mean, scale = [0.0, 0.0], [0.3, 0.3]
    else:
        rng = np.random.default_rng(0)
        mean, scale = rng.normal(0, 0.01, n_ch).tolist(), rng.uniform(0.1, 0.3, n_ch).tolist()
    kind = {"segments_rr": "segments", "denoise": "denoise", "ptbxl": "ptbxl"}[which]
    return {"kind": kind, "mean": mean, "scale": scale, "count_per_channel": 1000,
            "train_files": ["101-00000-of-00001.tfrecord"]}


def _metrics(which: str, task: str, model: str) -> dict:
    base = {"task": task, "model": model, "leaky_split": False, "test_records": DS2,
            "mode": f"best checkpoint of training run fake_{which} (trained on training patients)"}
    if which == "denoise":
        cell = {"snr_in_db": {"mean": 6.0}, "snr_out_db": {"mean": 10.4}, "snr_imp_db": {"mean": 4.4}}
        return {**base, "results": {model: {"mix": {"6": cell}, "gaussian": {"6": cell}}},
                "ci95_snr_imp_db": {model: {"mix": {"6": {"point": 4.4, "low": 3.9, "high": 4.9}}}}}
    if which == "ptbxl":
        return {**base, "macro_auc": 0.79, "fmax": 0.6, "macro_f1": 0.5, "n_test_examples": 64,
                "bootstrap_95ci": {"macro_auc": {"point": 0.79, "low": 0.70, "high": 0.88}}}
    return {**base, "accuracy": 0.93, "macro_f1": 0.42, "cohen_kappa": 0.66, "n_test_examples": 900,
            "per_class": {"N": {"support": 800, "sensitivity": 0.97, "ppv": 0.97, "f1": 0.97}},
            "bootstrap_95ci": {"accuracy": {"point": 0.93, "low": 0.87, "high": 0.97},
                               "macro_f1": {"point": 0.42, "low": 0.33, "high": 0.51},
                               "f1_V": {"point": 0.73, "low": 0.45, "high": 0.91}}}


def fake_run(root: Path, which: str, *, evaluated: bool = True, checkpoint: bool = True,
             model=None) -> Path:
    """A run folder ``root/fake_<which>`` (see the module docstring); ``model`` replaces the
    seeded registry model."""
    import keras

    from models import registry
    from pipeline.core.config import PipelineConfig, dump_config

    task, name, kind, shape, kwargs = RUNS[which]
    run = Path(root) / f"fake_{which}"
    (run / "checkpoints").mkdir(parents=True, exist_ok=True)
    dump_config(PipelineConfig(), run / "config.yaml")
    params = 0
    if checkpoint:
        keras.utils.set_random_seed(0)
        if model is None:
            extra = {"output_activation": "sigmoid"} if which == "ptbxl" else {}
            model = (registry.build(kind, name, shape, **kwargs) if kind == "denoiser"
                     else registry.build(kind, name, shape, 5, **extra, **kwargs))
        model.compile(optimizer="adam", loss="mse")
        model.save(run / "checkpoints" / "best.keras")
        params = int(model.count_params())
    files = {
        "model.json": {"task": task, "model": name, "kind": kind, "kwargs": kwargs,
                       "params": params, "input_shape": list(shape)},
        "normalization.json": _norm(which, shape[-1]),
        "splits.json": {"scheme": "inter_patient", "train": DS1_TRAIN, "val": DS1_VAL,
                        "test": DS2, "folds": [], "leaky": False, "intra": None},
        "summary.json": {"task": task, "model": name, "params": params, "epochs_done": 3,
                         "best_epoch": 2, "train_seconds": 90.0, "examples_per_epoch": 64},
        "history.json": [{"epoch": e, "seconds": 30.0} for e in (1, 2, 3)],
        "env.json": {"git_commit": "0123456789abcdef0123456789abcdef01234567", "git_dirty": False,
                     "device": "CPU (2 cores)", "versions": {"keras": keras.__version__}},
    }
    if evaluated:
        files["metrics_test.json"] = _metrics(which, task, name)
    for fname, obj in files.items():
        (run / fname).write_text(json.dumps(obj, indent=1))
    return run
