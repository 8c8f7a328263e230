"""A trained run's own settings, for evaluating it: task, model, config, split.

``final_eval --run RUN`` evaluates a run with what it was trained with: the task and model of
``model.json``, the config of ``config.yaml`` (windows, leads, scalograms, split settings,
noise segments), the split of ``splits.json`` and the statistics of ``normalization.json``.
The command line may still choose where the data live (``data.*``, ``--data-dir``), the
evaluation settings (``eval.*``) and the denoising conditions (``noise.types``,
``noise.eval_snr_db``). A ``--task``, ``--model`` or a setting of :data:`PROTECTED` that
disagrees with the run is refused with one line naming both values; other sections (train,
tune, profile...) do not affect an evaluation and are left as the run had them.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline.core.config import PipelineConfig, from_dict, load_config, parse_override, to_dict
from pipeline.core.io_utils import PipelineError, read_json
from pipeline.data.splits import Split
from pipeline.data.tasks import Task, get_task

log = logging.getLogger("ecg.final_eval")

PROTECTED_SECTIONS = ("splits", "windows", "scalograms")
PROTECTED = (("loader", "seq_len_beats"), ("noise", "train_fraction"), ("noise", "val_fraction"))
"""Settings (besides :data:`PROTECTED_SECTIONS`) that shape what the model saw or which noise
segment is the test segment."""
APPLIED_SECTIONS = ("data", "eval")
APPLIED = (("noise", "types"), ("noise", "eval_snr_db"))
RUN_FILES = ("model.json", "config.yaml", "splits.json", "normalization.json")


@dataclasses.dataclass(frozen=True)
class RunSettings:
    """Everything an evaluation of a trained run takes from the run folder."""

    run_dir: Path
    cfg: PipelineConfig
    task: Task
    model: str
    split: Split


def split_from_json(d: Mapping[str, Any], where: str) -> Split:
    """The :class:`Split` saved as ``splits.json`` (``Split.to_json``)."""
    try:
        intra = d.get("intra")
        return Split(scheme=str(d["scheme"]), train=tuple(d["train"]), val=tuple(d["val"]),
                     test=tuple(d["test"]),
                     folds=tuple((tuple(f["train"]), tuple(f["val"])) for f in d.get("folds", [])),
                     # an intra-patient split is leaky whatever the file says
                     leaky=bool(d.get("leaky")) or intra is not None
                     or d["scheme"] == "intra_patient",
                     intra=dict(intra) if intra is not None else None)
    except (KeyError, TypeError, AttributeError) as exc:
        raise PipelineError(f"{where}: malformed split file (missing or bad {exc})") from exc


def explicit_keys(cli_cfg: PipelineConfig, overrides: Sequence[str]) -> set[tuple[str, str]]:
    """``(section, key)`` the command line chose: every ``--set`` and every value of the
    resolved command-line config (``--config``, ``--data-dir``, environment) that is not the
    default."""
    default, cli = to_dict(PipelineConfig()), to_dict(cli_cfg)
    keys = {(s, k) for s in cli for k in cli[s] if cli[s][k] != default[s][k]}
    for text in overrides:
        for section, values in parse_override(text).items():
            keys |= {(section, k) for k in (values if isinstance(values, dict) else {})}
    return keys


def merge_with_run(run_cfg: PipelineConfig, cli_cfg: PipelineConfig,
                   keys: set[tuple[str, str]], where: Path) -> PipelineConfig:
    """The run's config with the command line's data/eval/noise-condition choices applied;
    a protected setting that differs from the run's raises."""
    run, cli = to_dict(run_cfg), to_dict(cli_cfg)
    ignored = []
    for section, key in sorted(keys):
        if section not in run or key not in run[section]:
            continue
        ours, theirs = cli[section][key], run[section][key]
        if section in PROTECTED_SECTIONS or (section, key) in PROTECTED:
            if ours != theirs:
                raise PipelineError(
                    f"{section}.{key}={ours!r} on the command line conflicts with the run's "
                    f"{section}.{key}={theirs!r} ({where}); a run is evaluated with its own settings")
        elif section in APPLIED_SECTIONS or (section, key) in APPLIED:
            run[section][key] = ours
        elif ours != theirs:
            ignored.append(f"{section}.{key}")
    if ignored:
        log.info("the run's own settings are kept for %s (they do not change an evaluation)",
                 ", ".join(ignored))
    return from_dict(run, str(where))


def check_run_folder(run_dir: Path) -> None:
    if not run_dir.is_dir():
        raise PipelineError(f"{run_dir}: run folder not found")
    for name in RUN_FILES:
        if not (run_dir / name).is_file():
            raise PipelineError(f"{run_dir}: not a training run (no {name})")


def load_run_settings(run_dir: Path, cli_cfg: PipelineConfig, overrides: Sequence[str], *,
                      task_name: str | None = None, model_name: str | None = None) -> RunSettings:
    """Reads a run folder's settings; a conflicting ``--task``/``--model``/setting raises."""
    run_dir = Path(run_dir)
    check_run_folder(run_dir)
    saved = read_json(run_dir / "model.json", "run model description")
    for flag, given, own in (("--task", task_name, saved.get("task")),
                             ("--model", model_name, saved.get("model"))):
        if given and given != own:
            raise PipelineError(f"{flag} {given} conflicts with the run's {flag[2:]} {own} "
                                f"({run_dir / 'model.json'})")
    try:
        task = get_task(str(saved["task"]))
    except KeyError as exc:
        raise PipelineError(f"{run_dir / 'model.json'}: {exc.args[0] if exc.args else exc}") from exc
    run_cfg = load_config(run_dir / "config.yaml", apply_env=False)
    cfg = merge_with_run(run_cfg, cli_cfg, explicit_keys(cli_cfg, overrides), run_dir / "config.yaml")
    split = split_from_json(read_json(run_dir / "splits.json", "run split"), str(run_dir / "splits.json"))
    return RunSettings(run_dir, cfg, task, str(saved["model"]), split)
