"""Scalogram stage: continuous wavelet transform of every beat.

Command over :mod:`pipeline.data.scalogram`.
"""

from __future__ import annotations

import argparse

from pipeline.core import cli
from pipeline.data.scalogram import run


def build_parser() -> argparse.ArgumentParser:
    p = cli.command_parser(
        "scalograms",
        "Morlet CWT magnitude scalograms of every MIT-BIH beat "
        "(<data_dir>/scalograms/mitdb/<record>.npz).",
    )
    p.add_argument("--force", action="store_true", help="redo even when outputs are up to date")
    return p


def main(argv: list[str] | None = None) -> int:
    args, cfg = cli.parse(build_parser(), argv)
    m = run(cfg, force=args.force)
    t = m["totals"]
    if m.get("up_to_date"):
        print(f"scalograms mitdb: up to date ({t['records']} records); nothing to do")
        return 0
    shape = m["records"][next(iter(m["records"]))]["shape"][1:] if m["records"] else []
    print(
        f"scalograms mitdb: {t['records']} records, {t['beats']:,} beats, "
        f"{tuple(shape)} {m['config']['dtype']}, {t['bytes'] / 1e6:,.1f} MB "
        f"({t['bytes_per_beat']:,.0f} B/beat), {m['wall_time_s']:.1f} s, "
        f"{m['beats_per_s']:,.0f} beats/s"
    )
    return 0


if __name__ == "__main__":
    cli.run(main)
