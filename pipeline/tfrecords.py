"""TFRecord stage: batched, self-describing TFRecords, one file per record.

Command over :mod:`pipeline.data.tfrecord_writer`.
"""

from __future__ import annotations

import argparse

from pipeline.core import cli
from pipeline.core.io_utils import PipelineError
from pipeline.data import schema
from pipeline.data.tfrecord_writer import available_kinds, run_kind


def build_parser() -> argparse.ArgumentParser:
    p = cli.command_parser(
        "tfrecords",
        "Serialize windows and scalograms into batched, self-describing TFRecords "
        "(one file per record) with a manifest per kind.",
    )
    p.add_argument("--kinds", nargs="+", choices=list(schema.KINDS), default=None,
                   help="kinds to write (default: all whose inputs exist)")
    p.add_argument("--force", action="store_true", help="rewrite every file")
    return p


def main(argv: list[str] | None = None) -> int:
    args, cfg = cli.parse(build_parser(), argv)
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
    cli.run(main)
