"""The card of a preset (``preset.json``): what a finished run says about itself, gathered
into one file a user can read before trusting the model.

Owns :func:`build_card` (from a run folder: task, classes, input, source run and commit,
training data and protocol, test metrics with 95 % intervals, training budget, the training
data's licence and citation, the smoke flag), :data:`REQUIRED_FIELDS` with
:func:`card_problems` (what a complete card holds) and :func:`headline` (the one line
``--preset list`` prints). Test numbers are copied only from the run's ``metrics_test.json``,
which only the final evaluation (:mod:`pipeline.protocol.final`) writes; a run without one
gets ``"evaluated": false`` and no numbers.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from pipeline.core.config import PipelineConfig
from pipeline.core.io_utils import PipelineError, read_json
from pipeline.data.tasks import Task

CARD_VERSION = 1
NOT_EVALUATED = "not evaluated on the test split"
SMOKE_WARNING = ("smoke model: trained briefly or on a small subset to exercise the machinery; "
                 "do not use its predictions for anything else")

MITDB = {
    "dataset": "MIT-BIH Arrhythmia Database v1.0.0 (PhysioNet, DOI 10.13026/C2F305)",
    "licence": "Open Data Commons Attribution License v1.0 (ODC-By 1.0)",
    "licence_url": "https://physionet.org/content/mitdb/view-license/1.0.0/",
    "citation": [
        "Moody GB, Mark RG. The impact of the MIT-BIH Arrhythmia Database. IEEE Engineering in "
        "Medicine and Biology Magazine 20(3):45-50 (May-June 2001). PMID: 11446209.",
        "Goldberger AL, Amaral LAN, Glass L, Hausdorff JM, Ivanov PCh, Mark RG, Mietus JE, "
        "Moody GB, Peng C-K, Stanley HE. PhysioBank, PhysioToolkit, and PhysioNet: Components "
        "of a new research resource for complex physiologic signals. Circulation "
        "101(23):e215-e220 (2000).",
    ],
}
NSTDB = {
    "dataset": "MIT-BIH Noise Stress Test Database v1.0.0 (PhysioNet; bw, em, ma noise records)",
    "licence": "Open Data Commons Attribution License v1.0 (ODC-By 1.0)",
    "licence_url": "https://physionet.org/content/nstdb/view-license/1.0.0/",
    "citation": [
        "Moody GB, Muldrow WE, Mark RG. A noise stress test for arrhythmia detectors. "
        "Computers in Cardiology 11:381-384 (1984).",
        MITDB["citation"][1],
    ],
}
PTBXL = {
    "dataset": "PTB-XL v1.0.1 (PhysioNet, DOI 10.13026/x4td-x982)",
    "licence": "Creative Commons Attribution 4.0 International (CC BY 4.0)",
    "licence_url": "https://physionet.org/content/ptb-xl/view-license/1.0.1/",
    "citation": [
        "Wagner P, Strodthoff N, Bousseljot R-D, Kreiseler D, Lunze FI, Samek W, Schaeffter T. "
        "PTB-XL, a large publicly available electrocardiography dataset. Scientific Data 7:154 "
        "(2020). https://doi.org/10.1038/s41597-020-0495-6",
        "Wagner P, Strodthoff N, Bousseljot R, Samek W, Schaeffter T. PTB-XL, a large publicly "
        "available electrocardiography dataset (version 1.0.1). PhysioNet (2020). "
        "https://doi.org/10.13026/x4td-x982",
        MITDB["citation"][1],
    ],
}

REQUIRED_FIELDS = {
    "": ("card_version", "name", "description", "task", "kind", "model", "classes", "input",
         "source", "training", "metrics", "budget", "data", "smoke", "warning", "model_file"),
    "input": ("fs_hz", "window_samples", "window_s", "leads", "units", "input_shape"),
    "source": ("run", "git_commit", "checkpoint", "created"),
    "training": ("data", "split", "leaky", "train_records", "val_records", "protocol"),
    "metrics": ("evaluated", "split", "headline"),
    "budget": ("epochs", "best_epoch", "train_minutes", "model_kwargs", "params"),
    "model_file": ("name", "sha256", "bytes"),
}
"""Keys every card holds, per block (``""``: the top level); ``data`` is a list of datasets
with ``dataset``, ``licence``, ``licence_url`` and ``citation``."""


def card_problems(card: Any) -> list[str]:
    """What a card lacks (``metrics.headline`` is a string; empty list: complete)."""
    if not isinstance(card, dict):
        return ["the card is not a JSON object"]
    out = [k for k in REQUIRED_FIELDS[""] if k not in card]
    for block, keys in REQUIRED_FIELDS.items():
        if block and isinstance(card.get(block), dict):
            out += [f"{block}.{k}" for k in keys if k not in card[block]]
        elif block and block in card:
            out.append(f"{block} (not an object)")
    for i, d in enumerate(card.get("data") or [None]):
        if not isinstance(d, dict) or any(k not in d for k in ("dataset", "licence", "citation")):
            out.append(f"data[{i}] (dataset, licence and citation)")
    if card.get("smoke") and not card.get("warning"):
        out.append("warning (a smoke model needs one)")
    return out


def input_spec(task: Task, cfg: PipelineConfig, input_shape: tuple[int, ...]) -> dict:
    """What the model reads: rate, window, leads and units (readers resample and map leads)."""
    w = cfg.windows
    if task.kind == "segments":
        fs, n, leads = w.segment_fs_hz, w.segment_len_samples, [w.lead]
        note = ("one window centred on each beat" + (", with 3 RR-interval channels computed "
                "from the beat positions" if task.rr_channels else ""))
    elif task.kind == "beats":
        fs, n, leads = w.beat_fs_hz, w.beat_len_samples, [w.lead]
        note = (f"scalograms of {cfg.loader.seq_len_beats} consecutive beats "
                f"({cfg.scalograms.n_scales} {cfg.scalograms.wavelet} scales)")
    elif task.kind == "denoise":
        fs, n, leads = w.denoise_fs_hz, w.denoise_window_samples, ["any ECG leads, in pairs"]
        note = (f"two-lead windows, 50 % overlap-add; one lead is paired with itself; the "
                f"recording is high-passed at {w.denoise_highpass_hz:g} Hz before the model, so "
                "the output is baseline-free"
                + ("; trained on that high-passed input (noise.served_highpass): a window fed "
                   "to the network directly must be high-passed first"
                   if cfg.noise.served_highpass else ""))
    else:
        fs, n = w.ptbxl_fs_hz, int(input_shape[0])
        leads = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
        note = "non-overlapping 10 s windows of the 12 standard leads; record = mean of windows"
    return {"fs_hz": float(fs), "window_samples": int(n), "window_s": round(n / fs, 4),
            "leads": leads, "units": "mV", "input_shape": [int(s) for s in input_shape],
            "notes": note + "; other rates are resampled, lead names go through the aliases"}


def _optional_json(path: Path, what: str) -> dict:
    return read_json(path, what) if path.is_file() else {}


def training_block(task: Task, cfg: PipelineConfig, run_dir: Path, metrics: dict) -> dict:
    """Training data and protocol: datasets, split scheme and records, leaky or not."""
    split = _optional_json(run_dir / "splits.json", "run split")
    if task.kind == "ptbxl":
        n = cfg.data.ptbxl_max_records
        data = f"PTB-XL v1.0.1 records100 (100 Hz){f', first {n} records' if n else ''}"
    else:
        data = f"MIT-BIH Arrhythmia Database, lead {cfg.windows.lead}"
        if task.denoising:
            data += f"; noise: NSTDB {', '.join(cfg.noise.train_types)} (clean targets high-passed)"
    protocol = metrics.get("mode") or "training run (best checkpoint by validation)"
    return {"data": data, "split": split.get("scheme", "unknown"),
            "leaky": bool(split.get("leaky", metrics.get("leaky_split", False))),
            "train_records": list(split.get("train", [])), "val_records": list(split.get("val", [])),
            "test_records": list(split.get("test", [])), "protocol": protocol}


def _ci(block: dict, key: str) -> str:
    c = block.get(key)
    return f" [{c['low']:.3f}, {c['high']:.3f}]" if isinstance(c, dict) and c.get("low") is not None else ""


def classifier_metrics(task: Task, m: dict) -> dict:
    """Headline numbers and intervals of a classifier's ``metrics_test.json``."""
    ci = m.get("bootstrap_95ci", {})
    keys = ("macro_auc", "fmax", "macro_f1") if task.multilabel else ("macro_f1", "accuracy",
                                                                       "cohen_kappa")
    nums = {k: m[k] for k in keys if isinstance(m.get(k), (int, float))}
    per = {c: {k: v[k] for k in ("support", "sensitivity", "ppv", "f1") if k in v}
           for c, v in (m.get("per_class") or {}).items()}
    parts = [f"{k} {nums[k]:.3f}{_ci(ci, k)}" for k in keys if k in nums]
    parts += [f"{k} {ci[k]['point']:.3f}{_ci(ci, k)}" for k in sorted(ci)
              if k.startswith("f1_") and isinstance(ci[k], dict) and ci[k].get("point") is not None]
    return {"numbers": nums, "per_class": per, "bootstrap_95ci": ci, "headline": ", ".join(parts)}


