"""The classic trees as a preset: ``models/presets/<name>/`` with ``trees.skops``.

The best beat classifier of the Results is the classic baseline (``final_eval --classic``),
which keeps no model. :func:`save` refits the evaluated run's decision (its
``selection.json``: members and class weights) on the run's own training records, the fit
``final_eval`` made (boosted trees draw no randomness here and the forest is seeded), and
writes it with :mod:`pipeline.training.classic_store` (skops, no pickle) beside the run's
config and a card (:mod:`pipeline.serving.preset_card` blocks: licence, citation, the test
numbers copied from the run's ``metrics_test.json``). :func:`open_folder` loads such a
folder into the same :class:`pipeline.serving.presets.Preset` the Keras presets give, so
``predict --preset NAME`` and ``Preset.predict_record`` work unchanged
(:mod:`pipeline.serving.predict_classic` builds the beat table).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.config import PipelineConfig, load_config
from pipeline.core.io_utils import PipelineError, atomic_write_json, read_json, sha256_file
from pipeline.data.tasks import Task
from pipeline.serving import preset_card
from pipeline.serving.run_loader import Run
from pipeline.training import classic_store

FILES = (classic_store.TREES_FILE, classic_store.META_FILE, "config.yaml", "preset.json")


def build_card(run_dir: Path, name: str, description: str, task: Task, cfg: PipelineConfig,
               stored: classic_store.StoredTrees, fit_s: float) -> dict[str, Any]:
    """The card of a classic preset (``model_file`` is filled in by :func:`save`)."""
    env = read_json(run_dir / "env.json", "run environment") if (run_dir / "env.json").is_file() else {}
    metrics, raw = preset_card.metrics_block(task, "classic_trees", run_dir)
    inp = preset_card.input_spec(task, cfg, (cfg.windows.segment_len_samples,))
    inp["notes"] = ("per beat: the beat table (rhythm features from all beat positions, the "
                    "2 s segment's morphology, the beat against the record's median beat, the "
                    f"rhythm context), of which the trees read the first "
                    f"{len(stored.feature_names)} columns; " + inp["notes"])
    return {
        "card_version": preset_card.CARD_VERSION, "name": name, "description": description,
        "task": task.name, "kind": "classifier", "format": classic_store.FORMAT,
        "model": "classic_trees", "classes": list(task.classes), "multilabel": False,
        "input": inp,
        "source": {"run": run_dir.name, "git_commit": env.get("git_commit"),
                   "git_dirty": env.get("git_dirty"), "checkpoint": classic_store.TREES_FILE,
                   "versions": env.get("versions", {}),
                   "created": dt.datetime.now().isoformat(timespec="seconds")},
        "training": preset_card.training_block(task, cfg, run_dir, raw), "metrics": metrics,
        "budget": {"epochs": None, "best_epoch": None, "train_minutes": round(fit_s / 60, 2),
                   "model_kwargs": stored.decision.to_json(), "params": stored.n_nodes,
                   "params_are": "tree nodes over all members"},
        "data": preset_card.datasets(task), "smoke": False, "warning": None,
    }


def save(run_dir: str | Path, name: str, description: str, *, force: bool = False,
         root: str | Path | None = None, max_bytes: int | None = None) -> Path:
    """Turns an evaluated ``final_eval --classic`` folder into preset ``name``; assembled in a
    temporary folder and renamed into place when complete (see
    :func:`pipeline.serving.presets.save_preset`).

    Raises:
        PipelineError: bad name or empty description, the preset exists and ``force`` is
            false, the trees file above ``max_bytes``, the reloaded trees disagree.
    """
    import shutil
    import tempfile

    from pipeline.serving import presets

    presets.check_name(name)
    if not str(description or "").strip():
        raise PipelineError("a preset needs a description (--description TEXT)")
    run_dir, max_bytes = Path(run_dir), max_bytes or presets.MAX_MODEL_BYTES
    final = presets.presets_dir(root) / name
    if final.exists() and not force:
        raise PipelineError(f"{final}: preset {name!r} exists; pass --force (force=True) to replace it")
    stored, cfg, task, fit_s = classic_store.refit_run(run_dir)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".pending", dir=final.parent))
    try:
        classic_store.save(tmp, stored)
        trees = tmp / classic_store.TREES_FILE
        if trees.stat().st_size > max_bytes:
            raise PipelineError(f"{run_dir}: {classic_store.TREES_FILE} would be "
                                f"{trees.stat().st_size / 2**20:.2f} MiB, above the "
                                f"{max_bytes / 2**20:.3g} MiB preset limit")
        shutil.copy(run_dir / "config.yaml", tmp / "config.yaml")
        card = build_card(run_dir, name, description.strip(), task, cfg, stored, fit_s)
        card["model_file"] = {"name": classic_store.TREES_FILE, "sha256": sha256_file(trees),
                              "bytes": trees.stat().st_size, "optimizer_state": False,
                              "load": "skops.io.load(path, trusted=classic_store.TRUSTED_TYPES)"}
        atomic_write_json(tmp / presets.CARD_FILE, card)
        check_reload(tmp, stored)
        presets.promote(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def check_reload(folder: Path, stored: classic_store.StoredTrees) -> None:
    """The folder's trees give exactly the fitted trees' probabilities (random rows)."""
    back = open_folder(folder, folder.name).run.model
    x = np.random.default_rng(0).normal(size=(256, len(stored.feature_names))).astype(np.float32)
    if not np.array_equal(back.probabilities(x), stored.probabilities(x)):
        raise PipelineError(f"{folder}: the stored trees give other probabilities than the fitted ones")


def open_folder(folder: Path, name: str) -> Any:
    """A classic preset folder as a :class:`pipeline.serving.presets.Preset` (hashes checked)."""
    from pipeline.serving import presets

    card, path, task = presets.read_checked_card(folder, FILES, classic_store.TREES_FILE)
    stored = classic_store.load(folder)
    cfg = load_config(folder / "config.yaml", apply_env=False)
    shape = (int(cfg.windows.segment_len_samples),)
    run = Run(folder, task, "classic_trees", cfg, np.zeros(0), np.ones(0), shape, stored, path)
    return presets.Preset(name, folder, card, run)
