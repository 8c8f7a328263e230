"""List and compare runs as a table: ``python -m data_tools.compare_runs [DIR ...]``.

Reads each run folder's ``summary.json`` (training), ``metrics_test.json`` (final held-out
evaluation) and ``kfold.json`` and prints one Markdown row per run with its headline numbers.
With ``--config``, the profile's runs folder is listed (what ``run_full_pipeline.sh`` made);
the profile's own ``summary.json`` there (stage times, ``pipeline.training.profile_summary``)
is not a run and is not listed. With ``--aami``, beat classifiers get the AAMI table instead
(accuracy, macro F1 over N, S, V, F, Se / +P / F1 of S and V, params, training minutes), and
``--baseline RUN`` adds each row's macro F1 difference to that run (e.g. the classic baseline).
With ``--denoise``, denoisers get their table (:mod:`data_tools.denoise_table`: SNR
improvement with intervals per noise and level, the 24 dB 5th percentile, the outside records).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from data_tools import denoise_table
from data_tools.denoise_table import load_json, snr_mean

ROOT = Path(__file__).resolve().parents[1]


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def is_pipeline_summary(s: Any) -> bool:
    """A profile's ``<runs_dir>/summary.json`` (stage times and results), not a run's."""
    return isinstance(s, dict) and "stages" in s and "profile" in s


def _run_name(d: Path, base: Path | None) -> str:
    """A run folder's name relative to the listed folder (its own name when it is that folder)."""
    return str(d.relative_to(base)) if base is not None and base in d.parents else d.name


def run_row(d: Path, base: Path | None = None) -> dict[str, Any] | None:
    s = load_json(d / "summary.json") or {}
    if is_pipeline_summary(s):
        s = {}
    m = load_json(d / "metrics_test.json") or {}
    k = load_json(d / "kfold.json") or {}
    hp = load_json(d / "best_hparams.json") or {}
    if not (s or m or k or hp):
        return None
    row: dict[str, Any] = {
        "run": _run_name(d, base),
        "task": s.get("task") or m.get("task") or k.get("task") or hp.get("task"),
        "model": s.get("model") or m.get("model") or k.get("model") or hp.get("model"),
        "params": s.get("params"),
        "epochs": s.get("epochs_done"),
        "val_loss": s.get("best_val_loss"),
        "leaky": m.get("leaky_split", s.get("leaky_split")),
    }
    if m.get("results"):  # denoiser
        name = m.get("model")
        row["test"] = (f"SNR imp 24dB gauss {_fmt(snr_mean(m, name, 'gaussian', '24'), 2)}, "
                       f"6dB gauss {_fmt(snr_mean(m, name, 'gaussian', '6'), 2)}, "
                       f"0dB mix {_fmt(snr_mean(m, name, 'mix', '0'), 2)}")
    elif "macro_auc" in m:
        row["test"] = f"macro AUC {_fmt(m.get('macro_auc'))}, F-max {_fmt(m.get('fmax'))}"
    elif "macro_f1" in m:
        pc = m.get("per_class", {})
        parts = [f"macro F1 {_fmt(m['macro_f1'])}", f"acc {_fmt(m.get('accuracy'))}"]
        parts += [f"F1({c}) {_fmt(pc[c].get('f1'))}" for c in ("S", "V", "SVEB", "VEB") if c in pc]
        row["test"] = ", ".join(parts)
    if k.get("aggregate"):
        a = k["aggregate"]
        key = "macro_f1" if "macro_f1" in a else "macro_auc"
        if a.get(key, {}).get("mean") is not None:
            row["kfold"] = f"{key} {a[key]['mean']:.3f} ± {a[key].get('std') or 0:.3f} ({len(k['folds'])} folds)"
    if hp:
        row["tuning"] = f"{hp.get('completed_trials')} trials, best val loss {_fmt(hp.get('best_val_loss'))}"
    return row


AAMI_COLS = ["run", "model", "params", "train min", "best epoch", "accuracy", "macro F1 (NSVF)",
             "Se(S)", "+P(S)", "F1(S)", "Se(V)", "+P(V)", "F1(V)"]