def denoiser_metrics(model_name: str, m: dict) -> dict:
    """Mean SNR improvement per noise type and input SNR (with intervals when computed) of
    what the preset's predict runs: the served chain (``<model>+hp[+gate]``: the recording
    high-passed, the model, its pass-through gate) when the run was scored with it, else
    ``<model>+gate`` or the model alone."""
    results = m.get("results") or {}
    gate = "+gate" if m.get("pass_through_gate") else ""
    chosen = next((f"{model_name}{c}" for c in (f"+hp{gate}", gate)
                   if f"{model_name}{c}" in results), model_name)
    served, gated = chosen.startswith(f"{model_name}+hp"), chosen.endswith("+gate")
    model_name = chosen
    res = results.get(model_name) or next(iter(results.values()), {})
    table = {nt: {snr: round(cell["snr_imp_db"]["mean"], 3) for snr, cell in by.items()
                  if isinstance(cell, dict) and "snr_imp_db" in cell}
             for nt, by in res.items()}
    cis = (m.get("ci95_snr_imp_db") or {}).get(model_name)
    cell = table.get("mix", {}).get("6")
    ci = (cis or {}).get("mix", {}).get("6") if cis else None
    ci_text = f" [{ci['low']:+.2f}, {ci['high']:+.2f}]" if ci else " (interval not computed)"
    head = (f"SNR improvement {cell:+.2f} dB{ci_text} at 6 dB input, mixed NSTDB noise"
            if cell is not None else "SNR improvement: no 6 dB mixed-noise condition")
    head += {(True, True): " (the chain predict runs: record high-pass, model, gate)",
             (True, False): " (the chain predict runs: record high-pass, model)",
             (False, True): " (with its pass-through gate)"}.get((served, gated), "")
    return {"snr_improvement_db": table, "ci95_snr_imp_db": cis, "headline": head,
            "method": model_name,
            "table_snr_improvement_db": m.get("table_snr_improvement_db")}


