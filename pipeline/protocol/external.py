"""External evaluation data: a folder of WFDB records turned into the run's own examples.

``final_eval --run RUN --external DIR [--lead NAME]`` scores a trained model on records it has
never seen from any database. The records go through the same stages as the training data,
with the run's settings (:func:`prepare`): :func:`pipeline.data.windowing.run_mitdb` reads
each record at its own sampling rate and lead names, resamples it to the run's rates and cuts
beats, segments and denoising windows with the AAMI labels of its beat annotations;
scalograms and TFRecords follow (:mod:`pipeline.data.scalogram`,
:mod:`pipeline.data.tfrecord_writer`), into a temporary data folder. Beat classifiers need a
``.atr`` beat annotation file per record; denoisers take clean records (annotations optional)
and the test segments of the NSTDB noise.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from pipeline.core.config import PipelineConfig
from pipeline.core.io_utils import PipelineError
from pipeline.data.tasks import Task


def _records(folder: Path) -> list[str]:
    from pipeline.data.windowing import list_records

    if not folder.is_dir():
        raise PipelineError(f"{folder}: external folder not found")
    names = list_records(folder)
    if not names:
        raise PipelineError(f"{folder}: no WFDB records (no RECORDS file and no *.hea)")
    return names


def _check_leads(folder: Path, records: list[str], lead: str, explicit: bool) -> None:
    """Every record must hold the lead the run was trained on (or the one named)."""
    import wfdb

    for rec in records:
        try:
            names = [str(n) for n in wfdb.rdheader(str(folder / rec)).sig_name]
        except Exception as exc:  # wfdb raises assorted types on damaged headers
            raise PipelineError(f"record {rec}: header {rec}.hea does not parse ({exc})") from exc
        if lead not in names:
            hint = "" if explicit else "; name the lead to use with --lead"
            raise PipelineError(f"record {rec} in {folder}: no lead {lead!r} (leads: {names}){hint}")


def _link_records(folder: Path, records: list[str], raw: Path, need_atr: bool) -> None:
    """Links the record files into ``raw``; a record without ``.atr`` gets an annotation file
    without beats when beats are not needed (denoising), else is refused."""
    import wfdb

    raw.mkdir(parents=True, exist_ok=True)
    for rec in records:
        files = [p for p in folder.iterdir() if p.name.startswith(f"{rec}.")]
        for p in files:
            (raw / p.name).symlink_to(p.resolve())
        if not (folder / f"{rec}.atr").is_file():
            if need_atr:
                raise PipelineError(f"record {rec} in {folder}: no beat annotation file "
                                    f"{rec}.atr (a beat classifier is scored on annotated beats)")
            wfdb.wrann(rec, "atr", sample=np.array([0]), symbol=["+"], aux_note=["(N"],
                       write_dir=str(raw))
    (raw / "RECORDS").write_text("\n".join(records) + "\n")


def prepare(cfg: PipelineConfig, task: Task, folder: Path, work: Path,
            lead: str | None = None, examples: bool = True) -> tuple[PipelineConfig, tuple[str, ...]]:
    """Windows, scalograms and TFRecords of the records of ``folder`` under ``work``
    (``examples=False``: the windows stage only, for the classic trees' beat table).

    Args:
        cfg: the run's config (its windows, scalogram and TFRecord settings are used).
        task: the run's task (``mitdb_*`` beat classifiers or ``mitdb_denoise``).
        folder: WFDB records (``.hea`` + signal files, ``.atr`` beat annotations).
        work: an empty folder for the derived data.
        lead: record lead for beats and segments (default: the run's ``windows.lead``).

    Returns:
        The config pointing at ``work`` and the TFRecord files of the task's kind (without
        ``examples``: the names of the records that gave at least one segment).
    """
    from pipeline.data import scalogram, tfrecord_writer, windowing

    if task.kind == "ptbxl":
        raise PipelineError(f"--external scores MIT-BIH-style beat classifiers and denoisers; "
                            f"task {task.name} reads PTB-XL records")
    folder = Path(folder)
    records = _records(folder)
    wanted = lead or cfg.windows.lead
    if not task.denoising:
        _check_leads(folder, records, wanted, lead is not None)
    ext = dataclasses.replace(
        cfg, data=dataclasses.replace(cfg.data, data_dir=str(work), mitdb_records=()),
        windows=dataclasses.replace(cfg.windows, lead=wanted, workers=1),
        scalograms=dataclasses.replace(cfg.scalograms, workers=1))
    _link_records(folder, records, windowing.raw_dir(ext, "mitdb"), need_atr=not task.denoising)
    manifest = windowing.run_mitdb(ext)
    if not examples:  # the records that gave at least one segment
        kept = tuple(r for r, e in manifest["records"].items() if sum(e["segments"].values()))
        if not kept:
            raise PipelineError(f"{folder}: no segments could be cut from its records")
        return ext, kept
    if task.kind == "beats":
        scalogram.run(ext)
    manifest = tfrecord_writer.run_kind(ext, task.kind)
    folder_out = tfrecord_writer.tfrecord_dir(ext, task.kind)
    files = tuple(str(folder_out / e["file"]) for e in manifest["files"] if int(e["examples"]) > 0)
    if not files:
        raise PipelineError(f"{folder}: no {task.kind} examples could be cut from its records")
    return ext, files