def aami_row(d: Path, base: Path | None = None) -> dict[str, Any] | None:
    """One beat classifier's DS2 headline row (``None`` for runs without AAMI test metrics)."""
    from pipeline.evaluation.metrics import macro_f1_nsvf

    m = load_json(d / "metrics_test.json") or {}
    pc = m.get("per_class") or {}
    if not all(c in pc for c in ("S", "V")):
        return None
    s = load_json(d / "summary.json") or {}
    secs = s.get("train_seconds")
    row: dict[str, Any] = {
        "run": _run_name(d, base),
        "model": m.get("model") or s.get("model"), "params": s.get("params"),
        "train min": None if secs is None else f"{secs / 60:.1f}",
        "best epoch": s.get("best_epoch"), "accuracy": m.get("accuracy"),
        "macro F1 (NSVF)": macro_f1_nsvf(pc),
    }
    for c in ("S", "V"):
        row.update({f"Se({c})": pc[c].get("sensitivity"), f"+P({c})": pc[c].get("ppv"),
                    f"F1({c})": pc[c].get("f1")})
    return row


def aami_table(rows: list[dict[str, Any]], baseline: dict[str, Any] | None = None) -> str:
    cols = AAMI_COLS + (["vs baseline"] if baseline else [])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        if baseline:
            diff = (r["macro F1 (NSVF)"] or 0.0) - (baseline["macro F1 (NSVF)"] or 0.0)
            verdict = "beats" if diff > 0 else "below" if diff < 0 else "equal"
            r = {**r, "vs baseline": f"{verdict} ({diff:+.3f})"}
        lines.append("| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |")
    return "\n".join(lines)


def find_runs(dirs: list[Path]) -> list[tuple[Path, Path]]:
    out = []
    for base in dirs:
        if not base.is_dir():
            continue
        for d in sorted([base, *[p for p in base.rglob("*") if p.is_dir()]]):
            if any((d / f).is_file() for f in ("summary.json", "metrics_test.json", "kfold.json",
                                                "best_hparams.json")):
                out.append((d, base))
    return out


def table(rows: list[dict[str, Any]]) -> str:
    cols = ["run", "task", "model", "params", "epochs", "val_loss", "test", "kfold", "tuning", "leaky"]
    cols = [c for c in cols if any(r.get(c) not in (None, "") for r in rows)]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |")
    return "\n".join(lines)


def print_denoise_table(dirs: list[Path]) -> int:
    runs = [d for d, _ in find_runs(dirs) if not d.name.startswith("external_")]
    text = denoise_table.table(runs)
    print(text or f"no denoiser runs found under {', '.join(map(str, dirs))}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m data_tools.compare_runs", description=__doc__.splitlines()[0])
    p.add_argument("dirs", nargs="*", help="run folders or folders of runs (default: Research_Runs)")
    p.add_argument("--config", default=None, help="list the runs folder of this config's profile")
    p.add_argument("--aami", action="store_true", help="the AAMI table of beat classifiers")
    p.add_argument("--denoise", action="store_true", help="the table of denoisers and filters")
    p.add_argument("--baseline", type=Path, default=None, metavar="RUN",
                   help="with --aami: compare every row's macro F1 (NSVF) with this run's")
    p.add_argument("--data-dir", default=None, help=argparse.SUPPRESS)
    p.add_argument("--mirror", default=None, help=argparse.SUPPRESS)
    p.add_argument("--set", dest="overrides", action="append", default=[], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    dirs = [Path(d) for d in args.dirs]
    if args.config:
        from pipeline.core.config import config_from_args

        dirs.append(Path(config_from_args(args).profile.runs_dir))
    if not dirs:
        dirs = [ROOT / "Research_Runs"]
    if args.denoise:
        return print_denoise_table(dirs)
    row_of = aami_row if args.aami else run_row
    rows = [r for d, base in find_runs(dirs) if (r := row_of(d, base))]
    if not rows:
        print(f"no runs found under {', '.join(map(str, dirs))}")
        return 0
    if args.aami:
        baseline = aami_row(args.baseline) if args.baseline else None
        if args.baseline and baseline is None:
            print(f"error: {args.baseline}: no AAMI test metrics (metrics_test.json)", file=sys.stderr)
            return 2
        print(aami_table(rows, baseline))
        return 0
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
