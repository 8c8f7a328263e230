"""Exploration on validation patients only: which per-window features tell when the
pass-through gate should pass (served chain of the preset nstdb_unet1d_gated's run)?

Per validation window (records 101, 106, 114, 122, 207; `val` noise segment; every noise type
and level of noise.eval_snr_db plus clean): the model's served input and output, the gain of
the model over passing the input through (dB), and candidate features: the estimated input SNR
of the gate, and the spectral flatness / high-frequency fraction of the removed part.

    PYTHONPATH=. .venv/bin/python Research_Runs/2026-12-04_gate_features_exploration/explore.py
"""
import json
import math
from pathlib import Path

import numpy as np

from pipeline.core.config import load_config
from pipeline.data import noise, normalization
from pipeline.data.loader import create_dataset
from pipeline.data.served import served_input
from pipeline.evaluation import pass_through
from pipeline.protocol.run_settings import load_run_settings
from pipeline.training import run_folder
from pipeline.training.checkpoints import load_best_model
from pipeline.training.sampling import subsample_masks

RUN = Path("Research_Runs/2026-12-04_mitdb_denoise_unet1d_served_train_cpu40min")
OUT = Path(__file__).parent


def snr_db(ref, x):
    return 10 * np.log10(np.sum(ref ** 2, axis=(1, 2)) / np.maximum(np.sum((x - ref) ** 2, axis=(1, 2)), 1e-20))


def features(xin, den, fs):
    removed = xin - den
    spec = np.abs(np.fft.rfft(removed, axis=1)) ** 2 + 1e-20  # (n, F, C)
    f = np.fft.rfftfreq(xin.shape[1], 1 / fs)
    flat = np.exp(np.mean(np.log(spec), axis=1)) / np.mean(spec, axis=1)
    hf = spec[:, f > 40].sum(axis=1) / spec.sum(axis=1)
    est = pass_through.estimated_input_snr_db(xin, den)
    return {"est_snr_db": est.mean(axis=1), "flatness": flat.mean(axis=1), "hf_fraction": hf.mean(axis=1)}


def main():
    settings = load_run_settings(RUN, load_config(None), ["data.ptbxl_max_records=500"])
    cfg, task = settings.cfg, settings.task
    model = load_best_model(RUN)
    mean, scale = normalization.load(RUN / "normalization.json", task.kind,
                                     normalization.n_channels(task.kind, cfg, task.rr_channels))
    fs, hz = cfg.windows.denoise_fs_hz, cfg.windows.denoise_highpass_hz
    sf = run_folder.split_files(cfg, task, settings.split)
    include = subsample_masks(sf.val, cfg, "denoise", 300, cfg.eval.seed, sf.include_val)
    loaded = noise.load_noise(cfg)
    rows = []
    for nt in cfg.noise.types:
        for snr in (*cfg.noise.eval_snr_db, float("inf")):
            fn = noise.make_noise_fn(cfg, nt, snr, "val", noise=loaded)
            ds = create_dataset(sf.val, cfg, 128, False, None, None, task=task, noise_fn=fn,
                                include=include, check=False)
            for noisy, clean in ds:
                noisy, clean = noisy.numpy(), clean.numpy()
                xin = served_input(noisy, clean, hz, fs)
                den = np.asarray(model.predict_on_batch((xin - mean) / scale)) * scale + mean
                gain = snr_db(clean, den) - snr_db(clean, xin)
                feats = features(xin, den, fs)
                for i in range(len(gain)):
                    rows.append({"noise": nt, "snr": "clean" if math.isinf(snr) else f"{snr:g}",
                                 "model_gain_over_pass_db": float(gain[i]),
                                 **{k: float(v[i]) for k, v in feats.items()}})
            print(nt, snr, len(rows), flush=True)
    (OUT / "windows_val.json").write_text(json.dumps(rows))


if __name__ == "__main__":
    main()
