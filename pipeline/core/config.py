"""Typed, frozen experiment configuration.

Every stage reads one :class:`PipelineConfig`. Configs are YAML files whose top-level keys are
the sections below; unknown keys and values of the wrong type raise :class:`ConfigError` naming
the file, the key and what was expected, so a typo never silently falls back to a default.

Field names carry their units (``fs_hz``, ``window_samples``, ``snr_db``...).
"""

from __future__ import annotations

import dataclasses
import json
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


@dataclass(frozen=True)
class DataConfig:
    """Where data lives and where it comes from."""

    data_dir: str = "data"
    """Root of downloaded and derived data (git-ignored). ``$ECG_DATA_DIR`` overrides it."""
    mirror: str = ""
    """Local directory or http(s) base URL laid out like ``shared/data`` (``$ECG_MIRROR``)."""
    base_url: str = "https://physionet.org/files"
    """PhysioNet's file tree; files are at ``<base_url>/<slug>/<version>/<path>``."""
    databases: tuple[str, ...] = ("mitdb", "nstdb", "ptbxl")
    mitdb_records: tuple[str, ...] = ()
    """MIT-BIH records to use; empty means all 48."""
    ptbxl_max_records: int = 0
    """Number of PTB-XL records (lowest ecg_id first); 0 means all."""
    timeout_s: float = 60.0
    retries: int = 3


@dataclass(frozen=True)
class WindowsConfig:
    """How records are cut into examples."""

    label_scheme: str = "aami5"
    """``aami5`` (N, S, V, F, Q) or ``aami4`` (N, SVEB, VEB, Other)."""
    lead: str = "MLII"
    """Lead used for beats and segments; falls back to the first lead when absent."""
    beat_fs_hz: float = 125.0
    beat_len_samples: int = 187
    beat_r_offset_samples: int = 62
    """Index of the R peak inside a beat window (0.496 s of context before it at 125 Hz)."""
    segment_fs_hz: float = 360.0
    segment_len_samples: int = 720
    denoise_fs_hz: float = 360.0
    denoise_window_samples: int = 1440
    denoise_train_shift_samples: int = 45
    denoise_eval_shift_samples: int = 1440
    denoise_highpass_hz: float = 0.5
    """Cut-off of the zero-phase high-pass (Butterworth, order 2) applied to the clean
    denoising reference: MIT-BIH records carry their own baseline wander, which a denoiser
    would otherwise be scored as damaging when it removes it. 0 keeps the raw signal."""
    rr_local_beats: int = 10
    """Number of preceding RR intervals averaged into the local mean RR."""
    ptbxl_fs_hz: float = 100.0
    workers: int = 2


@dataclass(frozen=True)
class ScalogramConfig:
    """Continuous wavelet transform of each beat."""

    wavelet: str = "morl"
    n_scales: int = 32
    f_min_hz: float = 1.0
    f_max_hz: float = 40.0
    scales: tuple[float, ...] = ()
    """Explicit scales; when given they override the frequency range."""
    dtype: str = "float16"
    """Storage dtype of scalograms (``float16`` or ``float32``)."""
    chunk_beats: int = 512
    workers: int = 2


@dataclass(frozen=True)
class TFRecordConfig:
    examples_per_batch: int = 256
    """Examples carried by one serialized Example (at most 256)."""
    denoise_chunk_windows: int = 256
    """Train-shift windows per stored denoising chunk."""


@dataclass(frozen=True)
class LoaderConfig:
    cycle_length: int = 16
    """Training files (records) read at once, stored batch by stored batch."""
    shuffle_buffer: int = 4096
    """Examples mixed after the interleave: with ``cycle_length`` files of 256-example stored
    batches in flight, each training batch draws from about ``cycle_length`` records."""
    seq_len_beats: int = 3
    seed: int = 42


@dataclass(frozen=True)
class SplitConfig:
    scheme: str = "inter_patient"
    """``inter_patient`` (DS1/DS2, de Chazal 2004) or ``intra_patient`` (leaky, labelled so)."""
    n_folds: int = 5
    val_fraction: float = 0.2
    """Fraction of training patients held out for validation (inter-patient)."""
    intra_test_fraction: float = 0.3
    same_subject: str = "drop_from_test"
    """Records 201 (DS1) and 202 (DS2) are one subject: ``drop_from_test`` removes 202 from
    the test set, ``drop_from_train`` removes 201 from training."""
    seed: int = 42


