"""A denoiser run's pass-through gate, chosen on validation patients only.

:func:`tune_gate` scores the run's best checkpoint alone and followed by every gate of
:data:`pipeline.evaluation.pass_through.GRID` (threshold, width, the optional limit on the
removed part's flatness and the optional white-noise low-pass) on the validation records of the run's own
split, with noise from the ``val`` segment of the NSTDB records (the windows and noise the
checkpoint was chosen on). The objective is the one the checkpoint was chosen by: the mean
SNR improvement over every noise type and input level of ``noise.eval_snr_db``, 24 dB
included, so a gate is kept only if what it saves on near-clean input outweighs what it costs
on noisy input. "No gate" is a candidate too. The test split is never read.

When the run's config high-passes the recording before the model
(``windows.denoise_highpass_hz > 0``, the default), the gates are scored on the chain
``pipeline.predict`` runs (:class:`pipeline.evaluation.evaluate.ServedChain`: the model sees
the reference plus the high-passed noise), since that is where the gate is applied; the gate
file then says ``"input": "served"``. Runs tuned before this (no ``input`` key) were tuned on
the unfiltered noisy windows.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pipeline.core.io_utils import atomic_write_json, atomic_write_text
from pipeline.evaluation import pass_through
from pipeline.protocol.filter_tuning import mean_improvement
from pipeline.protocol.run_settings import RunSettings

log = logging.getLogger("ecg.gate_tuning")


def validation_denoiser(settings: RunSettings, max_windows: int) -> tuple[Any, ...]:
    """``(model, mean, scale, files, include)``: a denoiser run's best checkpoint, its
    normalization and its validation files with about ``max_windows`` windows each cell
    (0: all), the windows its checkpoint was chosen on."""
    from pipeline.data import normalization
    from pipeline.training import run_folder
    from pipeline.training.sampling import subsample_masks
    from pipeline.training.trainer import load_best_model

    cfg, task = settings.cfg, settings.task
    model = load_best_model(settings.run_dir)
    mean, scale = normalization.load(settings.run_dir / "normalization.json", task.kind,
                                     normalization.n_channels(task.kind, cfg, task.rr_channels))
    sf = run_folder.split_files(cfg, task, settings.split)
    include = subsample_masks(sf.val, cfg, "denoise", max_windows, cfg.eval.seed, sf.include_val)
    return model, mean, scale, sf.val, include


def tune_gate(settings: RunSettings, max_windows: int) -> dict[str, Any]:
    """Every gate (and none) on about ``max_windows`` validation windows per cell (0: all).

    Returns:
        ``{"chosen": {"threshold_db", "width_db"} or None, "grid": [...], "no_gate_val_mean_snr_imp_db",
        "input" ("served" or "noisy"), "highpass_hz", "val_records", "noise_part", "n_windows",
        "results"}``.
    """
    from pipeline.data import noise
    from pipeline.evaluation.evaluate import ServedChain, evaluate_denoiser

    cfg, task = settings.cfg, settings.task
    model, mean, scale, files, include = validation_denoiser(settings, max_windows)
    gates = [pass_through.GateSetting(t, w, f, lp) for t, w, f, lp in pass_through.GRID]
    hz, fs = cfg.windows.denoise_highpass_hz, cfg.windows.denoise_fs_hz
    posts = pass_through.GateBank(gates, fs).posts()  # features shared by every gate
    served = (ServedChain(hz, f"{model.name}+hp", {f"hp+{n}": g for n, g in posts.items()})
              if hz > 0 else None)
    out = evaluate_denoiser(model, files, cfg, task, mean, scale, part="val",
                            noise_types=cfg.noise.types, snr_dbs=cfg.noise.eval_snr_db,
                            include=include, served=served, post=None if served else posts,
                            noise_records=noise.load_noise(cfg))
    res = out["results"]
    base, prefix = (served.name, "hp+") if served else (model.name, "")
    rows = [{**g.to_json(), "val_mean_snr_imp_db": mean_improvement(res[prefix + g.name])}
            for g in gates]
    no_gate = mean_improvement(res[base])
    best = max(rows, key=lambda r: r["val_mean_snr_imp_db"])  # ties: the first, the simplest
    chosen = ({k: v for k, v in best.items() if k != "val_mean_snr_imp_db"}
              if best["val_mean_snr_imp_db"] > no_gate else None)
    keep = {model.name: res[model.name]} | ({base: res[base]} if served else {})
    if chosen is not None:
        keep[f"{base}+gate"] = res[prefix + pass_through.GateSetting(**chosen).name]
    first = res[model.name][cfg.noise.types[0]][f"{cfg.noise.eval_snr_db[0]:g}"]
    return {"chosen": chosen, "grid": rows, "no_gate_val_mean_snr_imp_db": no_gate,
            "input": "served" if served else "noisy", "highpass_hz": hz if served else 0.0,
            "val_records": list(settings.split.val), "noise_part": "val",
            "n_windows": int(first["snr_imp_db"]["n"]), "results": keep}


def write_report(res: dict[str, Any], run_dir: Path) -> Path:
    """:data:`pipeline.evaluation.pass_through.GATE_FILE` and ``gate_tuning.md`` in the run."""
    from pipeline.evaluation.evaluate import denoise_table

    path = Path(run_dir) / pass_through.GATE_FILE
    atomic_write_json(path, {k: v for k, v in res.items() if k != "results"})
    rows = sorted(res["grid"], key=lambda r: -r["val_mean_snr_imp_db"])
    lines = ["# Pass-through gate: chosen on validation patients", "",
             f"Validation records {', '.join(res['val_records'])}; noise from the "
             f"`{res['noise_part']}` segment; {res['n_windows']} windows per cell. Objective: "
             "mean SNR improvement over every noise type and input level. Gates scored on "
             + ("the chain predict runs (the recording high-passed at "
                f"{res['highpass_hz']:g} Hz, then the model)" if res.get("input") == "served"
                else "the model's output on the unfiltered noisy windows") + ".", "",
             f"Chosen: `{res['chosen']}`; the model alone scores "
             f"{res['no_gate_val_mean_snr_imp_db']:+.2f} dB on the same windows.", "",
             "| threshold (dB) | width (dB) | max flatness | white low-pass (Hz) | mean SNR "
             "improvement (dB) |", "|---|---|---|---|---|"]
    lines += [f"| {r['threshold_db']:g} | {r['width_db']:g} | {r.get('max_flatness') or '-'} | "
              f"{r.get('white_lowpass_hz') or '-'} | {r['val_mean_snr_imp_db']:+.2f} |"
              for r in rows]
    lines += ["", "## The model with and without the chosen gate, per cell", "",
              denoise_table(res["results"]), ""]
    atomic_write_text(Path(run_dir) / "gate_tuning.md", "\n".join(lines))
    return path
