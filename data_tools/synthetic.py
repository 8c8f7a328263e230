"""Seeded synthetic ECG written as real WFDB records with beat annotations.

Used by fast tests and by the offline demo source of the download stage
(``python -m pipeline.download --source synthetic``). It never stands in for the real data
in benchmarks or reported results.

Each record has two leads (``MLII``, ``V1``) at 360 Hz in WFDB format 212 and an ``atr``
annotation file. Beats of the AAMI classes have distinct morphologies and RR patterns:

* ``N`` (and ``L``/``R`` in some records): P wave, narrow QRS, T wave, regular RR;
* ``A`` (class S): premature by 30 %, small inverted P wave, normal QRS;
* ``V`` (class V): premature by 35 %, no P wave, wide tall QRS, compensatory pause;
* ``F`` (class F): fusion, a QRS between normal and ventricular;
* ``/`` (class Q): paced, a sharp pacing spike before a wide QRS.
Non-beat annotations (``+`` rhythm changes, ``~`` noise) are added too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

FS_HZ = 360
LEADS = ("MLII", "V1")

# Symbol -> (P amplitude, QRS amplitude, QRS width s, T amplitude, prematurity, pause)
_MORPH = {
    "N": (0.15, 1.0, 0.030, 0.30, 0.0, 0.0),
    "L": (0.12, 0.9, 0.055, -0.25, 0.0, 0.0),
    "R": (0.12, 0.8, 0.050, 0.20, 0.0, 0.0),
    "A": (-0.08, 0.95, 0.030, 0.28, 0.30, 0.0),
    "V": (0.0, -1.6, 0.070, 0.45, 0.35, 0.35),
    "F": (0.05, 1.3, 0.050, 0.35, 0.10, 0.05),
    "/": (0.0, 1.2, 0.060, -0.30, 0.0, 0.0),
}


def _gauss(t: np.ndarray, centre: float, width: float) -> np.ndarray:
    return np.exp(-0.5 * ((t - centre) / width) ** 2)


def synth_signal(
    symbols: list[str], rng: np.random.Generator, duration_s: float, rr_s: float = 0.8
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Synthesises a two-lead signal (mV) with beats of the given symbol cycle.

    Returns:
        signal: (n_samples, 2) float64 in mV; samples: R-peak indices; syms: beat symbols.
    """
    n = int(round(duration_s * FS_HZ))
    t = np.arange(n) / FS_HZ
    sig = np.zeros((n, 2))
    r_times, syms = [], []
    time = 0.6
    i = 0
    while True:
        sym = symbols[i % len(symbols)]
        p_amp, q_amp, q_w, t_amp, prem, pause = _MORPH[sym]
        rr = rr_s * (1.0 + 0.03 * rng.standard_normal())
        time += rr * (1.0 - prem) if i else 0.0
        if time > duration_s - 0.6:
            break
        r_times.append(time)
        syms.append(sym)
        sl = slice(max(0, int((time - 0.45) * FS_HZ)), min(n, int((time + 0.6) * FS_HZ)))
        tt = t[sl]
        beat = (
            p_amp * _gauss(tt, time - 0.16, 0.025)
            + q_amp * _gauss(tt, time, q_w / 2.5)
            - 0.15 * abs(q_amp) * _gauss(tt, time + q_w, q_w / 2.0)
            + t_amp * _gauss(tt, time + 0.28, 0.06)
        )
        if sym == "/":
            beat += 2.0 * _gauss(tt, time - 0.05, 0.002)
        sig[sl, 0] += beat
        sig[sl, 1] += 0.6 * beat[::1] * (-1 if sym in "VL" else 1)
        time += rr * pause
        i += 1
    sig += 0.05 * np.sin(2 * np.pi * 0.3 * t)[:, None]  # slow baseline wander
    sig += 0.01 * rng.standard_normal(sig.shape)
    samples = np.round(np.asarray(r_times) * FS_HZ).astype(np.int64)
    return sig, samples, syms


