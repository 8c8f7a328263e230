"""Typed, frozen experiment configuration.

Every stage reads one :class:`PipelineConfig`. Configs are YAML files whose top-level keys are
the sections below; unknown keys and values of the wrong type raise :class:`ConfigError` naming
the file, the key and what was expected, so a typo never silently falls back to a default.

Field names carry their units (``fs_hz``, ``window_samples``, ``snr_db``...).
"""

from __future__ import annotations

import dataclasses
import json
import operator
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
MIRROR_ENV = "ECG_MIRROR"
DATA_DIR_ENV = "ECG_DATA_DIR"


class ConfigError(ValueError):
    """A configuration file or value is invalid."""


# YAML 1.1 (PyYAML) reads ``1e-3`` (no dot) as a string; such values are accepted as numbers.
_EXP_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")

_RULE_TEXT = {"ge": ">= {}", "gt": "> {}", "le": "<= {}", "lt": "< {}"}
_COMPARE = {"ge": operator.ge, "gt": operator.gt, "le": operator.le, "lt": operator.lt}


def _rule(default: Any, **rule: Any) -> Any:
    """A field with a range rule, checked wherever a config is read (:func:`from_dict`).

    Rules (combined with "and"): ``ge``, ``gt``, ``le``, ``lt`` (numbers; on a list, every
    item), ``non_empty=True`` (lists) and ``one_of=(...)`` (the allowed values); ``note`` is
    shown with the range in the error. ``_rule(0.2, gt=0, lt=1)`` is a fraction in (0, 1).
    """
    unknown = set(rule) - {*_RULE_TEXT, "non_empty", "one_of", "note"}
    if unknown:  # pragma: no cover - a typo in this file
        raise TypeError(f"unknown range rule(s) {sorted(unknown)}")
    return field(default=default, metadata={"range": dict(rule)})


def describe_rule(rule: Mapping[str, Any]) -> str:
    """``{"gt": 0, "lt": 1}`` -> ``"> 0 and < 1"``; ``{"non_empty": True}`` -> a non-empty list."""
    parts = [_RULE_TEXT[k].format(v) for k, v in rule.items() if k in _RULE_TEXT]
    if rule.get("non_empty"):
        parts.insert(0, "a non-empty list")
    if rule.get("one_of"):
        parts.insert(0, "one of " + ", ".join(map(str, rule["one_of"])))
    note = f" ({rule['note']})" if rule.get("note") else ""
    return " and ".join(parts) + note


def _check_range(value: Any, rule: Mapping[str, Any] | None, where: str) -> None:
    """Raises :class:`ConfigError` naming the key, the value and the allowed range."""
    if not rule:
        return
    items = value if isinstance(value, tuple) else (value,)
    bad = bool(rule.get("non_empty")) and not items
    bad = bad or ("one_of" in rule and any(v not in rule["one_of"] for v in items))
    bad = bad or any(not _COMPARE[k](v, b) for v in items for k, b in rule.items() if k in _COMPARE)
    if bad:
        shown = list(value) if isinstance(value, tuple) else value
        per_item = isinstance(value, tuple) and set(rule) & set(_COMPARE)
        each = "every item " if per_item else ""
        raise ConfigError(f"{where}: {each}must be {describe_rule(rule)}, got {shown!r}")


@dataclass(frozen=True)
class DataConfig:
    """Where data lives and where it comes from."""

    data_dir: str = "data"
    """Root of downloaded and derived data (git-ignored). ``$ECG_DATA_DIR`` overrides it."""
    mirror: str = ""
    """Local directory or http(s) base URL laid out like ``shared/data`` (``$ECG_MIRROR``)."""
    base_url: str = "https://physionet.org/files"
    """PhysioNet's file tree; files are at ``<base_url>/<slug>/<version>/<path>``."""
    databases: tuple[str, ...] = _rule(("mitdb", "nstdb", "ptbxl"), non_empty=True)
    mitdb_records: tuple[str, ...] = ()
    """MIT-BIH records to use; empty means all 48."""
    ptbxl_max_records: int = _rule(0, ge=0, note="0: all")
    """Number of PTB-XL records (lowest ecg_id first); 0 means all."""
    timeout_s: float = _rule(60.0, gt=0)
    retries: int = _rule(3, ge=0)


