"""Reading a user's recording for prediction: WFDB, EDF, CSV and NumPy files, lead names,
units and signal quality.

Owns :class:`Recording` (one recording in physical units, whatever file it came from),
:func:`list_inputs` / :func:`read_input`, the lead-name aliases (:data:`LEAD_ALIASES`,
:func:`match_leads`), the unit conversion to mV (:func:`to_mv`), the NaN/flat span report
(:func:`quality_spans`) and the checks that refuse a recording nothing can be predicted on
(:func:`check_rate`, :func:`check_signal`, :func:`check_length`).

Inputs (``--input PATH``):

* WFDB: a record path without extension (``data/raw/mitdb/100``, or ``100.hea``); its
  ``.atr`` beat annotations are used by beat classifiers when present.
* EDF/EDF+ (``.edf``): channel labels are the lead names, the physical dimension their
  units; the channels at the rate of the first ECG-like channel are kept (:func:`read_edf`
  says why wfdb's EDF reader is not used for the samples).
* CSV (``.csv``): a header row of lead names, then one row per sample; ``--fs`` is required,
  ``--units`` is ``mV`` (default), ``uV``, ``V`` or ``adu`` (``--adc-gain`` ADC units per mV,
  baseline 0). A first column named ``time``, ``t``, ``time_s``, ``sample`` or ``index`` is
  dropped. Empty cells are not allowed; ``nan`` marks an invalid sample.
* NumPy (``.npy``): an array ``(samples, leads)`` (or ``(samples,)`` for one lead) with
  ``--fs`` and ``--leads`` (comma-separated names, one per column); units as for CSV.
  Loaded with ``allow_pickle=False``.

A folder holds WFDB records and EDF files (CSV and NumPy files need ``--fs``; give them one
at a time). Lead names are matched after canonicalization (upper case; spaces, ``-`` and
``_`` removed; an ``ECG``/``LEAD`` prefix before a standard lead name dropped, so
``ECG II``, ``Lead II`` and ``ii`` are ``II``), then through :data:`LEAD_ALIASES`.
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.io_utils import PipelineError

MIN_FS_HZ = 50.0
"""Lowest sampling rate accepted: below it a QRS complex (about 100 ms) spans a few samples."""
MV_PER_UNIT = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "v": 1e3}
"""Physical units accepted and their factor to mV (blank units are taken as mV)."""
USER_UNITS = ("mV", "uV", "V", "adu")
"""``--units`` choices for CSV and NumPy inputs."""
STANDARD_LEADS = ("I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6",
                  "MLI", "MLII", "MLIII", "MLV1", "MLV2", "MLV3", "MLV4", "MLV5", "MLV6")
"""Canonical lead names (upper case) that an ``ECG``/``LEAD`` prefix may precede."""
LEAD_ALIASES = {
    "MLII": ("MLII", "II", "ML2", "ECG1", "ECG", "EKG", "EKG1"),
    "II": ("II", "MLII", "ML2", "ECG1", "ECG", "EKG", "EKG1"),
    "I": ("I", "MLI"),
    "III": ("III", "MLIII"),
}
"""Names (canonical, in order of preference) accepted for a lead the model needs; a lead
not listed is matched by its canonical name only. ``ECG1``/``ECG`` stand for the first or
only channel of Holter-style files, which is a modified lead II in most of them."""
_TIME_COLUMNS = {"TIME", "T", "TIMES", "SAMPLE", "INDEX"}
_FOLDER_SUFFIXES = (".hea", ".edf")


@dataclasses.dataclass(frozen=True)
class ReadOptions:
    """How to read inputs that carry no rate, names or units themselves (CSV, NumPy)."""

    fs_hz: float | None = None
    units: str = "mV"
    adc_gain: float | None = None
    """ADC units per mV, for ``units='adu'``."""
    leads: tuple[str, ...] | None = None
    """Lead names of a NumPy array's columns."""


