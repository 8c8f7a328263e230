"""Windows stage: cut records into the examples every model trains on.

Command over :mod:`pipeline.data.windowing`.
"""

from __future__ import annotations

import argparse
import json

from pipeline.core import cli
from pipeline.core.io_utils import mark_done, stage_done
from pipeline.data import windowing


def build_parser() -> argparse.ArgumentParser:
    p = cli.command_parser(
        "windows",
        "Cut downloaded records into beats (125 Hz, 187 samples), 2 s segments, "
        "4 s two-lead denoising windows and PTB-XL examples, with AAMI labels.",
    )
    p.add_argument("--databases", nargs="+", default=None, choices=["mitdb", "ptbxl"],
                   help="datasets to cut (default: those downloaded among mitdb, ptbxl)")
    p.add_argument("--force", action="store_true", help="redo even when outputs are up to date")
    return p


def main(argv: list[str] | None = None) -> int:
    args, cfg = cli.parse(build_parser(), argv)
    dbs = args.databases or [d for d in ("mitdb", "ptbxl") if d in cfg.data.databases]
    for db in dbs:
        if db == "mitdb":
            m = windowing.run_mitdb(cfg, force=args.force)
            print(f"windows mitdb: {len(m['records'])} records, label scheme {m['label_scheme']}")
            print(windowing.format_totals(m))
            print(f"dropped: {m['dropped_by_reason'] or 'none'}")
        elif db == "ptbxl":
            if not (windowing.raw_dir(cfg, "ptbxl") / "ptbxl_database.csv").is_file():
                windowing.log.info("windows ptbxl: not downloaded; skipped")
                continue
            marker = windowing.windows_dir(cfg, "ptbxl") / "_stage.json"
            folder = windowing.raw_dir(cfg, "ptbxl")
            key = {"config": windowing.output_hash(cfg.windows),
                   "files": sum(1 for _ in folder.rglob("*.hea")),
                   "csv": (folder / "ptbxl_database.csv").stat().st_size}
            if (not args.force and stage_done(marker, key)
                    and (windowing.windows_dir(cfg, "ptbxl") / "manifest.json").is_file()):
                print("windows ptbxl: up to date; nothing to do")
                continue
            m = windowing.process_ptbxl(cfg)
            mark_done(marker, key)
            print(f"windows ptbxl: folds {json.dumps(m['folds'])}")
    return 0


if __name__ == "__main__":
    cli.run(main)