@dataclass(frozen=True)
class WindowsConfig:
    """How records are cut into examples."""

    label_scheme: str = "aami5"
    """``aami5`` (N, S, V, F, Q) or ``aami4`` (N, SVEB, VEB, Other)."""
    lead: str = "MLII"
    """Lead used for beats and segments; falls back to the first lead when absent."""
    beat_fs_hz: float = _rule(125.0, gt=0)
    beat_len_samples: int = _rule(187, ge=1)
    beat_r_offset_samples: int = _rule(62, ge=0)
    """Index of the R peak inside a beat window (0.496 s of context before it at 125 Hz)."""
    segment_fs_hz: float = _rule(360.0, gt=0)
    segment_len_samples: int = _rule(720, ge=2)
    denoise_fs_hz: float = _rule(360.0, gt=0)
    denoise_window_samples: int = _rule(1440, ge=1)
    denoise_train_shift_samples: int = _rule(45, ge=1)
    denoise_eval_shift_samples: int = _rule(1440, ge=1)
    denoise_highpass_hz: float = _rule(0.5, ge=0)
    """Cut-off of the zero-phase high-pass (Butterworth, order 2) applied to the clean
    denoising reference: MIT-BIH records carry their own baseline wander, which a denoiser
    would otherwise be scored as damaging when it removes it. 0 keeps the raw signal."""
    rr_local_beats: int = _rule(10, ge=1)
    """Number of preceding RR intervals averaged into the local mean RR."""
    rhythm_running_beats: int = _rule(32, ge=1)
    """Beats in the running mean RR of the rhythm features (``pipeline.data.rhythm``)."""
    rhythm_causal: bool = False
    """Rhythm features without the ones that look at the next beat (post-RR), and the
    record's mean RR taken over the beats so far: for streaming use. False: offline set."""
    rhythm_amplitude_window_s: float = _rule(1.0, gt=0)
    """Half-width of the neighbourhood whose median is the baseline under each R peak when
    measuring its amplitude (R sample minus the median of +- this many seconds)."""
    beat_table: bool = False
    """Also store, after each beat's rhythm features, the classic trees' columns: the 2 s
    segment's morphology, the beat against its record's median beat and the rhythm context
    (:mod:`pipeline.data.beat_table`), so that the deep models' ``rr`` input can take them
    (``train.rhythm_features: relative+template+context``). Off: the files, their hash and
    the TFRecords are what they were before the option existed."""
    ptbxl_fs_hz: float = _rule(100.0, gt=0)
    workers: int = _rule(2, ge=1)


@dataclass(frozen=True)
class ScalogramConfig:
    """Continuous wavelet transform of each beat."""

    wavelet: str = "morl"
    n_scales: int = _rule(32, ge=1)
    f_min_hz: float = _rule(1.0, gt=0)
    f_max_hz: float = _rule(40.0, gt=0)
    scales: tuple[float, ...] = _rule((), gt=0)
    """Explicit scales; when given they override the frequency range."""
    dtype: str = "float16"
    """Storage dtype of scalograms (``float16`` or ``float32``)."""
    chunk_beats: int = _rule(512, ge=1)
    """No effect (kept so configs that set it load): every matrix product has a fixed
    number of rows (``pipeline.data.scalogram.BLOCK_BEATS``), so outputs never depend on it."""
    workers: int = _rule(2, ge=1)


@dataclass(frozen=True)
class TFRecordConfig:
    examples_per_batch: int = _rule(256, ge=1, le=256)
    """Examples carried by one serialized Example (at most 256)."""
    denoise_chunk_windows: int = _rule(256, ge=1)
    """Train-shift windows per stored denoising chunk."""


@dataclass(frozen=True)
class LoaderConfig:
    cycle_length: int = _rule(16, ge=1)
    """Training files (records) read at once, stored batch by stored batch."""
    shuffle_buffer: int = _rule(4096, ge=0)
    """Examples mixed after the interleave: with ``cycle_length`` files of 256-example stored
    batches in flight, each training batch draws from about ``cycle_length`` records."""
    seq_len_beats: int = _rule(3, ge=1)
    seed: int = 42


