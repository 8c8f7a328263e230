"""Noise for the denoising task: Gaussian white noise and MIT-BIH Noise Stress Test records.

Noise sources (``NoiseConfig.types``):

* ``gaussian``: i.i.d. white Gaussian noise, the same variance on every lead;
* ``bw``, ``em``, ``ma``: baseline wander, electrode motion and muscle artifact from the
  ``nstdb`` records of the same names (360 Hz, 2 channels, mV). A window gets a random crop
  of the record (one random offset per window); noise channel 1 goes to lead 1 and channel 2
  to lead 2, so the two leads keep the records' own channel-to-channel power ratio and
  correlation. The records are used as read (their means are below 0.005 mV; no offset is
  removed);
* ``mix``: the sum of one ``bw``, one ``em`` and one ``ma`` crop (independent offsets), each
  first scaled to the same power over the window (sum of squares over both leads equal to 1)
  so that no type dominates; the sum is then scaled like any other noise.

**Disjoint segments.** Each noise record is cut in time by ``NoiseConfig.train_fraction`` and
``val_fraction``: ``train`` = samples [0, 0.6 n), ``val`` = [0.6 n, 0.8 n), ``test`` =
[0.8 n, n) (n = record length; bounds rounded to whole samples, see :func:`segment_bounds`).
A crop for a part lies entirely inside that part's segment, so no noise sample used to train
a denoiser is ever used to test it.

**SNR.** The noise is scaled per window so that the window's SNR equals the target exactly
(up to float32 rounding, well under 1e-3 dB)::

    SNR_dB = 10 log10( sum(clean^2) / sum((noisy - clean)^2) )

where both sums run over every sample of both leads of the window (clean signal power over
both leads, the definition in ``shared/REFERENCES.md``). The clean window is used as stored
(in mV, baseline included, not mean-removed). A window whose clean signal is all zeros gets
no noise (its SNR is undefined). ``snr_db = inf`` returns the clean windows unchanged.

Determinism: every random draw (Gaussian samples, crop offsets, curriculum type choices) uses
``tf.random.stateless_*`` with the ``seed`` the loader passes (``int64[2]``), so the same seed
gives the same noisy windows; the loader fixes the evaluation seeds per stored chunk.

A noise function has the signature the loader expects (:data:`pipeline.loader.NoiseFn`)::

    noise_fn(clean (k, T, C) float32 mV tf.Tensor, seed int64[2] tf.Tensor) -> noisy (k, T, C)

and uses TensorFlow ops only, so it runs inside ``tf.data`` maps (graph mode).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.config import NoiseConfig, PipelineConfig
from pipeline.core.io_utils import PipelineError, safe_name
from pipeline.data.loader import NoiseFn

log = logging.getLogger("ecg.noise")

NOISE_TYPES = ("gaussian", "bw", "em", "ma", "mix")
"""Every noise type :func:`make_noise_fn` accepts."""
RECORD_TYPES = ("bw", "em", "ma")
"""Types read from ``nstdb`` records (``mix`` is built from all three)."""
PARTS = ("train", "val", "test")
NOISE_FS_HZ = 360.0

# Stream ids folded into the seed, so each draw has its own independent random stream.
_STREAM = {"gaussian": 0, "bw": 1, "em": 2, "ma": 3, "choice": 100}


def check_noise_type(noise_type: str) -> str:
    """Returns ``noise_type`` or raises ``KeyError`` listing the known types."""
    if noise_type not in NOISE_TYPES:
        raise KeyError(f"unknown noise type {noise_type!r}; known: {list(NOISE_TYPES)}")
    return noise_type


def records_needed(types: Sequence[str]) -> tuple[str, ...]:
    """The nstdb records the noise types need (``mix`` needs all three); checks the names."""
    need = set()
    for t in types:
        check_noise_type(t)
        if t == "mix":
            need.update(RECORD_TYPES)
        elif t in RECORD_TYPES:
            need.add(t)
    return tuple(t for t in RECORD_TYPES if t in need)


# ---------------------------------------------------------------------------- records


def noise_dir(cfg: PipelineConfig) -> Path:
    """Where the download stage puts the nstdb records (``<data_dir>/raw/nstdb``)."""
    from pipeline.data.paths import raw_dir

    return raw_dir(cfg, "nstdb")


def load_noise(cfg: PipelineConfig, types: Sequence[str] = RECORD_TYPES) -> dict[str, np.ndarray]:
    """Reads the nstdb noise records.

    Args:
        cfg: pipeline config; the records are read from ``<data_dir>/raw/nstdb``.
        types: record names among ``bw``, ``em``, ``ma`` (default: all three).

    Returns:
        ``{name: (n_samples, 2) float32 array in mV}`` at 360 Hz (650,000 samples for the
        PhysioNet records).

    Raises:
        PipelineError: a record is missing, unreadable, not 360 Hz, not two channels or holds
            invalid samples.
    """
    import wfdb

    folder = noise_dir(cfg)
    out = {}
    for name in types:
        if name not in RECORD_TYPES:
            raise KeyError(f"unknown noise record {name!r}; known: {list(RECORD_TYPES)}")
        base = folder / safe_name(name)
        missing = [
            p.name for p in (base.with_suffix(".hea"), base.with_suffix(".dat")) if not p.is_file()
        ]
        if missing:
            raise PipelineError(
                f"{base}: nstdb noise record {name!r} not found (missing {', '.join(missing)}); "
                "run the download stage: python -m pipeline.download --databases nstdb"
            )
        try:
            rec = wfdb.rdrecord(str(base))
        except Exception as exc:  # wfdb raises assorted types on damaged files
            raise PipelineError(
                f"{base}: cannot read nstdb noise record {name!r} ({type(exc).__name__}: {exc}); "
                "rerun the download stage with --force"
            ) from exc
        x = np.asarray(rec.p_signal, np.float32)
        if not math.isclose(float(rec.fs), NOISE_FS_HZ):
            raise PipelineError(
                f"{base}: sampled at {rec.fs} Hz; the noise must be {NOISE_FS_HZ:g} Hz"
            )
        if x.ndim != 2 or x.shape[1] != 2:
            raise PipelineError(
                f"{base}: {x.shape[1] if x.ndim == 2 else '?'} channels; expected 2"
            )
        if not np.isfinite(x).all():
            raise PipelineError(f"{base}: holds invalid (NaN) samples")
        out[name] = x
    log.debug("loaded noise records %s from %s", list(out), folder)
    return out


def write_synthetic_noise(
    out_dir: str | Path, duration_s: float = 60.0, seed: int = 0, fs_hz: float = NOISE_FS_HZ
) -> list[str]:
    """Writes seeded stand-ins for the nstdb records ``bw``, ``em``, ``ma`` (tests, demos).

    Two channels at ``fs_hz`` in WFDB format 212 (200 adu/mV): ``bw`` a low-pass filtered
    random walk (< 0.5 Hz), ``em`` bursts of 1-20 Hz band-passed noise, ``ma`` 20-100 Hz
    band-passed noise. They never stand in for the real records in reported results.

    Returns:
        The record names written.
    """
    import wfdb
    from scipy import signal

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n = int(round(duration_s * fs_hz))
    t = np.arange(n) / fs_hz
    sos_bw = signal.butter(2, 0.5, btype="low", fs=fs_hz, output="sos")
    sos_em = signal.butter(2, [1.0, 20.0], btype="band", fs=fs_hz, output="sos")
    sos_ma = signal.butter(2, [20.0, 100.0], btype="band", fs=fs_hz, output="sos")
    sigs = {
        "bw": signal.sosfiltfilt(sos_bw, np.cumsum(rng.standard_normal((n, 2)), axis=0), axis=0),
        "em": signal.sosfiltfilt(sos_em, rng.standard_normal((n, 2)), axis=0)
        * (1.0 + np.sin(2 * np.pi * 0.2 * t) ** 8)[:, None],
        "ma": signal.sosfiltfilt(sos_ma, rng.standard_normal((n, 2)), axis=0),
    }
    for name, x in sigs.items():
        x = x - x.mean(axis=0)
        x = np.clip(x * (np.array([0.4, 0.2]) / x.std(axis=0)), -5.0, 5.0)
        wfdb.wrsamp(
            name,
            fs=fs_hz,
            units=["mV", "mV"],
            sig_name=["noise1", "noise2"],
            p_signal=x,
            fmt=["212", "212"],
            adc_gain=[200.0, 200.0],
            baseline=[0, 0],
            write_dir=str(out_dir),
        )
    return list(sigs)


# --------------------------------------------------------------------------- segments


def _check_fractions(ncfg: NoiseConfig) -> None:
    tf_, vf = ncfg.train_fraction, ncfg.val_fraction
    if not (0.0 < tf_ < 1.0 and 0.0 <= vf and tf_ + vf < 1.0):
        raise ValueError(
            "noise.train_fraction must be in (0, 1), noise.val_fraction >= 0 and their sum < 1 "
            f"(the rest is the test segment). Received: train_fraction={tf_}, val_fraction={vf}"
        )


def segment_bounds(n_samples: int, cfg: PipelineConfig, part: str) -> tuple[int, int]:
    """Sample range ``[start, stop)`` of a noise record used for ``part``.

    ``train`` = [0, round(train_fraction n)), ``val`` = [that, round((train_fraction +
    val_fraction) n)), ``test`` = [that, n). The three ranges are disjoint and cover the record.
    """
    if part not in PARTS:
        raise ValueError(f"unknown part {part!r}; known: {list(PARTS)}")
    ncfg = cfg.noise
    _check_fractions(ncfg)
    a = int(round(ncfg.train_fraction * n_samples))
    b = int(round((ncfg.train_fraction + ncfg.val_fraction) * n_samples))
    return {"train": (0, a), "val": (a, b), "test": (b, n_samples)}[part]


def noise_segments(
    noise: Mapping[str, np.ndarray], cfg: PipelineConfig, part: str
) -> dict[str, np.ndarray]:
    """The ``part`` segment of each noise record: ``{type: (n_part, 2) float32}`` (views)."""
    out = {}
    for name, x in noise.items():
        lo, hi = segment_bounds(len(x), cfg, part)
        if hi <= lo:
            raise ValueError(f"noise record {name!r}: the {part!r} segment is empty ({lo}:{hi})")
        out[name] = np.asarray(x[lo:hi], np.float32)
    return out


# ------------------------------------------------------------------------ TF noise ops


def _fold(seed: Any, stream: int) -> Any:
    import tensorflow as tf

    return tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int64), stream)


def _window_power(x: Any) -> Any:
    """Sum of squares per window over samples and leads, float64: (k, T, C) -> (k,)."""
    import tensorflow as tf

    return tf.reduce_sum(tf.square(tf.cast(x, tf.float64)), axis=[1, 2])


def _unit_power(x: Any) -> Any:
    """Scales each window so its sum of squares over both leads is 1 (zero windows stay 0)."""
    import tensorflow as tf

    inv = tf.math.divide_no_nan(tf.constant(1.0, tf.float64), tf.sqrt(_window_power(x)))
    return x * tf.cast(inv, tf.float32)[:, None, None]


def scale_to_snr(clean: Any, noise: Any, snr_db: Any) -> Any:
    """``clean + a * noise`` with ``a`` per window so that the window SNR equals ``snr_db``.

    ``a = sqrt(sum(clean^2) / (sum(noise^2) 10^(snr_db/10)))`` computed in float64; ``a = 0``
    when the noise or the clean window is all zeros, or when ``snr_db`` is ``+inf``.

    Args:
        clean: (k, T, C) float32, mV.
        noise: (k, T, C) float32, any scale.
        snr_db: scalar (Python number or tensor/variable), dB.
    """
    import tensorflow as tf

    gain = tf.pow(tf.constant(10.0, tf.float64), tf.cast(snr_db, tf.float64) / 10.0)
    a = tf.sqrt(tf.math.divide_no_nan(_window_power(clean), _window_power(noise) * gain))
    return clean + tf.cast(a, tf.float32)[:, None, None] * noise


class _Sources:
    """Unscaled noise generators for one part: ``make(type, k, T, C, seed) -> (k, T, C)``."""

    def __init__(self, segments: Mapping[str, np.ndarray]) -> None:
        import tensorflow as tf

        self.consts = {n: tf.constant(x, tf.float32) for n, x in segments.items()}
        self.lengths = {n: int(len(x)) for n, x in segments.items()}

    def crop(self, name: str, k: Any, T: Any, C: Any, seed: Any) -> Any:
        import tensorflow as tf

        seg, L = self.consts[name], self.lengths[name]
        if isinstance(T, int) and T > L:
            raise ValueError(f"noise segment {name!r} has {L} samples; a window needs {T}")
        if isinstance(C, int) and C > 2:
            raise ValueError(f"noise records have 2 channels; the windows have {C} leads")
        off = tf.random.stateless_uniform(
            [k], _fold(seed, _STREAM[name]), minval=0, maxval=L - T + 1, dtype=tf.int32
        )
        x = tf.gather(seg, off[:, None] + tf.range(T)[None, :])  # (k, T, 2)
        return x[:, :, :C]

    def make(self, noise_type: str, k: Any, T: Any, C: Any, seed: Any) -> Any:
        import tensorflow as tf

        if noise_type == "gaussian":
            return tf.random.stateless_normal(
                tf.stack([k, T, C]), _fold(seed, _STREAM["gaussian"]), dtype=tf.float32
            )
        if noise_type == "mix":
            return tf.add_n([_unit_power(self.crop(n, k, T, C, seed)) for n in RECORD_TYPES])
        return self.crop(noise_type, k, T, C, seed)


def _dims(clean: Any) -> tuple[Any, Any, Any]:
    import tensorflow as tf

    dyn = tf.shape(clean)
    k = dyn[0]
    T = clean.shape[1] if clean.shape[1] is not None else dyn[1]
    C = clean.shape[2] if clean.shape[2] is not None else dyn[2]
    return k, T, C


def _check_snr(snr_db: Any) -> bool:
    """True when ``snr_db`` is the Python number +inf (no noise); validates plain numbers."""
    if isinstance(snr_db, (int, float, np.floating, np.integer)):
        v = float(snr_db)
        if math.isnan(v) or v == -math.inf:
            raise ValueError(f"snr_db must be a number or +inf. Received: snr_db={snr_db}")
        return v == math.inf
    return False


def _sources_for(
    cfg: PipelineConfig, types: Sequence[str], part: str, noise: Mapping[str, np.ndarray] | None
) -> _Sources:
    need = records_needed(types)
    if not need:
        return _Sources({})
    if noise is None:
        noise = load_noise(cfg, need)
    lacking = [n for n in need if n not in noise]
    if lacking:
        raise KeyError(
            f"noise records {lacking} are needed for types {list(types)}; given: {sorted(noise)}"
        )
    return _Sources(noise_segments({n: noise[n] for n in need}, cfg, part))


def make_noise_fn(
    cfg: PipelineConfig,
    noise_type: str,
    snr_db: float | Any,
    part: str,
    noise: Mapping[str, np.ndarray] | None = None,
) -> NoiseFn:
    """Noise function adding one noise type at a fixed per-window SNR.

    Args:
        cfg: pipeline config (segment fractions; the nstdb folder when ``noise`` is None).
        noise_type: one of :data:`NOISE_TYPES`.
        snr_db: target SNR of every window in dB (module docstring); ``inf`` returns the clean
            windows unchanged. A scalar ``tf.Variable`` is read at each call, so an epoch-wise
            schedule can change it without rebuilding the dataset (batches already prefetched
            keep the old value).
        part: ``train``, ``val`` or ``test``: which time segment of the records is cropped.
        noise: records from :func:`load_noise` (read from disk when None and needed).

    Returns:
        ``noise_fn(clean (k, T, C) float32 mV, seed int64[2]) -> noisy (k, T, C) float32``.
    """
    check_noise_type(noise_type)
    segment_bounds(1, cfg, part)  # validates the part and the fractions
    if _check_snr(snr_db):

        def clean_fn(clean: Any, seed: Any) -> Any:
            return clean

        return clean_fn

    src = _sources_for(cfg, [noise_type], part, noise)

    def noise_fn(clean: Any, seed: Any) -> Any:
        import tensorflow as tf

        clean = tf.convert_to_tensor(clean, tf.float32)
        k, T, C = _dims(clean)
        return scale_to_snr(clean, src.make(noise_type, k, T, C, seed), snr_db)

    return noise_fn


def make_curriculum_noise_fn(
    cfg: PipelineConfig,
    part: str,
    snr_db: float | Any,
    types: Sequence[str] | None = None,
    noise: Mapping[str, np.ndarray] | None = None,
) -> NoiseFn:
    """Noise function drawing a noise type per window, uniformly among ``types``.

    Every window of a chunk gets its own type (seeded by ``seed``), then is scaled to
    ``snr_db`` like :func:`make_noise_fn`. Used for training (``part="train"``).

    Args:
        cfg: pipeline config.
        part: ``train``, ``val`` or ``test`` segment of the noise records.
        snr_db: target SNR in dB for every window (``inf``: clean); a scalar ``tf.Variable``
            may be passed for an epoch-wise curriculum (``NoiseConfig.curriculum_snr_db``).
        types: noise types to draw from (default ``cfg.noise.train_types``).
        noise: records from :func:`load_noise` (read from disk when None and needed).
    """
    types = tuple(cfg.noise.train_types if types is None else types)
    if not types:
        raise ValueError(
            "make_curriculum_noise_fn needs at least one noise type. Received: types=()"
        )
    for t in types:
        check_noise_type(t)
    segment_bounds(1, cfg, part)
    if _check_snr(snr_db):

        def clean_fn(clean: Any, seed: Any) -> Any:
            return clean

        return clean_fn

    src = _sources_for(cfg, types, part, noise)

    def noise_fn(clean: Any, seed: Any) -> Any:
        import tensorflow as tf

        clean = tf.convert_to_tensor(clean, tf.float32)
        k, T, C = _dims(clean)
        if len(types) == 1:
            return scale_to_snr(clean, src.make(types[0], k, T, C, seed), snr_db)
        choice = tf.random.stateless_uniform(
            [k], _fold(seed, _STREAM["choice"]), minval=0, maxval=len(types), dtype=tf.int32
        )
        stack = tf.stack([_unit_power(src.make(t, k, T, C, seed)) for t in types], axis=1)
        pick = tf.one_hot(choice, len(types), dtype=tf.float32)[:, :, None, None]
        return scale_to_snr(clean, tf.reduce_sum(stack * pick, axis=1), snr_db)

    return noise_fn


def make_mixed_level_noise_fn(
    cfg: PipelineConfig,
    part: str,
    levels: Sequence[float],
    types: Sequence[str] | None = None,
    noise: Mapping[str, np.ndarray] | None = None,
) -> NoiseFn:
    """Noise function drawing, per window, a noise type among ``types`` and a level among
    ``levels`` (dB; ``inf`` leaves the window clean), both uniformly.

    Used by the ``mix`` training schedule (``noise.schedule: mix``): every batch then holds
    clean and noisy windows at every level, instead of one level per epoch.
    """
    levels = tuple(float(v) for v in levels)
    if not levels:
        raise ValueError("make_mixed_level_noise_fn needs at least one level. Received: levels=()")
    for v in levels:
        _check_snr(v)
    finite = [v for v in levels if not math.isinf(v)]
    if not finite:
        return make_curriculum_noise_fn(cfg, part, math.inf, types, noise)
    typed = make_curriculum_noise_fn(cfg, part, 0.0, types, noise)  # noise at 0 dB

    def noise_fn(clean: Any, seed: Any) -> Any:
        import tensorflow as tf

        clean = tf.convert_to_tensor(clean, tf.float32)
        k = tf.shape(clean)[0]
        unit = typed(clean, seed) - clean  # noise with the window's power (0 dB)
        pick = tf.random.stateless_uniform([k], _fold(seed, 7), minval=0, maxval=len(levels),
                                           dtype=tf.int32)
        snr = tf.gather(tf.constant(levels, tf.float64), pick)
        return scale_to_snr(clean, unit, snr)

    return noise_fn