def metrics_block(task: Task, model_name: str, run_dir: Path) -> tuple[dict, dict]:
    """(card ``metrics`` block, the raw ``metrics_test.json`` or {}).

    Raises:
        PipelineError: ``metrics_test.json`` is for another task.
    """
    path = run_dir / "metrics_test.json"
    if not path.is_file():
        return {"evaluated": False, "split": None, "headline": NOT_EVALUATED}, {}
    m = read_json(path, "final evaluation metrics")
    if m.get("task") not in (None, task.name):
        raise PipelineError(f"{path}: metrics of task {m.get('task')!r}, but the run is {task.name!r}")
    split = "PTB-XL fold 10" if task.kind == "ptbxl" else "MIT-BIH DS2 (inter-patient test records)"
    if m.get("leaky_split"):
        split += " (leaky split: test patients also in training)"
    body = denoiser_metrics(model_name, m) if task.denoising else classifier_metrics(task, m)
    return {"evaluated": True, "split": split, "source": "metrics_test.json (final evaluation)",
            "mode": m.get("mode"), "test_records": m.get("test_records"),
            "n_test_examples": m.get("n_test_examples"), **body}, m


def budget_block(run_dir: Path, meta: dict, env: dict) -> dict:
    """Epochs, minutes, model size and arguments from ``summary.json`` (or ``history.json``)."""
    summary = _optional_json(run_dir / "summary.json", "training summary")
    history = _optional_json(run_dir / "history.json", "training history") or []
    history = history if isinstance(history, list) else []
    seconds = summary.get("train_seconds", sum(float(h.get("seconds", 0)) for h in history))
    return {"epochs": summary.get("epochs_done", len(history)),
            "best_epoch": summary.get("best_epoch"),
            "train_minutes": round(float(seconds) / 60.0, 2),
            "examples_per_epoch": summary.get("examples_per_epoch"),
            "model_kwargs": meta.get("kwargs", {}), "params": meta.get("params", summary.get("params")),
            "device": env.get("device")}