@dataclass(frozen=True)
class SplitConfig:
    scheme: str = "inter_patient"
    """``inter_patient`` (DS1/DS2, de Chazal 2004) or ``intra_patient`` (leaky, labelled so)."""
    n_folds: int = _rule(5, ge=2)
    val_fraction: float = _rule(0.2, gt=0, lt=1)
    """Fraction of training patients held out for validation (inter-patient)."""
    intra_test_fraction: float = _rule(0.3, gt=0, lt=1)
    same_subject: str = "drop_from_test"
    """Records 201 (DS1) and 202 (DS2) are one subject: ``drop_from_test`` removes 202 from
    the test set, ``drop_from_train`` removes 201 from training."""
    seed: int = 42


@dataclass(frozen=True)
class NoiseConfig:
    types: tuple[str, ...] = _rule(("gaussian", "bw", "em", "ma", "mix"), non_empty=True)
    curriculum_snr_db: tuple[float, ...] = _rule((float("inf"), 24.0, 12.0, 6.0), non_empty=True)
    """Rotating epochs; ``inf`` (``.inf`` in YAML) is the clean epoch."""
    eval_snr_db: tuple[float, ...] = _rule((24.0, 12.0, 6.0, 0.0), non_empty=True)
    train_fraction: float = _rule(0.6, gt=0, lt=1)
    val_fraction: float = _rule(0.2, gt=0, lt=1)
    """Noise records are cut in time: train, then validation, then test segments."""
    train_types: tuple[str, ...] = _rule(("gaussian", "bw", "em", "ma", "mix"), non_empty=True)
    schedule: str = "rotate"
    """``rotate``: each epoch uses one level of ``curriculum_snr_db`` in turn (the seed
    project's schedule); ``mix``: every window draws its level from ``mix_snr_db``."""
    mix_snr_db: tuple[float, ...] = _rule(
        (float("inf"), 24.0, 18.0, 12.0, 6.0, 3.0, 0.0, -3.0), non_empty=True
    )
    served_highpass: bool = False
    """Train and validate a denoiser on the input ``pipeline.predict`` gives it: the noise
    high-passed like the recording (``windows.denoise_highpass_hz``; :mod:`pipeline.data.served`)."""


