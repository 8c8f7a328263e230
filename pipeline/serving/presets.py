"""Pretrained presets: small trained models shipped in the repository, used without training.

A preset is a folder ``models/presets/<name>/`` (another root: ``$ECG_PRESETS_DIR`` or the
``root`` argument) holding

* ``model.keras``: the model without optimizer state, loaded in Keras safe mode only, at
  most :data:`MAX_MODEL_BYTES`;
* ``normalization.json`` and ``config.yaml``: the run's training statistics and resolved
  config (what the readers, windows and normalizer need);
* ``preset.json``: the card (:mod:`pipeline.serving.preset_card`), with the sha256 of
  ``model.keras``.

Owns :func:`list_presets`, :func:`load_preset` (keras-hub ``from_preset`` style: checks the
hash against the card, loads in safe mode, an unknown name fails with the known ones),
:class:`Preset` (``.model``, ``.card``, ``.run`` for the predict pipeline, and
:meth:`Preset.predict_record` on a file or a NumPy array), :func:`save_preset` (a finished
run becomes a preset, written in a temporary folder renamed into place) and
:func:`export_preset`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.config import load_config
from pipeline.core.io_utils import (
    PipelineError,
    UnknownNameError,
    atomic_write_json,
    read_json,
    sha256_file,
)
from pipeline.data import normalization
from pipeline.data.tasks import get_task
from pipeline.evaluation import pass_through
from pipeline.serving import preset_card, reader
from pipeline.serving.predict_beats import BeatPrediction
from pipeline.serving.run_loader import Run, checkpoint_path, load_run
from pipeline.training.checkpoints import (  # noqa: F401 - part of this module's API
    CARD_FILE,
    MODEL_FILE,
    check_model_file,
    load_model_file,
)

log = logging.getLogger("ecg.presets")

PRESETS_ENV = "ECG_PRESETS_DIR"
"""Environment variable naming another presets folder (tests, a user's own zoo)."""
DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "models" / "presets"
PRESET_FILES = (MODEL_FILE, "normalization.json", "config.yaml", CARD_FILE)
MAX_MODEL_BYTES = 3 * 1024 * 1024
"""Largest ``model.keras`` a preset may hold (3 MiB), so the repository stays small."""
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


# ------------------------------------------------------------------------------ finding


def presets_dir(root: str | Path | None = None) -> Path:
    """The presets folder: ``root``, else ``$ECG_PRESETS_DIR``, else ``models/presets``."""
    if root is not None:
        return Path(root)
    env = os.environ.get(PRESETS_ENV, "")
    return Path(env) if env else DEFAULT_ROOT


def list_presets(root: str | Path | None = None) -> list[str]:
    """Names of the presets (sub-folders holding a ``preset.json``), sorted."""
    folder = presets_dir(root)
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and (p / CARD_FILE).is_file())


def check_name(name: str) -> str:
    """Refuses preset names that are not lower-case words (``[a-z0-9][a-z0-9_.-]*``)."""
    if not isinstance(name, str) or not NAME_RE.match(name) or ".." in name:
        raise PipelineError(f"preset name must be lower-case letters, digits, '_', '-' or '.' "
                            f"(at most 64). Received: {name!r}")
    return name


def preset_path(name: str, root: str | Path | None = None) -> Path:
    """The folder of preset ``name``, or an :class:`UnknownNameError` listing the known ones."""
    folder = presets_dir(root)
    known = list_presets(folder)
    if name not in known:
        where = f" in {folder}" if folder.is_dir() else f" ({folder} does not exist)"
        raise UnknownNameError(f"unknown preset {name!r}; known: {known}{where}")
    return folder / name


def read_card(name: str, root: str | Path | None = None) -> dict:
    """The card (``preset.json``) of preset ``name``."""
    card = read_json(preset_path(name, root) / CARD_FILE, "preset card")
    if not isinstance(card, dict):
        raise PipelineError(f"{preset_path(name, root) / CARD_FILE}: not a JSON object")
    return card


def listing(root: str | Path | None = None) -> list[str]:
    """One line per preset (name, task, model, headline metrics) for ``--preset list``."""
    return [preset_card.headline(read_card(n, root)) for n in list_presets(root)]


def markdown_table(root: str | Path | None = None) -> str:
    """The README's model-card table of every preset (:func:`preset_card.markdown_table`)."""
    return preset_card.markdown_table([read_card(n, root) for n in list_presets(root)])


