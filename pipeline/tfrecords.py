"""TFRecord stage: batched, self-describing TFRecords, one file per record.

Command over :mod:`pipeline.data.tfrecord_writer`.
"""

from __future__ import annotations

import argparse
import sys

from pipeline.core.config import add_config_args, config_from_args
from pipeline.core.io_utils import PipelineError, run_cli, setup_logging
from pipeline.data import schema
from pipeline.data.tfrecord_writer import available_kinds, run_kind


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pipeline.tfrecords",
        description="Serialize windows and scalograms into batched, self-describing TFRecords "
        "(one file per record) with a manifest per kind.",
    )
    add_config_args(p)
    p.add_argument("--kinds", nargs="+", choices=list(schema.KINDS), default=None,
                   help="kinds to write (default: all whose inputs exist)")
    p.add_argument("--force", action="store_true", help="rewrite every file")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    cfg = config_from_args(args)
    kinds = args.kinds or available_kinds(cfg)
    if not kinds:
        raise PipelineError(f"{cfg.data_dir}: nothing to serialize; run the windows stage first")
    for kind in kinds:
        m = run_kind(cfg, kind, force=args.force)
        print(f"tfrecords {kind}: {len(m['files'])} files, {m['examples']} examples, "
              f"{m['bytes'] / 1e6:.1f} MB ({m['bytes_per_example']} B/example), "
              f"classes {m['class_totals']}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