@dataclass(frozen=True)
class TrainConfig:
    task: str = "mitdb_aami5_segments"
    model: str = "liteecgnet"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    epochs: int = _rule(30, ge=1)
    batch_size: int = _rule(64, ge=1)
    learning_rate: float = _rule(1e-3, gt=0)
    weight_decay: float = _rule(1e-4, ge=0)
    clipnorm: float = _rule(1.0, gt=0)
    examples_per_epoch: int = _rule(0, ge=0, note="0: a full pass")
    """0: a full pass over the training files; otherwise a fresh random subset each epoch."""
    val_examples: int = _rule(0, ge=0, note="0: the whole split")
    """0: the whole validation split."""
    early_stopping_patience: int = _rule(7, ge=0)
    reduce_lr_patience: int = _rule(5, ge=0)
    reduce_lr_factor: float = _rule(0.7, gt=0, lt=1)
    min_learning_rate: float = _rule(1e-6, ge=0)
    class_weighting: str = "sqrt"
    """``none``, ``balanced`` (inverse frequency), ``sqrt`` (its square root, capped at 100) or
    ``focal`` (focal loss, no weights)."""
    focal_gamma: float = _rule(2.0, ge=0)
    per_class_limit: int = _rule(0, ge=0)
    seed: int = 42
    deterministic: bool = False
    mae_weight: float = _rule(0.3, ge=0)
    """Denoising loss = MSE + mae_weight * MAE."""
    denoise_weighting: str = "none"
    """Denoising: ``none`` (every window counts the same) or ``snr``: each window's loss is
    weighted by 1 / max(noise power / clean power, 10^-3), so every input noise level counts
    in proportion to its relative error (the SNR-improvement objective) instead of the
    noisiest windows dominating. The loss of each window is still MSE + 0.3 MAE."""
    denoise_loss: str = "mse_mae"
    """Denoising: ``mse_mae`` (the seed recipe, MSE + mae_weight * MAE) or ``snr_db``: minus
    each window's output SNR in dB, capped at 40 dB (``pipeline.losses.SNRLoss``), i.e. the
    SNR-improvement metric itself; every window counts by its relative error. Validation
    loss and checkpoint choice follow the same objective."""
    spectral_loss_weight: float = _rule(0.0, ge=0, note="0: off")
    """Denoising: when > 0 the training loss is ``WithSpectralTerm(<denoise_loss>, weight)``:
    the time-domain loss above plus this weight times the multi-resolution STFT magnitude
    loss (``pipeline.training.losses.SpectralLoss``, frames of 32, 64 and 128 samples)."""
    lr_schedule: str = "plateau"
    """``plateau`` (ReduceLROnPlateau on validation loss: ``reduce_lr_*``) or ``cosine``
    (per-epoch cosine decay from ``learning_rate`` to ``min_learning_rate`` over ``epochs``;
    what the final retrain uses, where no held-out validation drives a plateau)."""
    init_from: str = ""
    """Run folder whose best checkpoint initializes the weights, or a preset folder
    (``models/presets/NAME``: its ``model.keras``, hash checked) to fine-tune; same model and
    kwargs. The learning rate, schedule and budget are this run's."""
    max_train_seconds: float = _rule(0.0, ge=0, note="0: no limit")
    """Stop after this wall time (0 = no limit); the run stays resumable."""
    distribution: str = "default"
    """``default`` (one device), ``mirrored`` or ``multi_worker``."""
    selection_metric: str = "auto"
    """Validation metric choosing the best checkpoint, early stopping, the plateau and (with
    ``tune.objective: auto``) the tuning score: ``auto`` (single-label: ``val_macro_f1``,
    multi-label: ``val_macro_auc``, denoising: ``val_snr_improvement_db``, the mean over the
    training noise levels), ``val_loss``, ``val_macro_f1``, ``val_macro_auc`` or
    ``val_snr_improvement_db``."""
    augment_gain: float = _rule(0.0, ge=0, lt=1, note="0: off")
    """Beat segments, training batches only: each segment's signal is multiplied by a gain
    drawn from U(1 - g, 1 + g) (``pipeline.data.augment``)."""
    augment_noise_mv: float = _rule(0.0, ge=0, note="0: off")
    """Beat segments, training batches only: white Gaussian noise of this standard deviation
    (mV) is added to each segment's signal."""
    rhythm_features: str = _rule("all", one_of=("all", "relative", "relative+template",
                                                "relative+template+context"))
    """Rhythm tasks: which stored rhythm features the model's ``rr`` input takes. ``all``:
    every one; ``relative``: only the patient-relative ones (ratios of intervals to the
    patient's own means, and the amplitude ratio), none in seconds
    (:data:`pipeline.data.rhythm.RELATIVE_FEATURE_NAMES`). Absolute intervals let a model
    learn which training patient a beat comes from; on the validation patients the classic
    baseline's F1(S) is 0.04 with them and 0.69 without (README, beat classification).
    ``relative+template+context``: the relative ones and every column of the beat table
    (needs ``windows.beat_table: true``). ``relative+template``: the same without the
    rhythm-context columns, what the classic trees' default best feature set reads (the
    context columns failed on DS2 in session 9; README)."""
    progress_every_s: float = _rule(30.0, gt=0)
    """The longest gap between two training progress lines (step, examples/s, epoch and run
    ETA; ``pipeline.training.progress``), in seconds; they reach a log file as they happen."""


@dataclass(frozen=True)
class TuneConfig:
    algorithm: str = "hyperband"
    max_trials: int = _rule(20, ge=1)
    max_epochs: int = _rule(10, ge=1)
    executions_per_trial: int = _rule(1, ge=1)
    objective: str = "auto"
    """``auto`` (follows ``train.selection_metric``), or one of its metric names."""


