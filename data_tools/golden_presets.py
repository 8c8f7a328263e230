"""Golden outputs of every preset, which ``tests/test_presets.py`` reproduces.

``python -m data_tools.golden_presets [--presets-dir DIR] [--out DIR] [--only NAME]``
writes ``tests/golden/presets/<name>.json`` for every preset (``models/presets/`` or
``$ECG_PRESETS_DIR``). Each file says how it was made (this command, the preset's
``model.keras`` sha256, the inputs) and holds, by task:

* beat classifiers: ``mitdb_100``: class probabilities of the first :data:`N_BEATS` beats
  of mirror record 100 (its ``.atr`` beats); ``synthetic_250hz_{csv,edf,npy}``: one seeded
  synthetic two-lead record (:mod:`data_tools.synthetic`, 30 s) resampled to 250 Hz and
  written as CSV, EDF and NumPy, beats found by XQRS; the three must give the same beats
  and classes;
* denoisers: ``synthetic_noisy_360hz`` (and ``..._one_lead``): a seeded synthetic record
  with white noise at :data:`NOISY_SNR_DB` dB; input and output SNR against the high-passed
  clean signal (the output is baseline-free) and a few output samples;
* the PTB-XL classifier: ``ptbxl_00001``: record and window probabilities of mirror record
  ``records100/00000/00001_lr``; ``synthetic_12lead_500hz``: a seeded 12-lead array.

The mirror is ``$ECG_MIRROR`` (a folder) or ``../shared/data`` beside the repository, as in
``tests/conftest.py``; without it the mirror cases are left out (and the test skips them).
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GOLDEN_DIR = ROOT / "tests" / "golden" / "presets"
COMMAND = "python -m data_tools.golden_presets"
N_BEATS = 50
PROB_ATOL = 1e-5
"""Probabilities and samples must be reproduced to this absolute difference."""
DB_ATOL = 1e-3
"""SNR values (keys ending in ``_db``) to this difference in dB."""
SYNTH = {"seed": 7, "duration_s": 30.0, "fs_hz": 250}
NOISY = {"seed": 11, "duration_s": 20.0}
NOISY_SNR_DB = 6.0
PTBXL_RECORD = "ptbxl/records100/00000/00001_lr"
MITDB_RECORD = "mitdb/100"
MIRROR_CASES = ("mitdb_100", "ptbxl_00001")


def mirror_dir() -> Path | None:
    """The local PhysioNet mirror ($ECG_MIRROR if it is a folder, else ../shared/data)."""
    env = os.environ.get("ECG_MIRROR", "")
    for cand in (Path(env) if env and "://" not in env else None, ROOT.parent / "shared" / "data"):
        if cand is not None and (cand / "mitdb" / "SHA256SUMS.txt").is_file():
            return cand
    return None


def write_edf(path: Path, x: np.ndarray, fs: int, labels: list[str], gain: float = 200.0) -> Path:
    """A minimal EDF file: 1 s data records, int16 = round(x * gain) (ADC units per mV)."""
    n_rec = int(math.ceil(len(x) / fs))
    d = np.zeros((n_rec * fs, x.shape[1]), np.int16)
    d[: len(x)] = np.round(x * gain).astype(np.int16)
    ns = len(labels)

    def f(v: Any, w: int) -> str:
        return str(v)[:w].ljust(w)

    h = (f("0", 8) + f("X X X X", 80) + f("Startdate 01-JAN-2000 X X X", 80) + f("01.01.00", 8)
         + f("00.00.00", 8) + f(256 * (ns + 1), 8) + f("", 44) + f(n_rec, 8) + f(1, 8) + f(ns, 4))
    for vals, w in ((labels, 16), ([""] * ns, 80), (["mV"] * ns, 8), ([f"{-32768 / gain:g}"] * ns, 8),
                    ([f"{32767 / gain:g}"] * ns, 8), (["-32768"] * ns, 8), (["32767"] * ns, 8),
                    ([""] * ns, 80), ([fs] * ns, 8), ([""] * ns, 32)):
        h += "".join(f(v, w) for v in vals)
    blocks = d.reshape(n_rec, fs, ns).transpose(0, 2, 1).reshape(n_rec, -1)
    path.write_bytes(h.encode("ascii") + blocks.astype("<i2").tobytes())
    return path


def synthetic_files(folder: Path) -> dict[str, tuple[Path, dict]]:
    """The seeded 250 Hz synthetic record as CSV, EDF and NPY, with the predict arguments
    each needs (samples are multiples of 1/200 mV, so all three hold the same values)."""
    import wfdb

    from data_tools import synthetic

    synthetic.write_record(folder, "synth250", seed=SYNTH["seed"], duration_s=SYNTH["duration_s"],
                           fs_hz=SYNTH["fs_hz"])
    x = wfdb.rdrecord(str(folder / "synth250")).p_signal
    fs = SYNTH["fs_hz"]
    csv = folder / "synth250.csv"
    np.savetxt(csv, x, delimiter=",", header="II,V1", comments="", fmt="%.3f")
    npy = folder / "synth250.npy"
    np.save(npy, x)
    return {"csv": (csv, {"fs": fs}),
            "edf": (write_edf(folder / "synth250.edf", x, fs, ["ECG1", "ECG2"]), {}),
            "npy": (npy, {"fs": fs, "leads": ("MLII", "V1")})}


def _num(v: Any) -> Any:
    return None if v is None or not np.isfinite(v) else round(float(v), 8)


def beat_case(result: Any, n: int | None = None) -> dict:
    """The first ``n`` beats (all: None) of a beat classifier's result."""
    b = result.beats
    k = len(b.sample) if n is None else min(n, len(b.sample))
    hat = b.predicted[:k]
    return {"beats_from": b.source, "n_beats_total": int(len(b.sample)),
            "sample": [int(s) for s in b.sample[:k]],
            "predicted": [b.classes[i] if i >= 0 else None for i in hat],
            "probabilities": [[_num(v) for v in row] for row in b.probs[:k]]}


