"""Exploration on validation patients only: filter-then-model and model-then-filter chains
around the 150-min unet1d (the weights of the preset nstdb_unet1d_gated), against the model
alone and with its gate. Same windows, noise segment (`val`) and objective as tune_gate.

    .venv/bin/python Research_Runs/2026-12-04_denoise_chain_exploration/explore.py
"""
import json
import sys
from pathlib import Path

import numpy as np
from scipy import signal

from pipeline.core.config import load_config
from pipeline.data import noise, normalization
from pipeline.evaluation import pass_through
from pipeline.evaluation.evaluate import denoise_table, evaluate_denoiser
from pipeline.protocol.filter_tuning import mean_improvement
from pipeline.protocol.run_settings import load_run_settings
from pipeline.training import run_folder
from pipeline.training.checkpoints import load_model_file
from pipeline.training.sampling import subsample_masks

RUN = Path("Research_Runs/2026-12-03_mitdb_denoise_unet1d_msemae_finetune_cpu150min")
# the 150-min weights (the preset's before session 11's served-input weights replaced them),
# restored as in Research_Runs/2026-12-04_mitdb_denoise_unet1d_served_chain/NOTES.md from
# `git show 5bae8c1:models/presets/nstdb_unet1d_gated/model.keras`
PRESET = Path("Research_Runs/2026-12-04_mitdb_denoise_unet1d_served_chain/checkpoints/best.keras")
MODE = sys.argv[1] if len(sys.argv) > 1 else "first"
OUT = Path(__file__).parent / MODE
MAX_WINDOWS = 300
CUTOFFS = (0.3, 0.5, 0.7)
GATES = [(t, w) for t in (14.0, 16.0, 18.0, 20.0, 22.0, 24.0) for w in (1.0, 2.0, 4.0)]


def hp(x, c, fs, order=2):
    sos = signal.butter(order, c, btype="highpass", fs=fs, output="sos")
    return signal.sosfiltfilt(sos, np.asarray(x, np.float64), axis=1, padtype="even",
                              padlen=x.shape[1] - 1).astype(np.float32)


def first_candidates(run_model, fs, gate):
    post = {"gate": gate.post()}
    for c in (0.3, 0.5, 0.7, 1.0):
        post[f"model>hp{c:g}"] = lambda n, d, c=c: hp(d, c, fs)
        post[f"gate>hp{c:g}"] = lambda n, d, c=c: hp(pass_through.apply(n, d, gate), c, fs)
    filters = {}
    for c in CUTOFFS:
        filters[f"hp{c:g}>model"] = lambda n, f, c=c: run_model(hp(n, c, fs))
        filters[f"hp{c:g}>model>gate"] = (
            lambda n, f, c=c: pass_through.apply(hp(n, c, fs), run_model(hp(n, c, fs)), gate))
    return post, filters


def rawgate_candidates(run_model, fs, gate):
    cache = {}

    def model_after_hp(n, c):
        if cache.get("n") is not n:  # a new batch: drop the old outputs
            cache.clear()
            cache["n"] = n
        if c not in cache:
            cache[c] = run_model(hp(n, c, fs))
        return cache[c]

    filters = {}
    for c in CUTOFFS:
        filters[f"hp{c:g}>model"] = lambda n, f, c=c: model_after_hp(n, c)
        for t, w in GATES:
            g = pass_through.GateSetting(t, w)
            # the gate compares the model's output with the raw input and passes the raw input
            filters[f"hp{c:g}>model>rawgate_t{t:g}_w{w:g}"] = (
                lambda n, f, c=c, g=g: pass_through.apply(n, model_after_hp(n, c), g))
    return {"gate": gate.post()}, filters


def main():
    cfg = load_config(None)
    settings = load_run_settings(RUN, cfg, ["data.ptbxl_max_records=500"])
    cfg, task = settings.cfg, settings.task
    model = load_model_file(PRESET)
    mean, scale = normalization.load(RUN / "normalization.json", task.kind,
                                     normalization.n_channels(task.kind, cfg, task.rr_channels))
    fs = cfg.windows.denoise_fs_hz
    gate = pass_through.GateSetting(20.0, 4.0)
    sf = run_folder.split_files(cfg, task, settings.split)
    include = subsample_masks(sf.val, cfg, "denoise", MAX_WINDOWS, cfg.eval.seed, sf.include_val)

    def run_model(x):
        return np.asarray(model.predict_on_batch((x - mean) / scale)) * scale + mean

    make = {"first": first_candidates, "rawgate": rawgate_candidates}[MODE]
    post, filters = make(run_model, fs, gate)
    out = evaluate_denoiser(model, sf.val, cfg, task, mean, scale, part="val",
                            noise_types=cfg.noise.types, snr_dbs=cfg.noise.eval_snr_db,
                            include=include, post=post, filters=filters,
                            classic=("bandpass",), noise_records=noise.load_noise(cfg))
    res = out["results"]
    scores = {m: mean_improvement(r) for m, r in res.items()}
    OUT.mkdir(exist_ok=True)
    (OUT / "scores.json").write_text(json.dumps({"val_records": list(settings.split.val),
                                                 "max_windows": MAX_WINDOWS,
                                                 "val_mean_snr_imp_db": scores}, indent=1))
    lines = ["# Chains around the 150-min unet1d, validation patients only", "",
             "| method | mean SNR improvement over every type and level (dB) |", "|---|---|"]
    lines += [f"| {m} | {s:+.2f} |" for m, s in sorted(scores.items(), key=lambda kv: -kv[1])]
    lines += ["", denoise_table(res), ""]
    (OUT / "results.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