@dataclass(frozen=True)
class EvalConfig:
    bootstrap_samples: int = _rule(1000, ge=0)
    seed: int = 42
    final_epochs: str = "kfold"
    """Epochs of the final retrain on all training records: ``kfold`` (the median best epoch
    of the newest k-fold run of the same task and model, else ``train.epochs``) or
    ``config`` (``train.epochs``)."""
    final_lr_schedule: str = "cosine"
    """``train.lr_schedule`` of the final retrain (``cosine`` ends at the minimum learning
    rate, so the evaluated last epoch is not a high-learning-rate spike)."""
    classic_selection: str = _rule("validation", one_of=("validation", "kfold"))
    """How ``final_eval --classic`` chooses the beat classifier's tree setting: by macro F1 on
    the validation patients, or by the pooled out-of-fold macro F1 of the patient-grouped
    folds over every training record (``splits.n_folds``; more patients decide)."""
    classic_decision: str = _rule("argmax", one_of=("argmax", "tuned"))
    """What ``final_eval --classic`` predicts from the selected trees: ``argmax`` (the best
    setting alone) or ``tuned`` (:mod:`pipeline.training.classic_decision`: the best of a
    few averages of top settings, with or without class weights, chosen on the same held-out
    training patients as the setting; the weighted ones scored nested)."""
    classic_context: bool = False
    """Add the 6 settings on the ``relative+template+context`` feature set (the rhythm's
    irregularity; :data:`pipeline.training.classic.CONTEXT_GRID`) to the tree settings
    compared. Off by default since session 9: the DS1 folds preferred them, but on DS2 they
    found 5 of record 232's 1,382 S beats (F1(S) 0.162 against 0.712 without; README)."""
    test_reads_file: str = ""
    """Ledger of test-split reads (one JSON line per final evaluation); empty: the file
    ``test_reads.jsonl`` in the folder that holds the evaluated run folder (so
    ``Research_Runs/test_reads.jsonl`` for runs in ``Research_Runs/``)."""


@dataclass(frozen=True)
class ProfileConfig:
    """Which models ``run_full_pipeline.sh`` trains, tunes and evaluates (``task:model``)."""

    runs_dir: str = "Research_Runs/pipeline_full"
    """Run folders of the pipeline script (fixed names, so reruns resume or skip)."""
    train: tuple[str, ...] = (
        "mitdb_denoise:unet1d",
        "mitdb_aami5_segments:liteecgnet",
        "mitdb_aami5_sequences:conformer",
        "ptbxl_superdiagnostic:cnn",
    )
    """One denoiser and one classifier per family by default."""
    tune: tuple[str, ...] = ("mitdb_aami5_segments:liteecgnet",)
    """Searched with Keras Tuner, then evaluated by k-fold and retrained for the final
    held-out evaluation with the best hyperparameters."""
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    """Per model name, builder keyword arguments (e.g. narrower widths for a CPU). A
    ``task:model`` key replaces the model name's entry for that task's runs (the denoiser and
    the classifier called ``cnn`` take different arguments)."""
    train_overrides: dict[str, Any] = field(default_factory=dict)
    """Per ``task:model`` (or task), ``train`` settings overriding the train section."""
    max_test_windows: int = _rule(0, ge=0, note="0: all")
    """Denoising final evaluation: a fixed random subset of test windows (0: all)."""
    budget_hours: float = _rule(0.0, ge=0, note="0: not stated")
    """Nominal wall time of the profile's training budgets, in hours: ``--budget-hours H``
    scales every budget (``train.max_train_seconds`` of each run, the tune and k-fold
    examples per epoch) by H / budget_hours (``pipeline.training.profiles``)."""
    stage_overrides: dict[str, Any] = field(default_factory=dict)
    """Per stage (``train``, ``tune``, ``kfold``, ``final_eval``), config sections applied to
    that stage's runs after ``train_overrides``, e.g. ``{kfold: {train: {epochs: 10}}}``."""
    classic: tuple[str, ...] = ()
    """Tasks scored with the classic baseline (``final_eval --classic``) in the final_eval
    stage, into ``<runs_dir>/<task>_classic``."""
    external: dict[str, str] = field(default_factory=dict)
    """Per task, a folder of outside WFDB records that the final_eval stage also scores each
    of the task's runs on (``final_eval --run RUN --external DIR``, into
    ``RUN/external_<folder name>``), e.g. ``{mitdb_denoise: raw/ptbxl/records100/00000}``; a
    relative folder is under ``data.data_dir``."""
    external_lead: str = ""
    """``--lead`` of those evaluations: the lead of the outside records to score ("": the
    run's own lead name)."""
    estimates_s: dict[str, Any] = field(default_factory=dict)
    """The plan's estimate of a stage without a time budget, in seconds, by stage name (data
    stages: whole stage; ``tune``, ``kfold``: per run, scaled with the budgets;
    ``final_eval``: the evaluation part per run); missing stages use built-in estimates."""