def _snr_db(ref: np.ndarray, est: np.ndarray) -> float:
    ok = np.isfinite(est).all(axis=1)
    return float(10 * np.log10(np.sum(ref[ok] ** 2) / np.sum((est[ok] - ref[ok]) ** 2)))


def denoise_cases(preset: Any) -> dict:
    """Input and output SNR of the preset on a seeded noisy synthetic record (2 leads and 1)."""
    from data_tools import synthetic
    from pipeline.data.signal import highpass
    from pipeline.serving.predict_denoise import denoise_signal

    rng = np.random.default_rng(NOISY["seed"])
    clean, _, _ = synthetic.synth_signal(["N", "N", "V", "N", "A", "N"], rng, NOISY["duration_s"])
    fs = float(synthetic.FS_HZ)
    hp = preset.run.cfg.windows.denoise_highpass_hz
    ref = highpass(clean, hp, fs) if hp > 0 else clean
    noise = rng.standard_normal(clean.shape)
    noise *= np.sqrt(np.sum(ref**2, axis=0) / np.sum(noise**2, axis=0) / 10 ** (NOISY_SNR_DB / 10))
    noisy = clean + noise
    noisy_ref = highpass(noisy, hp, fs) if hp > 0 else noisy
    out = {}
    for key, cols in (("synthetic_noisy_360hz", [0, 1]), ("synthetic_noisy_360hz_one_lead", [0])):
        y = denoise_signal(preset.run, noisy[:, cols], fs)
        out[key] = {"fs_hz": fs, "leads": len(cols), "input_snr_db": NOISY_SNR_DB,
                    "snr_in_db": round(_snr_db(ref[:, cols], noisy_ref[:, cols]), 6),
                    "snr_out_db": round(_snr_db(ref[:, cols], y), 6),
                    "samples_3600_3610": [[_num(v) for v in row] for row in y[3600:3610]]}
    return out


def ptbxl_case(result: Any) -> dict:
    s = result.summary
    return {"probabilities": s["probabilities"],
            "windows": [w["probabilities"] for w in s["windows"]]}


def synthetic_cases(preset: Any) -> dict:
    """The cases that need no mirror."""
    task = preset.run.task
    if task.denoising:
        return denoise_cases(preset)
    if task.kind == "ptbxl":
        from pipeline.serving.predict_records import PTBXL_LEADS

        rng = np.random.default_rng(5)
        x = np.cumsum(rng.standard_normal((5000, 12)), axis=0) * 0.002
        return {"synthetic_12lead_500hz": ptbxl_case(
            preset.predict_record(x, fs=500.0, leads=PTBXL_LEADS))}
    with tempfile.TemporaryDirectory() as tmp:
        files = synthetic_files(Path(tmp))
        return {f"synthetic_250hz_{kind}": beat_case(preset.predict_record(path, **kw))
                for kind, (path, kw) in files.items()}