@dataclass(frozen=True)
class NoiseConfig:
    types: tuple[str, ...] = ("gaussian", "bw", "em", "ma", "mix")
    curriculum_snr_db: tuple[float, ...] = (float("inf"), 24.0, 12.0, 6.0)
    """Rotating epochs; ``inf`` (``.inf`` in YAML) is the clean epoch."""
    eval_snr_db: tuple[float, ...] = (24.0, 12.0, 6.0, 0.0)
    train_fraction: float = 0.6
    val_fraction: float = 0.2
    """Noise records are cut in time: train, then validation, then test segments."""
    train_types: tuple[str, ...] = ("gaussian", "bw", "em", "ma", "mix")
    schedule: str = "rotate"
    """``rotate``: each epoch uses one level of ``curriculum_snr_db`` in turn (the seed
    project's schedule); ``mix``: every window draws its level from ``mix_snr_db``."""
    mix_snr_db: tuple[float, ...] = (float("inf"), 24.0, 18.0, 12.0, 6.0, 3.0, 0.0, -3.0)


@dataclass(frozen=True)
class TrainConfig:
    task: str = "mitdb_aami5_segments"
    model: str = "liteecgnet"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    clipnorm: float = 1.0
    examples_per_epoch: int = 0
    """0: a full pass over the training files; otherwise a fresh random subset each epoch."""
    val_examples: int = 0
    """0: the whole validation split."""
    early_stopping_patience: int = 7
    reduce_lr_patience: int = 5
    reduce_lr_factor: float = 0.7
    min_learning_rate: float = 1e-6
    class_weighting: str = "sqrt"
    """``none``, ``balanced`` (inverse frequency), ``sqrt`` (its square root, capped at 100) or
    ``focal`` (focal loss, no weights)."""
    focal_gamma: float = 2.0
    per_class_limit: int = 0
    seed: int = 42
    deterministic: bool = False
    mae_weight: float = 0.3
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
    lr_schedule: str = "plateau"
    """``plateau`` (ReduceLROnPlateau on validation loss: ``reduce_lr_*``) or ``cosine``
    (per-epoch cosine decay from ``learning_rate`` to ``min_learning_rate`` over ``epochs``;
    what the final retrain uses, where no held-out validation drives a plateau)."""
    init_from: str = ""
    """Run folder whose best checkpoint initializes the weights (same model and kwargs)."""
    max_train_seconds: float = 0.0
    """Stop after this wall time (0 = no limit); the run stays resumable."""
    distribution: str = "default"
    """``default`` (one device), ``mirrored`` or ``multi_worker``."""


@dataclass(frozen=True)
class TuneConfig:
    algorithm: str = "hyperband"
    max_trials: int = 20
    max_epochs: int = 10
    executions_per_trial: int = 1
    subprocess_per_trial: bool = False
    objective: str = "auto"
    """``auto`` (single-label classifiers: ``val_macro_f1``, maximized, since the loss is
    dominated by the majority class; otherwise ``val_loss``), ``val_loss`` or
    ``val_macro_f1``."""


@dataclass(frozen=True)
class EvalConfig:
    bootstrap_samples: int = 1000
    seed: int = 42
    final_epochs: str = "kfold"
    """Epochs of the final retrain on all training records: ``kfold`` (the median best epoch
    of the newest k-fold run of the same task and model, else ``train.epochs``) or
    ``config`` (``train.epochs``)."""
    final_lr_schedule: str = "cosine"
    """``train.lr_schedule`` of the final retrain (``cosine`` ends at the minimum learning
    rate, so the evaluated last epoch is not a high-learning-rate spike)."""


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
    """Per model name, builder keyword arguments (e.g. narrower widths for a CPU)."""
    train_overrides: dict[str, Any] = field(default_factory=dict)
    """Per ``task:model`` (or task), ``train`` settings overriding the train section."""
    max_test_windows: int = 0
    """Denoising final evaluation: a fixed random subset of test windows (0: all)."""


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
        return _from_dict(tp, value, where)
    raise ConfigError(f"{where}: unsupported type {tp}")  # pragma: no cover


def _from_dict(cls: type, raw: Any, where: str) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(names), key=str)  # YAML keys may be 1, true, null...
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {names}")
    kwargs = {k: _check_type(v, hints[k], f"{where}.{k}") for k, v in raw.items()}
    return cls(**kwargs)


def from_dict(raw: Mapping[str, Any] | None, where: str = "config") -> PipelineConfig:
    """Builds a validated :class:`PipelineConfig` from a nested mapping."""
    return _from_dict(PipelineConfig, raw or {}, where)


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