def datasets(task: Task) -> list[dict]:
    """Licence and citation blocks of the data a task trains on."""
    if task.kind == "ptbxl":
        return [PTBXL]
    return [MITDB, NSTDB] if task.denoising else [MITDB]


def build_card(run_dir: Path, name: str, description: str, *, task: Task, cfg: PipelineConfig,
               model_name: str, input_shape: tuple[int, ...], checkpoint: str, smoke: bool,
               warning: str | None = None) -> dict:
    """The card of a preset made from ``run_dir`` (``model_file`` is filled in by the saver)."""
    meta = read_json(run_dir / "model.json", "model description")
    env = _optional_json(run_dir / "env.json", "run environment")
    metrics, raw = metrics_block(task, model_name, run_dir)
    return {
        "card_version": CARD_VERSION, "name": name, "description": description,
        "task": task.name, "kind": "denoiser" if task.denoising else "classifier",
        "model": model_name, "classes": list(task.classes),
        "multilabel": task.multilabel, "input": input_spec(task, cfg, input_shape),
        "source": {"run": run_dir.name, "run_path": _repo_relative(run_dir),
                   "git_commit": env.get("git_commit"),
                   "git_dirty": env.get("git_dirty"), "checkpoint": checkpoint,
                   "versions": env.get("versions", {}),
                   "created": dt.datetime.now().isoformat(timespec="seconds")},
        "training": training_block(task, cfg, run_dir, raw),
        "metrics": metrics, "budget": budget_block(run_dir, meta, env), "data": datasets(task),
        "smoke": bool(smoke), "warning": (warning or SMOKE_WARNING) if smoke else None,
    }


def _repo_relative(path: Path) -> str:
    """``path`` relative to the repository when inside it (cards carry no home folders)."""
    root = Path(__file__).resolve().parents[2]
    try:
        return Path(path).resolve().relative_to(root).as_posix()
    except ValueError:
        return str(path)


def headline(card: dict) -> str:
    """``name  task/model  metrics`` as ``--preset list`` prints it."""
    m = card.get("metrics", {})
    where = f"{m.get('split')}: " if m.get("evaluated") else ""
    smoke = "  [SMOKE]" if card.get("smoke") else ""
    return (f"{card.get('name')}  {card.get('task')} / {card.get('model')}  "
            f"{where}{m.get('headline', NOT_EVALUATED)}{smoke}")


def markdown_table(cards: list[dict]) -> str:
    """The model-card table of the README: one row per preset."""
    rows = ["| preset | task / model | input | trained on | test metrics (95 % interval) | "
            "budget | data licence |", "|---|---|---|---|---|---|---|"]
    for c in cards:
        i, t, b, m = c["input"], c["training"], c["budget"], c["metrics"]
        leak = "leaky split" if t["leaky"] else "patient-wise split"
        where = f"{m['split']}: " if m.get("evaluated") else ""
        smoke = " **smoke model**" if c.get("smoke") else ""
        size = f"{b['params']:,} tree nodes" if b.get("params_are") else f"{b['params']:,} params"
        spent = (f"{b['epochs']} epochs, " if b.get("epochs") is not None else "fitted in ") + \
            f"{b['train_minutes']:g} min"
        rows.append(
            f"| `{c['name']}`{smoke} | {c['task']} / {c['model']} ({size}) | "
            f"{i['window_s']:g} s at {i['fs_hz']:g} Hz, {', '.join(i['leads'])} ({i['units']}) | "
            f"{t['data']}; {t['split']}, {leak} | {where}{m['headline']} | "
            f"{spent} | "
            f"{'; '.join(d['licence'].split(' (')[-1].rstrip(')') for d in c['data'])} |")
    return "\n".join(rows) + "\n"