@dataclass(frozen=True)
class PipelineConfig:
    data: DataConfig = field(default_factory=DataConfig)
    windows: WindowsConfig = field(default_factory=WindowsConfig)
    scalograms: ScalogramConfig = field(default_factory=ScalogramConfig)
    tfrecords: TFRecordConfig = field(default_factory=TFRecordConfig)
    loader: LoaderConfig = field(default_factory=LoaderConfig)
    splits: SplitConfig = field(default_factory=SplitConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    profile: ProfileConfig = field(default_factory=ProfileConfig)

    @property
    def data_dir(self) -> Path:
        return Path(self.data.data_dir)


# --------------------------------------------------------------------------- conversion


def _check_type(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arg in typing.get_args(tp):
            if arg is type(None) and value is None:
                return None
            try:
                return _check_type(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0])
    if origin is tuple:
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item_tp, *_) = typing.get_args(tp)
        if item_tp is str:  # record names written as numbers: ``mitdb_records: [100, 201]``
            value = [str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value]
        return tuple(_check_type(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str) and _EXP_FLOAT.fullmatch(value.strip()):
            return float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(
                f"{where}: expected a number (units are in the key name), got {value!r}"
            )
        try:
            number = float(value)
        except OverflowError:  # an integer beyond float range
            raise ConfigError(f"{where}: number out of range, got {value!r}") from None
        if number != number:  # NaN is no setting (inf is: the clean SNR level)
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return number
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        return section_from_dict(tp, value, where)
    raise ConfigError(f"{where}: unsupported type {tp}")  # pragma: no cover


def section_from_dict(cls: type, raw: Any, where: str) -> Any:
    """Builds one config dataclass (a section, or :class:`PipelineConfig`) from a mapping.

    Every value is checked for its type and range (see :func:`_rule`); unknown keys raise.

    Args:
        cls: the dataclass, e.g. :class:`WindowsConfig`.
        raw: the mapping (``None`` gives the defaults).
        where: file or origin and key path, the start of every error message.

    Raises:
        ConfigError: unknown key, wrong type or value out of range, naming ``where.key``.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(names), key=str)  # YAML keys may be 1, true, null...
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {names}")
    rules = {f.name: f.metadata.get("range") for f in dataclasses.fields(cls)}
    kwargs = {}
    for k, v in raw.items():
        kwargs[k] = _check_type(v, hints[k], f"{where}.{k}")
        _check_range(kwargs[k], rules[k], f"{where}.{k}")
    return cls(**kwargs)


def from_dict(raw: Mapping[str, Any] | None, where: str = "config") -> PipelineConfig:
    """Builds a validated :class:`PipelineConfig` from a nested mapping."""
    return section_from_dict(PipelineConfig, raw or {}, where)


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain, JSON/YAML-serializable dict of a config (tuples become lists)."""

    def conv(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (tuple, list)):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        return v

    return conv(cfg)


def _deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _deep_merge(dict(out[k]), v)
        else:
            out[k] = v
    return out


def _read_yaml(path: Path, _chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    if path.resolve() in _chain:
        loop = " -> ".join(str(p) for p in (*_chain, path.resolve()))
        raise ConfigError(f"{path}: `extends` loops ({loop})")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a YAML text file (not UTF-8: {exc.reason})") from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "invalid YAML"
        raise ConfigError(f"{path}: not valid YAML ({first})") from exc
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections")
    extends = raw.pop("extends", None)
    from_dict(raw, str(path))  # unknown keys and bad values name the file that holds them
    if extends is not None:
        parent = resolve_config_path(str(extends), relative_to=path.parent)
        raw = _deep_merge(_read_yaml(parent, (*_chain, path.resolve())), raw)
    return raw


def resolve_config_path(name: str, relative_to: Path | None = None) -> Path:
    """Finds a config by path, or by name in ``pipeline/configs`` (``quick`` -> quick.yaml)."""
    candidates = [Path(name)]
    if relative_to is not None:  # `extends:` is relative to the extending file, not the cwd
        candidates.insert(0, relative_to / name)
    candidates += [CONFIG_DIR / name, CONFIG_DIR / f"{name}.yaml"]
    for c in candidates:
        if c.is_file():
            return c
    raise ConfigError(f"{name}: config not found (looked in . and {CONFIG_DIR})")


def load_config(
    path: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    apply_env: bool = True,
) -> PipelineConfig:
    """Loads a YAML config (``extends:`` chains allowed), applies environment and overrides.

    Precedence, lowest first: defaults, YAML files, ``$ECG_MIRROR`` / ``$ECG_DATA_DIR``,
    ``overrides`` (``--set``).

    Args:
        path: config file or name in ``pipeline/configs``; ``None`` uses the defaults.
        overrides: nested mapping merged on top, e.g. ``{"train": {"epochs": 2}}``.
        apply_env: let ``$ECG_MIRROR`` and ``$ECG_DATA_DIR`` override the data section.
    """
    raw: dict[str, Any] = {}
    where = "config"
    if path is not None:
        p = resolve_config_path(str(path))
        raw = _read_yaml(p)
        where = str(p)
    if apply_env:
        env: dict[str, Any] = {}
        if os.environ.get(MIRROR_ENV):
            env["mirror"] = os.environ[MIRROR_ENV]
        if os.environ.get(DATA_DIR_ENV):
            env["data_dir"] = os.environ[DATA_DIR_ENV]
        if env:
            raw = _deep_merge(raw, {"data": env})
    if overrides:
        from_dict(overrides, "overrides")
        raw = _deep_merge(raw, overrides)
    return from_dict(raw, where)


def parse_override(text: str) -> dict[str, Any]:
    """Parses ``section.key=value`` (value in YAML syntax) into a nested mapping."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected section.key=value")
    key, value = text.split("=", 1)
    parts = key.strip().split(".")
    if len(parts) < 2 or not all(parts):
        raise ConfigError(f"override {text!r}: expected section.key=value")
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: value is not valid YAML") from exc
    out: dict[str, Any] = {parts[-1]: parsed}
    for p in reversed(parts[:-1]):
        out = {p: out}
    return out


def add_config_args(parser: Any) -> None:
    """Adds the shared ``--config``, ``--set``, ``--data-dir`` and ``--mirror`` options."""
    parser.add_argument(
        "--config", default=None, help="YAML config file or name in pipeline/configs"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config value (repeatable), e.g. --set train.epochs=2",
    )
    parser.add_argument(
        "--data-dir", default=None, help=f"data folder (default: config, ${DATA_DIR_ENV})"
    )
    parser.add_argument(
        "--mirror",
        default=None,
        help=f"local directory or http(s) URL laid out like shared/data (${MIRROR_ENV})",
    )


def config_from_args(args: Any) -> PipelineConfig:
    """Resolves the config from parsed command-line arguments."""
    over: dict[str, Any] = {}
    for text in getattr(args, "overrides", []) or []:
        over = _deep_merge(over, parse_override(text))
    cfg = load_config(args.config, over)
    data_over = {}
    if getattr(args, "data_dir", None):
        data_over["data_dir"] = args.data_dir
    if getattr(args, "mirror", None):
        data_over["mirror"] = args.mirror
    if data_over:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, **data_over))
    return cfg


def dump_config(cfg: PipelineConfig, path: Path) -> None:
    """Writes the resolved config as YAML (atomically)."""
    from pipeline.core.io_utils import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))


def config_hash(section: Any) -> str:
    """Short stable hash of a config section, used to key stage outputs."""
    import hashlib

    blob = json.dumps(to_dict(section), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]