@dataclasses.dataclass(frozen=True)
class Recording:
    """One recording in physical units, whatever file it came from."""

    name: str
    path: Path
    source: str
    """``wfdb``, ``edf``, ``csv`` or ``npy``."""
    signal: np.ndarray
    """(n_samples, n_leads) float64 in ``units``; NaN marks invalid samples."""
    fs_hz: float
    lead_names: tuple[str, ...]
    units: tuple[str, ...]
    adc_gain: tuple[float, ...]
    """ADC units per physical unit, used when a denoised copy is written as WFDB."""
    annotation_base: Path | None = None
    """WFDB record base whose ``.atr`` may hold reference beats (WFDB inputs only)."""

    @property
    def duration_s(self) -> float:
        return len(self.signal) / self.fs_hz


# ------------------------------------------------------------------------- finding inputs


def input_kind(path: Path) -> str:
    """``folder``, ``edf``, ``csv``, ``npy`` or ``wfdb`` for a path given as ``--input``."""
    if path.is_dir():
        return "folder"
    suffix = path.suffix.lower()
    if suffix in (".edf", ".csv", ".npy"):
        return suffix[1:]
    return "wfdb"


def _wfdb_base(path: Path) -> Path:
    base = path.with_suffix("") if path.suffix in (".hea", ".dat", ".atr") else path
    if not base.with_suffix(".hea").is_file():
        raise PipelineError(f"{base}: WFDB header {base.name}.hea not found")
    return base


def list_inputs(path: str | Path) -> list[Path]:
    """The recordings of ``--input``: one file or record, or every WFDB record (``*.hea``)
    and EDF file of a folder (sorted; two with the same name are refused).

    Returns:
        WFDB inputs as record bases (path without extension), other files as given.
    """
    path = Path(path)
    kind = input_kind(path)
    if kind == "folder":
        items = sorted(p for p in path.iterdir()
                       if p.is_file() and p.suffix.lower() in _FOLDER_SUFFIXES)
        found = [p.with_suffix("") if p.suffix == ".hea" else p for p in items]
        if not found:
            raise PipelineError(f"{path}: no WFDB records (*.hea) or EDF files (*.edf) in this folder")
        stems = [p.stem if p.suffix.lower() == ".edf" else p.name for p in found]
        twice = sorted({s for s in stems if stems.count(s) > 1})
        if twice:
            raise PipelineError(f"{path}: {twice} exist both as WFDB record and EDF file; their "
                                "outputs would collide (move one of them)")
        return found
    if kind == "wfdb":
        return [_wfdb_base(path)]
    if not path.is_file():
        raise PipelineError(f"{path}: input file not found")
    return [path]


def list_records(path: str | Path) -> list[Path]:
    """Alias of :func:`list_inputs` (the name older code imports)."""
    return list_inputs(path)


def input_name(path: Path) -> str:
    """The name outputs are written under: the record name or the file's stem."""
    return path.name if input_kind(path) == "wfdb" else path.stem


# ------------------------------------------------------------------------------ readers


def read_input(path: str | Path, options: ReadOptions | None = None) -> Recording:
    """Reads one recording (any supported file) and checks its sampling rate.

    Raises:
        PipelineError: unreadable file, missing ``--fs``/``--leads``, a rate below
            :data:`MIN_FS_HZ`, no samples.
    """
    path = Path(path)
    options = options or ReadOptions()
    kind = input_kind(path)
    if kind == "folder":
        raise PipelineError(f"{path}: a folder, not one recording (use list_inputs)")
    reader = {"wfdb": read_wfdb, "edf": read_edf, "csv": read_csv, "npy": read_npy}[kind]
    rec = reader(path, options)
    check_rate(rec.fs_hz, rec.name)
    if rec.signal.ndim != 2 or rec.signal.shape[0] == 0 or rec.signal.shape[1] == 0:
        raise PipelineError(f"record {rec.name}: no signal samples")
    return rec


def read_record(base: Path) -> Recording:
    """Reads a WFDB record (physical units), with errors naming it."""
    return read_input(_wfdb_base(Path(base)))


def read_wfdb(path: Path, options: ReadOptions | None = None) -> Recording:
    import wfdb

    base = _wfdb_base(path)
    try:
        rec = wfdb.rdrecord(str(base))
    except Exception as exc:  # wfdb raises assorted types on damaged files
        raise PipelineError(f"record {base.name}: does not read ({type(exc).__name__}: {exc})") from exc
    return _from_wfdb(rec, base.name, base, "wfdb", base)