# ------------------------------------------------------------------------------ loading


def has_optimizer_state(path: Path) -> bool:
    """Whether a ``.keras`` file stores a compile config or optimizer variables."""
    with zipfile.ZipFile(path) as zf:
        config = json.loads(zf.read("config.json"))
        if config.get("compile_config"):
            return True
        if "model.weights.h5" not in zf.namelist():
            return False
        import h5py

        with zf.open("model.weights.h5") as fh, h5py.File(fh, "r") as h5:
            return "optimizer" in h5


@dataclasses.dataclass(frozen=True)
class PresetPrediction:
    """What :meth:`Preset.predict_record` returns."""

    summary: dict
    """What predict writes as ``<name>_prediction.json`` / ``<name>_denoise.json``."""
    beats: BeatPrediction | None = None
    """Beat classifiers: per-beat positions, probabilities, predicted classes, reasons."""
    out_dir: Path | None = None
    """Where the output files were written (None: a temporary folder, removed)."""

    @property
    def probabilities(self) -> np.ndarray | dict | None:
        """(n_beats, n_classes) for beat classifiers (NaN rows: unclassified), the record
        probabilities for PTB-XL, None for denoisers."""
        if self.beats is not None:
            return self.beats.probs
        return self.summary.get("probabilities")


@dataclasses.dataclass(frozen=True)
class Preset:
    """A loaded preset: its Keras model, card and a :class:`Run` for the predict pipeline."""

    name: str
    path: Path
    card: dict
    run: Run

    @property
    def model(self) -> Any:
        return self.run.model

    def default_leads(self, n_columns: int) -> tuple[str, ...]:
        """Lead names assumed for an array without ``leads``: the card's when they fit."""
        leads = [str(v) for v in self.card["input"]["leads"]]
        if self.run.task.denoising:
            return tuple(f"ECG{j + 1}" for j in range(n_columns))
        if len(leads) == n_columns:
            return tuple(leads)
        raise PipelineError(f"preset {self.name}: an array of {n_columns} column(s) needs "
                            f"leads=[...] (the preset reads {leads})")

    def predict_record(self, source: str | Path | np.ndarray, *, fs: float | None = None,
                       leads: list[str] | tuple[str, ...] | None = None, units: str = "mV",
                       adc_gain: float | None = None, out_dir: str | Path | None = None,
                       **flags: Any) -> PresetPrediction:
        """Runs the preset on one recording, as ``python -m pipeline.predict --preset``.

        Args:
            source: a WFDB record, an EDF/CSV/NPY file, or an array ``(samples, leads)``
                (``(samples,)`` for one lead) in ``units``.
            fs: sampling rate in Hz (CSV, NPY and arrays).
            leads: lead names of an array's columns (default: the card's input leads when
                the count matches; denoisers: ``ECG1``, ``ECG2`` ...).
            out_dir: where predict's files go (default: a temporary folder, removed).
            flags: :class:`pipeline.serving.predict.PredictOptions` fields (``beats``,
                ``lead``, ``flat_s``, ``batch_size``, ``span_s``).

        Raises:
            PipelineError: the recording cannot be read or predicted on (one line).
        """
        from pipeline.serving import predict as serving_predict

        read = reader.ReadOptions(fs_hz=fs, units=units, adc_gain=adc_gain,
                                  leads=tuple(leads) if leads is not None else None)
        options = serving_predict.PredictOptions(read=read, **flags)
        with _out_folder(out_dir) as folder, tempfile.TemporaryDirectory() as tmp:
            rec = self._recording(source, options.read, Path(tmp))
            summary, beats = serving_predict.predict_recording(self.run, rec, folder, options)
        return PresetPrediction({**summary, "preset": self.name}, beats,
                                Path(out_dir) if out_dir is not None else None)

    def _recording(self, source: Any, read: reader.ReadOptions, tmp: Path) -> reader.Recording:
        if not isinstance(source, np.ndarray):
            return reader.read_input(source, read)
        x = np.asarray(source)
        if read.fs_hz is None:
            raise PipelineError("an array input needs fs= (sampling rate in Hz)")
        cols = 1 if x.ndim == 1 else x.shape[1] if x.ndim == 2 else -1
        if cols < 1:
            raise PipelineError(f"an array input must be (samples, leads). Received: shape {x.shape}")
        if read.leads is None:
            read = dataclasses.replace(read, leads=self.default_leads(cols))
        np.save(tmp / "array.npy", x, allow_pickle=False)
        rec = reader.read_input(tmp / "array.npy", read)
        return dataclasses.replace(rec, path=Path("<array>"))


