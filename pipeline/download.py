"""Download stage: PhysioNet databases (or a mirror of them), verified file by file.

Command over :mod:`pipeline.data.download`.
"""

from __future__ import annotations

import argparse

from pipeline.core import cli
from pipeline.core.config import config_from_args
from pipeline.core.io_utils import setup_logging
from pipeline.data import download as download_lib


def build_parser() -> argparse.ArgumentParser:
    parser = cli.command_parser(
        "download",
        "Download and verify the PhysioNet databases into <data_dir>/raw.",
    )
    parser.add_argument(
        "--databases",
        nargs="+",
        choices=sorted(download_lib.DATABASES),
        default=None,
        help="databases to fetch (default: data.databases of the config)",
    )
    parser.add_argument(
        "--force", action="store_true", help="fetch checksums again and re-hash every file"
    )
    parser.add_argument(
        "--source",
        choices=("physionet", "synthetic"),
        default="physionet",
        help="physionet (or the mirror) or offline seeded synthetic MIT-BIH-like records",
    )
    parser.add_argument(
        "--workers", type=int, default=download_lib.DEFAULT_WORKERS, help="parallel HTTP downloads"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error(f"--workers must be >= 1. Received: --workers={args.workers}")
    setup_logging(args.verbose)
    cfg = config_from_args(args)
    names = list(dict.fromkeys(args.databases or cfg.data.databases))
    for name in names:
        download_lib.get_database(name)
    if args.source == "synthetic":
        skipped = [n for n in names if n != "mitdb"]
        if skipped:
            download_lib.log.warning("--source synthetic provides mitdb only; skipping %s", ", ".join(skipped))
        download_lib.write_synthetic(cfg, force=args.force)
        return 0
    for name in names:
        download_lib.download_database(cfg, name, force=args.force, workers=args.workers)
    return 0


if __name__ == "__main__":
    cli.run(main)
