"""Would a low-pass after the model, on the windows whose removed part is white (and whose
estimated input SNR is below a limit), win the Gaussian cells? Validation patients only (records 101, 106, 114, 122, 207, the `val` noise
segment, 300 windows per cell), the served chain of the snr_db run, no test read.

    PYTHONPATH=. .venv/bin/python Research_Runs/2026-12-04_white_noise_postfilter_exploration/explore.py
"""
import json
import math
from pathlib import Path

import numpy as np

from pipeline.core.config import load_config
from pipeline.data import noise
from pipeline.data.loader import create_dataset
from pipeline.data.served import served_input
from pipeline.evaluation import classic_filters, pass_through
from pipeline.protocol.gate_tuning import validation_denoiser
from pipeline.protocol.run_settings import load_run_settings

RUN = Path("Research_Runs/2026-12-04_mitdb_denoise_unet1d_served_snrdb_cpu40min")
OUT = Path(__file__).parent
CUTOFFS_HZ = (40.0, 50.0, 60.0, 70.0)
MAX_EST_SNR_DB = (15.0, 20.0, 25.0, float("inf"))


def snr_db(ref, x):
    return 10 * np.log10(np.sum(ref ** 2, axis=(1, 2)) / np.maximum(np.sum((x - ref) ** 2, axis=(1, 2)), 1e-20))


def main():
    settings = load_run_settings(RUN, load_config(None), ["data.ptbxl_max_records=500"])
    cfg, task = settings.cfg, settings.task
    model, mean, scale, files, include = validation_denoiser(settings, 300)
    gate = pass_through.load(RUN)
    fs, hz = cfg.windows.denoise_fs_hz, cfg.windows.denoise_highpass_hz
    loaded = noise.load_noise(cfg)
    table = {}
    for nt in cfg.noise.types:
        for snr in (*cfg.noise.eval_snr_db, float("inf")):
            fn = noise.make_noise_fn(cfg, nt, snr, "val", noise=loaded)
            ds = create_dataset(files, cfg, 128, False, None, None, task=task, noise_fn=fn,
                                include=include, check=False)
            acc = {}
            for noisy, clean in ds:
                noisy, clean = noisy.numpy(), clean.numpy()
                xin = served_input(noisy, clean, hz, fs)
                den = np.asarray(model.predict_on_batch((xin - mean) / scale)) * scale + mean
                gated = pass_through.apply(xin, den, gate)
                white = (pass_through.removed_flatness(xin, den) > gate.max_flatness).any(axis=1)
                est = pass_through.estimated_input_snr_db(xin, den).min(axis=1)
                outs = {"bandpass": classic_filters.bandpass(noisy, fs), "chain": gated}
                for c in CUTOFFS_HZ:
                    lp = pass_through.white_lowpass(gated.astype(np.float64), c, fs)
                    for t in MAX_EST_SNR_DB:
                        flag = white & (est < t)
                        outs[f"lp{c:g}_est<{t:g}"] = np.where(flag[:, None, None], lp, gated)
                base = 0.0 if math.isinf(snr) else snr_db(clean, noisy)  # clean: output SNR
                for k, v in outs.items():
                    acc.setdefault(k, []).extend((snr_db(clean, v) - base).tolist())
                acc.setdefault("white_share", []).extend(white.astype(float).tolist())
            label = "clean" if math.isinf(snr) else f"{snr:g}"
            table[f"{nt} {label}"] = {k: float(np.mean(v)) for k, v in acc.items()}
            print(nt, label, {k: round(v, 2) for k, v in table[f"{nt} {label}"].items()}, flush=True)
    (OUT / "cells_val.json").write_text(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