@contextlib.contextmanager
def _out_folder(out_dir: str | Path | None) -> Iterator[Path]:
    if out_dir is not None:
        from pipeline.serving.outputs import prepare_out_dir

        yield prepare_out_dir(out_dir)
        return
    with tempfile.TemporaryDirectory(prefix="preset_predict_") as tmp:
        yield Path(tmp)


def read_checked_card(folder: Path, files: tuple[str, ...], model_file: str) -> tuple[dict, Path, Any]:
    """(card, model file path, task) of a preset folder: every file of ``files`` present, the
    card complete, the model file's sha256 the card's, the card's task known."""
    for f in files:
        if not (folder / f).is_file():
            raise PipelineError(f"{folder}: preset file {f} not found")
    card = read_json(folder / CARD_FILE, "preset card")
    problems = preset_card.card_problems(card)
    if problems:
        raise PipelineError(f"{folder / CARD_FILE}: incomplete card (missing {problems[:6]})")
    model_path = check_model_file(folder, card, model_file)
    try:
        return card, model_path, get_task(str(card["task"]))
    except KeyError as exc:
        raise PipelineError(f"{folder / CARD_FILE}: {exc}") from None


def open_preset_folder(folder: Path, name: str) -> Preset:
    """Loads a preset folder (hash checked, safe mode) without looking its name up."""
    from pipeline.serving import classic_preset
    from pipeline.training.classic_store import META_FILE

    if (folder / META_FILE).is_file():  # the classic trees (trees.skops), not a Keras model
        return classic_preset.open_folder(folder, name)
    card, model_path, task = read_checked_card(folder, PRESET_FILES, MODEL_FILE)
    cfg = load_config(folder / "config.yaml", apply_env=False)
    mean, scale = normalization.load(folder / "normalization.json", task.kind,
                                     normalization.n_channels(task.kind, cfg, task.rr_channels))
    model = load_model_file(model_path)
    shape = tuple(int(s) for s in card["input"]["input_shape"])
    if signal_input_shape(model) != shape:
        raise PipelineError(f"{model_path}: model input {signal_input_shape(model)} differs "
                            f"from the card's input_shape {shape}")
    gate = pass_through.load(folder) if task.denoising else None
    run = Run(folder, task, str(card["model"]), cfg, mean, scale, shape, model, model_path, gate)
    return Preset(name, folder, card, run)


def load_preset(name: str, root: str | Path | None = None) -> Preset:
    """Loads preset ``name`` (keras-hub ``from_preset`` style).

    Raises:
        UnknownNameError: no such preset (the message lists the known names).
        PipelineError: a file is missing, the card is incomplete, ``model.keras`` does not
            match the card's sha256 or does not load in safe mode.
    """
    return open_preset_folder(preset_path(name, root), name)


# ------------------------------------------------------------------------------- saving


def signal_input_shape(model: Any) -> tuple[int, ...]:
    """Shape of one example of the model's signal input (``ecg``; the rhythm vector ``rr`` of
    two-input beat classifiers is not part of the card's ``input_shape``)."""
    by_name = {t.name.split(":")[0]: t for t in model.inputs}
    t = by_name.get("ecg", model.inputs[0])
    return tuple(int(d) for d in t.shape[1:])


def _best_checkpoint(run_dir: Path) -> Path:
    try:
        return checkpoint_path(run_dir, "best")
    except PipelineError as exc:
        raise PipelineError(f"{run_dir}: no best checkpoint (checkpoints/best.keras); a preset is "
                            f"made from the best checkpoint of a finished run ({exc})") from None


def _write_model(ckpt: Path, dst: Path, run_dir: Path, max_bytes: int) -> Any:
    """Saves the checkpoint's model without optimizer state; checks size and reload parity."""
    model = load_model_file(ckpt)
    model.save(dst)
    size = dst.stat().st_size
    if size > max_bytes:
        raise PipelineError(f"{run_dir}: model.keras would be {size / 2**20:.2f} MiB, above the "
                            f"{max_bytes / 2**20:.3g} MiB preset limit (train a smaller model)")
    rng = np.random.default_rng(0)
    x = {t.name.split(":")[0]: rng.standard_normal((2, *t.shape[1:])).astype(np.float32)
         for t in model.inputs}  # one entry per input (beat classifiers with rhythm take two)
    x = next(iter(x.values())) if len(x) == 1 else x
    back = load_model_file(dst)
    diff = float(np.max(np.abs(np.asarray(model.predict_on_batch(x))
                               - np.asarray(back.predict_on_batch(x)))))
    if not diff <= 1e-6:
        raise PipelineError(f"{dst}: the saved model gives other outputs than the checkpoint "
                            f"(max |diff| {diff:.3g})")
    return model