_RECORD_PATTERNS = [
    ["N", "N", "N", "A", "N", "N", "V", "N", "N", "N", "F"],
    ["N", "N", "V", "N", "N", "A", "N", "N"],
    ["/", "/", "/", "N", "/", "/", "F"],
    ["L", "L", "V", "L", "L", "A", "L"],
    ["R", "R", "R", "A", "R", "V", "R", "F"],
    ["N", "A", "N", "N", "V", "V", "N", "N", "N"],
]


def write_signal(out_dir: Path, name: str, signal_mv: np.ndarray, fs_hz: int = FS_HZ) -> None:
    """Writes a two-lead ``(samples, 2)`` signal in mV as ``name.hea``/``name.dat`` in MIT-BIH's
    format 212 (200 ADC units per mV, baseline 1024)."""
    import wfdb

    out_dir.mkdir(parents=True, exist_ok=True)
    wfdb.wrsamp(
        name,
        fs=fs_hz,
        units=["mV", "mV"],
        sig_name=list(LEADS),
        p_signal=signal_mv,
        fmt=["212", "212"],
        adc_gain=[200.0, 200.0],
        baseline=[1024, 1024],
        write_dir=str(out_dir),
    )


def write_record(
    out_dir: Path,
    name: str,
    seed: int,
    duration_s: float = 120.0,
    pattern: list[str] | None = None,
    fs_hz: int = FS_HZ,
) -> Path:
    """Writes one synthetic record ``name`` (.hea/.dat/.atr) into ``out_dir``."""
    import wfdb

    rng = np.random.default_rng(seed)
    pattern = pattern or _RECORD_PATTERNS[seed % len(_RECORD_PATTERNS)]
    sig, samples, syms = synth_signal(pattern, rng, duration_s)
    if fs_hz != FS_HZ:
        from scipy.signal import resample_poly

        g = np.gcd(int(fs_hz), FS_HZ)
        sig = resample_poly(sig, int(fs_hz) // g, FS_HZ // g, axis=0)
        samples = np.round(samples * fs_hz / FS_HZ).astype(np.int64)
    write_signal(out_dir, name, sig, fs_hz)
    # Non-beat annotations: a rhythm label at the start and one signal-quality mark
    # (139 ms before the first beat, 111 ms after the middle one, whatever the rate).
    before, after = round(50 * fs_hz / FS_HZ), round(40 * fs_hz / FS_HZ)
    extra_samples = [max(1, int(samples[0]) - before), int(samples[len(samples) // 2]) + after]
    all_samples = np.concatenate([samples, extra_samples])
    all_syms = list(syms) + ["+", "~"]
    aux = [""] * len(syms) + ["(N", ""]
    order = np.argsort(all_samples, kind="stable")
    wfdb.wrann(
        name,
        "atr",
        sample=all_samples[order],
        symbol=[all_syms[i] for i in order],
        aux_note=[aux[i] for i in order],
        write_dir=str(out_dir),
    )
    return out_dir / f"{name}.hea"


def write_checksums(out_dir: Path) -> Path:
    """Writes ``SHA256SUMS.txt`` (PhysioNet format) over every file in ``out_dir``."""
    import hashlib

    lines = []
    for p in sorted(out_dir.rglob("*")):
        if p.is_file() and p.name != "SHA256SUMS.txt" and not p.name.startswith("."):
            digest = hashlib.sha256(p.read_bytes()).hexdigest()
            lines.append(f"{digest} {p.relative_to(out_dir).as_posix()}")
    path = out_dir / "SHA256SUMS.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def write_synthetic_database(
    out_dir: Path, n_records: int = 4, seed: int = 0, duration_s: float = 120.0
) -> list[str]:
    """Writes ``n_records`` seeded records named ``s00``, ``s01``... plus RECORDS and checksums.

    Returns:
        The record names.
    """
    out_dir = Path(out_dir)
    names = [f"s{i:02d}" for i in range(n_records)]
    for i, name in enumerate(names):
        write_record(out_dir, name, seed=seed + i, duration_s=duration_s)
    (out_dir / "RECORDS").write_text("\n".join(names) + "\n")
    write_checksums(out_dir)
    return names