def _edf_fields(raw: bytes, offset: int, ns: int, width: int) -> list[str]:
    return [raw[offset + i * width : offset + (i + 1) * width].decode("latin-1").strip()
            for i in range(ns)]


def _edf_header(raw: bytes, path: Path) -> dict[str, Any]:
    """The fixed-width EDF/EDF+ header: per-signal labels, units, scaling and samples."""
    try:
        ns = int(raw[252:256])
        n_records, record_s = int(raw[236:244]), float(raw[244:252])
        pos, fields = 256, {}
        for key, width in (("label", 16), ("transducer", 80), ("unit", 8), ("pmin", 8),
                           ("pmax", 8), ("dmin", 8), ("dmax", 8), ("prefilter", 80), ("n", 8)):
            fields[key] = _edf_fields(raw, pos, ns, width)
            pos += width * ns
        num = {k: np.asarray([float(v) for v in fields[k]]) for k in ("pmin", "pmax", "dmin", "dmax", "n")}
    except ValueError as exc:
        raise PipelineError(f"{path}: not an EDF file (header does not parse: {exc})") from None
    if ns < 1 or record_s <= 0 or raw[:8].strip() != b"0":
        raise PipelineError(f"{path}: not an EDF file (version {raw[:8]!r}, {ns} signals)")
    return {"ns": ns, "n_records": n_records, "record_s": record_s, "header_bytes": 256 * (ns + 1),
            "label": fields["label"], "unit": fields["unit"], **num}