def promote(tmp: Path, final: Path) -> None:
    """Renames a complete temporary preset folder to ``final`` (replacing an old one)."""
    old = final.with_name(f".{final.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    final.chmod(0o755)  # the temporary folder was private (mkdtemp)
    shutil.rmtree(old, ignore_errors=True)


def save_preset(run_dir: str | Path, name: str, description: str, smoke: bool = False, *,
                force: bool = False, root: str | Path | None = None,
                warning: str | None = None, max_bytes: int = MAX_MODEL_BYTES) -> Path:
    """Turns a finished run into preset ``name`` (``<root>/<name>/``); returns its folder.

    The preset is assembled in a hidden temporary folder beside the others and renamed into
    place only when complete; a failure leaves no partial preset and keeps an existing one.

    Raises:
        PipelineError: bad name or empty description; no best checkpoint; the preset exists
            and ``force`` is false; ``model.keras`` above ``max_bytes``; run files unreadable.
    """
    from pipeline.serving import classic_preset
    from pipeline.training import classic_store

    check_name(name)
    if not str(description or "").strip():
        raise PipelineError("a preset needs a description (--description TEXT)")
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise PipelineError(f"{run_dir}: run folder not found")
    if classic_store.is_classic_run(run_dir):
        return classic_preset.save(run_dir, name, description, force=force, root=root,
                                   max_bytes=max_bytes)
    ckpt = _best_checkpoint(run_dir)
    folder = presets_dir(root)
    final = folder / name
    if final.exists() and not force:
        raise PipelineError(f"{final}: preset {name!r} exists; pass --force (force=True) to replace it")
    run = load_run(run_dir, "best")
    folder.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".pending", dir=folder))
    try:
        _write_model(ckpt, tmp / MODEL_FILE, run_dir, max_bytes)
        for f in ("normalization.json", "config.yaml"):
            shutil.copy(run_dir / f, tmp / f)
        if run.gate is not None:  # the denoiser's pass-through gate, chosen on validation
            shutil.copy(run_dir / pass_through.GATE_FILE, tmp / pass_through.GATE_FILE)
        card = preset_card.build_card(run_dir, name, description.strip(), task=run.task,
                                      cfg=run.cfg, model_name=run.model_name,
                                      input_shape=run.input_shape, checkpoint=ckpt.name,
                                      smoke=smoke, warning=warning)
        card["pass_through_gate"] = None if run.gate is None else run.gate.to_json()
        card["model_file"] = {"name": MODEL_FILE, "sha256": sha256_file(tmp / MODEL_FILE),
                              "bytes": (tmp / MODEL_FILE).stat().st_size,
                              "optimizer_state": False,
                              "load": "keras.saving.load_model(path, safe_mode=True)"}
        atomic_write_json(tmp / CARD_FILE, card)
        open_preset_folder(tmp, name)  # everything a user will load, checked before the rename
        promote(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("preset %s written to %s (%d bytes)", name, final, card["model_file"]["bytes"])
    return final


def export_preset(name: str, fmt: str, *, root: str | Path | None = None, **kwargs: Any) -> dict:
    """Exports preset ``name`` to ``fmt`` under ``<preset>/export/`` (git-ignored), with the
    parity checks of :func:`pipeline.serving.export.export_loaded` (on seeded random
    inputs: a preset carries no training data)."""
    from pipeline.serving import export

    export.check_export_args(fmt, kwargs.get("int8", False), kwargs.get("parity_examples", 256),
                             kwargs.get("calibration_examples", 200), kwargs.get("parity_tol"))
    preset = load_preset(name, root)
    if getattr(preset.model, "kind", None) == "classic_trees":
        raise PipelineError(f"preset {name} holds classic trees (trees.skops, scikit-learn), "
                            f"not a Keras model; export converts Keras models only")
    return export.export_loaded(preset.run, fmt, **kwargs)
