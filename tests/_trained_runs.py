"""Tiny trained runs on synthetic records, made through the real stages (shared by the
predict and export tests; built once per test session).

synthetic records (4 x 40 s) -> windows -> scalograms (8 scales) -> tfrecords -> train
(1 epoch of 64 examples) for segment classifiers (ldcnn, without and with RR channels), a
sequence classifier (conformer) and a denoiser (cnn_dae, with synthetic nstdb noise).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

# Settings shared by every stage (the TFRecord config key and the model shapes depend on them).
SETS = [
    "windows.workers=1",
    "scalograms.workers=1",
    "scalograms.n_scales=8",
    "splits.val_fraction=0.34",
    "loader.shuffle_buffer=64",
    "train.epochs=1",
    "train.batch_size=32",
    "train.examples_per_epoch=64",
    "train.val_examples=64",
    "noise.curriculum_snr_db=[12.0]",
    "noise.eval_snr_db=[12.0]",
    "noise.mix_snr_db=[12.0, 6.0]",
]

RUNS = {
    "segments": ("mitdb_aami5_segments", "ldcnn", {"filters": 8, "dilations": [1, 2]}),
    "segments_rr": ("mitdb_aami5_segments_rr", "ldcnn", {"filters": 8, "dilations": [1, 2]}),
    "sequences": ("mitdb_aami5_sequences", "conformer",
                  {"filters": [8, 8], "d_model": 16, "n_blocks": 1, "num_heads": 2,
                   "dense_units": 16}),
    "denoise": ("mitdb_denoise", "cnn_dae", {"filters": [8, 8]}),
}

_CACHE: dict[str, Path] = {}


def _argv(root: Path) -> list[str]:
    out = ["--data-dir", str(root)]
    for s in SETS:
        out += ["--set", s]
    return out


def data_root(tmp_path_factory) -> Path:
    """A data folder with synthetic MIT-BIH-like records, noise, windows and TFRecords."""
    if "root" in _CACHE:
        return _CACHE["root"]
    from data_tools import synthetic as syn
    from pipeline import scalograms as scalograms_cmd
    from pipeline import tfrecords as tfrecords_cmd
    from pipeline import windows as windows_cmd
    from pipeline.data import noise as NZ

    root = tmp_path_factory.mktemp("predict_data")
    syn.write_synthetic_database(root / "raw" / "mitdb", n_records=4, seed=0, duration_s=40.0)
    NZ.write_synthetic_noise(root / "raw" / "nstdb", duration_s=60.0, seed=1)
    assert windows_cmd.main([*_argv(root), "--databases", "mitdb"]) == 0
    assert scalograms_cmd.main(_argv(root)) == 0
    assert tfrecords_cmd.main([*_argv(root), "--kinds", "segments", "beats", "denoise"]) == 0
    _CACHE["root"] = root
    return root


def trained_run(tmp_path_factory, which: str) -> Path:
    """The run folder of ``RUNS[which]``, trained once per session."""
    if which in _CACHE:
        return _CACHE[which]
    from pipeline import train as train_cmd

    root = data_root(tmp_path_factory)
    task, model, kwargs = RUNS[which]
    run_dir = root.parent / f"run_{which}"
    assert train_cmd.main([*_argv(root), "--task", task, "--model", model,
                       "--model-kwargs", json.dumps(kwargs), "--run-dir", str(run_dir)]) == 0
    _CACHE[which] = run_dir
    return run_dir


def clone_run(src: Path, dst: Path, kind: str, name: str, kwargs: dict, n_outputs: int | None = None) -> Path:
    """A run folder like ``src`` (config, split, normalization) holding an untrained
    ``name`` model saved as its best checkpoint (export tests of other model families)."""
    import keras

    from models import registry

    meta = json.loads((src / "model.json").read_text())
    dst.mkdir(parents=True, exist_ok=True)
    for f in ("config.yaml", "splits.json", "normalization.json"):
        shutil.copy(src / f, dst / f)
    shape = tuple(meta["input_shape"])
    keras.utils.set_random_seed(0)
    spec = registry.get(kind, name)
    model = spec(shape, **kwargs) if kind == "denoiser" else spec(shape, n_outputs or 5, **kwargs)
    (dst / "checkpoints").mkdir(exist_ok=True)
    model.save(dst / "checkpoints" / "best.keras")
    (dst / "model.json").write_text(json.dumps({**meta, "model": name, "kwargs": kwargs}))
    return dst


def write_run_config(dst: Path, overrides: dict) -> None:
    """Merges ``overrides`` (nested mapping) into a run folder's config.yaml."""
    cfg = yaml.safe_load((dst / "config.yaml").read_text())
    for sec, vals in overrides.items():
        cfg.setdefault(sec, {}).update(vals)
    (dst / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


def assert_predict_matches_evaluation(run, root: Path, rec: str = "s01"):
    """``predict`` on raw record ``rec`` gives the evaluation pipeline's probabilities for
    every beat the evaluation classifies (same beats, rtol 1e-4); returns the prediction."""
    import numpy as np

    from pipeline.data.paths import shard_name, tfrecord_dir
    from pipeline.evaluation.evaluate import predict_classifier
    from pipeline.serving import predict_beats

    pred = predict_beats.classify_beats(run, root / "raw" / "mitdb" / rec)
    f = str(tfrecord_dir(run.cfg, run.task.kind) / shard_name(rec))
    ev = predict_classifier(run.model, [f], run.cfg, run.task, run.mean, run.scale)
    assert pred.source == "atr" and len(ev["index"]) > 10
    np.testing.assert_array_equal(np.flatnonzero(pred.classified), np.sort(ev["index"]))
    np.testing.assert_allclose(pred.probs[ev["index"]], ev["probs"], rtol=1e-4, atol=1e-5)
    return pred