def mirror_cases(preset: Any, mirror: Path) -> dict:
    """The cases read from the PhysioNet mirror."""
    task = preset.run.task
    if task.denoising:
        return {}
    if task.kind == "ptbxl":
        return {"ptbxl_00001": ptbxl_case(preset.predict_record(mirror / PTBXL_RECORD))}
    return {"mitdb_100": beat_case(preset.predict_record(mirror / MITDB_RECORD), N_BEATS)}


def consistency_problems(cases: dict) -> list[str]:
    """The CSV, EDF and NPY copies of the synthetic record must give the same beats and classes."""
    keys = [k for k in cases if k.startswith("synthetic_250hz_")]
    out = []
    for k in keys[1:]:
        for field in ("sample", "predicted"):
            if cases[k][field] != cases[keys[0]][field]:
                out.append(f"{k} and {keys[0]} differ in {field}")
    return out


def compare(expected: Any, got: Any, where: str = "") -> list[str]:
    """Differences between a stored and a reproduced case (numbers to :data:`PROB_ATOL`,
    ``*_db`` values to :data:`DB_ATOL`, everything else exactly)."""
    if isinstance(expected, dict) and isinstance(got, dict):
        if set(expected) != set(got):
            return [f"{where}: keys {sorted(expected)} != {sorted(got)}"]
        return [p for k in expected for p in compare(expected[k], got[k], f"{where}.{k}")]
    if isinstance(expected, list) and isinstance(got, list):
        if len(expected) != len(got):
            return [f"{where}: {len(expected)} items stored, {len(got)} reproduced"]
        return [p for i, (e, g) in enumerate(zip(expected, got, strict=True))
                for p in compare(e, g, f"{where}[{i}]")]
    numbers = (int, float)
    if isinstance(expected, numbers) and isinstance(got, numbers) and not isinstance(expected, bool):
        tol = DB_ATOL if where.split(".")[-1].split("[")[0].endswith("_db") else PROB_ATOL
        return [] if abs(float(expected) - float(got)) <= tol else [f"{where}: {expected} != {got}"]
    return [] if expected == got else [f"{where}: {expected!r} != {got!r}"]


def make_golden(preset: Any, mirror: Path | None) -> dict:
    """The golden file content of one preset."""
    cases = synthetic_cases(preset)
    if mirror is not None:
        cases.update(mirror_cases(preset, mirror))
    problems = consistency_problems(cases)
    if problems:
        from pipeline.core.io_utils import PipelineError

        raise PipelineError(f"preset {preset.name}: {problems[0]}")
    return {"preset": preset.name, "task": preset.card["task"],
            "model_sha256": preset.card["model_file"]["sha256"],
            "made_by": f"{COMMAND} (data_tools/golden_presets.py)",
            "created": dt.datetime.now().isoformat(timespec="seconds"),
            "inputs": {"synthetic": {**SYNTH, "generator": "data_tools.synthetic.write_record"},
                       "noisy": {**NOISY, "snr_db": NOISY_SNR_DB, "noise": "white, seeded"},
                       "mirror": None if mirror is None else [MITDB_RECORD, PTBXL_RECORD],
                       "first_beats": N_BEATS},
            "tolerance": {"abs": PROB_ATOL, "db": DB_ATOL}, "cases": cases}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=COMMAND, description="Regenerate the golden outputs of "
                                "every preset (tests/golden/presets/<name>.json).")
    p.add_argument("--presets-dir", default=None, help="presets folder (default: models/presets "
                   "or $ECG_PRESETS_DIR)")
    p.add_argument("--out", default=str(GOLDEN_DIR), help="output folder")
    p.add_argument("--only", default=None, help="one preset name")
    return p


def main(argv: list[str] | None = None) -> int:
    from pipeline.core.io_utils import PipelineError, atomic_write_json
    from pipeline.serving import presets

    args = build_parser().parse_args(argv)
    names = [args.only] if args.only else presets.list_presets(args.presets_dir)
    if not names:
        raise PipelineError(f"no presets in {presets.presets_dir(args.presets_dir)}")
    mirror = mirror_dir()
    if mirror is None:
        print("warning: PhysioNet mirror not found; mirror cases left out", file=sys.stderr)
    for name in names:
        preset = presets.load_preset(name, args.presets_dir)
        golden = make_golden(preset, mirror)
        atomic_write_json(Path(args.out) / f"{name}.json", golden)
        print(f"{name}: {len(golden['cases'])} cases -> {Path(args.out) / f'{name}.json'}")
    return 0


if __name__ == "__main__":
    from pipeline.core.io_utils import run_cli

    sys.exit(run_cli(main))