def read_edf(path: Path, options: ReadOptions | None = None) -> Recording:
    """Reads an EDF/EDF+ (continuous) file: the channels sampled at the rate of its first
    ECG-like channel (the others, and EDF+ annotation channels, are left out), scaled
    exactly from the header's physical and digital ranges.

    wfdb 4.3's ``read_edf`` is not used for the samples: it offsets every sample by up to
    one ADC unit (``baseline = dmax - pmax * gain + 1``) and averages every channel down to
    the greatest common divisor of the rates when they differ (an ECG at 256 Hz beside a
    32 Hz respiration channel comes out at 32 Hz).
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PipelineError(f"{path}: does not read ({exc.strerror})") from exc
    h = _edf_header(raw, path)
    per_record = h["n"].astype(np.int64)
    signal_ok = np.asarray([lab != "EDF Annotations" for lab in h["label"]])
    if not signal_ok.any():
        raise PipelineError(f"{path}: an EDF+ file with annotations only, no signal")
    n_records = (len(raw) - h["header_bytes"]) // (2 * int(per_record.sum()))
    if n_records < 1:
        raise PipelineError(f"{path}: no complete data record after the header")
    data = np.frombuffer(raw, "<i2", count=n_records * int(per_record.sum()),
                         offset=h["header_bytes"]).reshape(n_records, -1)
    ecg = [j for j in range(h["ns"]) if signal_ok[j] and is_ecg_lead(h["label"][j])]
    ref = ecg[0] if ecg else int(np.flatnonzero(signal_ok)[0])
    keep = [j for j in range(h["ns"]) if signal_ok[j] and per_record[j] == per_record[ref]]
    starts = np.concatenate([[0], np.cumsum(per_record)])
    cols = []
    for j in keep:
        d = data[:, starts[j] : starts[j + 1]].reshape(-1).astype(np.float64)
        gain = (h["pmax"][j] - h["pmin"][j]) / (h["dmax"][j] - h["dmin"][j])
        cols.append((d - h["dmin"][j]) * gain + h["pmin"][j])
    gains = [float((h["dmax"][j] - h["dmin"][j]) / (h["pmax"][j] - h["pmin"][j])) for j in keep]
    units = [h["unit"][j].replace("µ", "u") or "mV" for j in keep]
    return Recording(path.stem, path, "edf", np.stack(cols, axis=1), float(per_record[ref] / h["record_s"]),
                     tuple(h["label"][j] for j in keep), tuple(units), tuple(abs(g) for g in gains), None)


def _from_wfdb(rec: Any, name: str, path: Path, source: str, ann_base: Path | None) -> Recording:
    if rec.p_signal is None or rec.p_signal.ndim != 2 or rec.p_signal.shape[0] == 0:
        raise PipelineError(f"record {name}: no signal samples")
    if not rec.fs or rec.fs <= 0:
        raise PipelineError(f"record {name}: header has no sampling rate")
    n = rec.p_signal.shape[1]
    gains = [float(g) if g and g > 0 else 200.0 for g in (rec.adc_gain or [200.0] * n)]
    return Recording(name, path, source, np.asarray(rec.p_signal, np.float64), float(rec.fs),
                     tuple(str(s).strip() for s in rec.sig_name),
                     tuple(str(u or "mV").strip() or "mV" for u in rec.units), tuple(gains), ann_base)


def _need_fs(path: Path, options: ReadOptions) -> float:
    if options.fs_hz is None:
        raise PipelineError(f"{path}: --fs is required for {path.suffix} input (sampling rate in Hz)")
    if not math.isfinite(options.fs_hz) or options.fs_hz <= 0:
        raise PipelineError(f"--fs must be > 0 Hz. Received: {options.fs_hz}")
    return float(options.fs_hz)


def _user_units(x: np.ndarray, options: ReadOptions, name: str) -> np.ndarray:
    """CSV/NumPy samples in mV from ``--units`` (and ``--adc-gain`` for ``adu``)."""
    units = options.units
    if units == "adu":
        if options.adc_gain is None or not options.adc_gain > 0:
            raise PipelineError(f"record {name}: --units adu needs --adc-gain > 0 (ADC units per "
                                f"mV). Received: {options.adc_gain}")
        return x / float(options.adc_gain)
    factor = MV_PER_UNIT.get(units.lower())
    if factor is None:
        raise PipelineError(f"--units must be one of {list(USER_UNITS)}. Received: {units!r}")
    return x * factor


def _table(name: str, path: Path, x: np.ndarray, leads: list[str], fs: float,
           options: ReadOptions, source: str) -> Recording:
    x = _user_units(np.asarray(x, np.float64), options, name)
    return Recording(name, path, source, x, fs, tuple(leads), ("mV",) * len(leads),
                     (200.0,) * len(leads), None)


def read_csv(path: Path, options: ReadOptions) -> Recording:
    fs = _need_fs(path, options)
    try:
        with open(path, encoding="utf-8-sig") as fh:
            header = [h.strip() for h in fh.readline().rstrip("\r\n").split(",")]
            x = np.loadtxt(fh, delimiter=",", dtype=np.float64, ndmin=2)
    except (OSError, UnicodeDecodeError) as exc:
        raise PipelineError(f"{path}: does not read ({exc})") from exc
    except ValueError as exc:  # numpy names the line and the value that does not parse
        raise PipelineError(f"{path}: not a numeric table after the header row ({exc})") from exc
    if not header or header == [""] or any(not h for h in header):
        raise PipelineError(f"{path}: the first row must name every column (lead names). "
                            f"Received: {header}")
    if all(_is_number(h) for h in header):
        raise PipelineError(f"{path}: the first row must be lead names, not samples. Received: {header[:4]}")
    if x.size and x.shape[1] != len(header):
        raise PipelineError(f"{path}: {x.shape[1]} values per row but {len(header)} column names")
    if header[0].upper().replace(" ", "").replace("(S)", "") in _TIME_COLUMNS and len(header) > 1:
        header, x = header[1:], x[:, 1:]
    return _table(path.stem, path, x.reshape(-1, len(header)), header, fs, options, "csv")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_npy(path: Path, options: ReadOptions) -> Recording:
    fs = _need_fs(path, options)
    try:
        x = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise PipelineError(f"{path}: not a readable .npy array ({exc})") from exc
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise PipelineError(f"{path}: expected a numeric array (samples, leads). "
                            f"Received: shape {x.shape}, dtype {x.dtype}")
    leads = list(options.leads or ())
    if not leads:
        raise PipelineError(f"{path}: --leads is required for .npy input (comma-separated lead "
                            f"names, one per column of the {x.shape} array)")
    if len(leads) != x.shape[1]:
        hint = ("; it looks like (leads, samples): save its transpose"
                if len(leads) == x.shape[0] else "")
        raise PipelineError(f"{path}: array is {x.shape} (samples, leads) but --leads names "
                            f"{len(leads)} lead(s) {leads}{hint}")
    return _table(path.stem, path, x, leads, fs, options, "npy")


# ------------------------------------------------------------------------ leads and units


def canonical_lead(name: str) -> str:
    """Upper case without spaces, ``-`` or ``_``; ``ECG``/``LEAD`` before a standard lead
    name dropped (``ECG II`` -> ``II``, ``Lead aVR`` -> ``AVR``; ``ECG1`` stays)."""
    s = re.sub(r"[\s_\-]+", "", str(name).upper())
    for prefix in ("ECGLEAD", "LEAD", "ECG", "EKG"):
        if s.startswith(prefix) and s[len(prefix):] in STANDARD_LEADS:
            return s[len(prefix):]
    return s


def is_ecg_lead(name: str) -> bool:
    """Whether a channel name looks like an ECG lead (standard name, alias, or ECG/EKG in it)."""
    c = canonical_lead(name)
    aliases = {a for names in LEAD_ALIASES.values() for a in names}
    return c in STANDARD_LEADS or c in aliases or "ECG" in c or "EKG" in c


def match_leads(record_leads: list[str] | tuple[str, ...], wanted: list[str], rec: str,
                override: str | None = None) -> list[int]:
    """Positions of the ``wanted`` leads in the record, through canonical names and aliases.

    Args:
        record_leads: the record's lead names.
        wanted: the leads the model needs, in its order.
        override: ``--lead``: a record lead to use for the (single) wanted lead.

    Raises:
        PipelineError: a lead matches no record lead; the message lists the record's and
            the model's leads.
    """
    canon = [canonical_lead(n) for n in record_leads]
    if override is not None:
        c = canonical_lead(override)
        if c not in canon:
            raise PipelineError(f"record {rec} has leads {list(record_leads)}; --lead {override!r} "
                                "is not one of them")
        return [canon.index(c)] * len(wanted)
    out, missing = [], []
    for w in wanted:
        cw = canonical_lead(w)
        names = (cw, *LEAD_ALIASES.get(cw, ()))
        pos = next((canon.index(a) for a in names if a in canon), None)
        if pos is None:
            missing.append(w)
        out.append(pos)
    if missing:
        accepted = "; ".join(f"for {m}: {', '.join(LEAD_ALIASES.get(canonical_lead(m), (m,)))}"
                             for m in missing[:3])
        hint = "; --lead NAME picks a record lead" if len(wanted) == 1 else ""
        raise PipelineError(f"record {rec} has leads {list(record_leads)}; the model needs "
                            f"{list(wanted)} (no lead matches {missing}; names accepted "
                            f"{accepted}{hint})")
    return [int(p) for p in out]


def mv_factors(units: list[str] | tuple[str, ...], rec: str) -> np.ndarray:
    """Per-lead factor from the record's units to mV."""
    out = []
    for j, u in enumerate(units):
        f = MV_PER_UNIT.get(str(u or "mV").strip().lower())
        if f is None:
            raise PipelineError(f"record {rec}: lead {j} has units {u!r}; the model needs mV "
                                "(mV, uV or V are converted)")
        out.append(f)
    return np.asarray(out, np.float64)


def to_mv(x: np.ndarray, units: list[str] | tuple[str, ...], rec: str) -> np.ndarray:
    """Signals in mV (the unit every model was trained in); mV, uV and V are accepted."""
    return np.asarray(x, np.float64) * mv_factors(units, rec)[None, :]


def leads_in_mv(rec: Recording, idx: list[int]) -> np.ndarray:
    """(n, len(idx)) of the recording's leads ``idx`` in mV."""
    return to_mv(rec.signal[:, idx], [rec.units[i] for i in idx], rec.name)


# ------------------------------------------------------------------------------ quality


def check_rate(fs_hz: float, rec: str) -> None:
    """Refuses a sampling rate below :data:`MIN_FS_HZ`."""
    if not fs_hz >= MIN_FS_HZ:
        raise PipelineError(f"record {rec}: sampling rate {fs_hz:g} Hz is below {MIN_FS_HZ:g} Hz "
                            "(too low to resolve a QRS complex)")


def check_length(n_samples: int, fs_hz: float, window_s: float, rec: str) -> None:
    """Refuses a recording shorter than one model window."""
    if n_samples / fs_hz < window_s - 1e-9:
        raise PipelineError(f"record {rec}: {n_samples / fs_hz:.3g} s long, shorter than one "
                            f"model window ({window_s:.3g} s); nothing to predict")


def lead_problem(col: np.ndarray) -> str:
    """``all NaN`` or ``flat (constant ... over the whole record)`` for a useless lead, else ''."""
    finite = col[np.isfinite(col)]
    if not len(finite):
        return "all NaN (no valid sample)"
    if float(finite.max()) == float(finite.min()):
        return f"flat (constant {float(finite[0]):g} over the whole record)"
    return ""


def check_signal(x: np.ndarray, names: list[str], rec: str, require: str = "each") -> None:
    """Refuses leads that are all NaN or constant: ``each`` lead must be usable (classifiers),
    or ``any`` of them (denoisers).

    Raises:
        PipelineError: naming the record, the leads and what is wrong with them.
    """
    problems = {str(names[j]): lead_problem(x[:, j]) for j in range(x.shape[1])}
    bad = {k: v for k, v in problems.items() if v}
    if bad and (require == "each" or len(bad) == len(problems)):
        what = "; ".join(f"lead {k} is {v}" for k, v in bad.items())
        raise PipelineError(f"record {rec}: {what}; nothing to predict")


def quality_spans(x: np.ndarray, fs: float, lead_names: list[str], flat_s: float = 1.0) -> list[dict]:
    """NaN runs (any length) and flat runs (the same value for more than ``flat_s``) per lead.

    Args:
        x: (n, n_leads) signal at ``fs`` Hz.

    Returns:
        One dict per span: lead, kind (``nan`` or ``flat``), start and end sample (end
        exclusive) and seconds.
    """
    spans = []
    min_flat = max(2, int(math.floor(flat_s * fs)) + 1)
    for j in range(x.shape[1]):
        col = x[:, j]
        nan = np.isnan(col)
        same = np.zeros(len(col), bool)
        if len(col) > 1:
            eq = (col[1:] == col[:-1]) & ~nan[1:] & ~nan[:-1]
            same[1:] |= eq
            same[:-1] |= eq
        for kind, mask, min_len in (("nan", nan, 1), ("flat", same, min_flat)):
            for a, b in _span_parts(col, kind, mask):
                if b - a >= min_len:
                    spans.append({"lead": str(lead_names[j]), "kind": kind,
                                  "start_sample": int(a), "end_sample": int(b),
                                  "start_s": round(a / fs, 4), "end_s": round(b / fs, 4)})
    return spans


def _span_parts(col: np.ndarray, kind: str, mask: np.ndarray) -> list[tuple[int, int]]:
    parts = []
    for s, e in _runs(mask):
        if kind == "flat":  # a run of equal neighbours can hold several plateaus; split at changes
            seg = col[s:e]
            bounds = [s, *(s + np.flatnonzero(seg[1:] != seg[:-1]) + 1), e]
            parts += list(zip(bounds[:-1], bounds[1:], strict=True))
        else:
            parts.append((s, e))
    return parts


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist(), strict=True))


def bad_mask(spans: list[dict], n_out: int, fs_in: float, fs_out: float) -> np.ndarray:
    """Boolean mask at ``fs_out`` of every sample inside a quality span (any lead)."""
    m = np.zeros(n_out, bool)
    for sp in spans:
        a = int(math.floor(sp["start_sample"] * fs_out / fs_in))
        b = int(math.ceil(sp["end_sample"] * fs_out / fs_in))
        m[max(0, a) : min(n_out, b)] = True
    return m


def quality_report(spans: list[dict]) -> dict:
    """The ``quality`` block of a summary: the spans and their total seconds per kind."""
    return {"spans": spans,
            "nan_s": round(sum(s["end_s"] - s["start_s"] for s in spans if s["kind"] == "nan"), 4),
            "flat_s": round(sum(s["end_s"] - s["start_s"] for s in spans if s["kind"] == "flat"), 4)}


def input_info(rec: Recording) -> dict[str, Any]:
    """Where the recording came from, for the summary."""
    return {"input": str(rec.path), "input_format": rec.source, "fs_hz": rec.fs_hz,
            "duration_s": round(rec.duration_s, 3)}
