"""Config loading: YAML with ``extends:``, strict keys and types, ``--set`` overrides, the
environment, and dump/reload."""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import stat

import pytest

from pipeline.core import config as C
from pipeline.core.config import ConfigError


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv(C.MIRROR_ENV, raising=False)
    monkeypatch.delenv(C.DATA_DIR_ENV, raising=False)


def write_table(path, text):
    path.write_text(text)
    return path


def _args(*argv):
    p = argparse.ArgumentParser()
    C.add_config_args(p)
    return p.parse_args(list(argv))


def test_defaults_match_dataclasses():
    cfg = C.load_config(None)
    assert cfg == C.PipelineConfig()
    assert cfg.windows.beat_len_samples == 187
    assert cfg.windows.beat_r_offset_samples == 62
    assert cfg.data_dir == C.Path("data")


def test_extends_merges_parent_and_child(tmp_path):
    write_table(tmp_path / "base.yaml", "train:\n  epochs: 10\n  batch_size: 32\nwindows:\n  lead: V1\n")
    child = write_table(
        tmp_path / "child.yaml", "extends: base.yaml\ntrain:\n  epochs: 2\nsplits:\n  n_folds: 3\n"
    )
    cfg = C.load_config(child)
    assert cfg.train.epochs == 2  # child wins
    assert cfg.train.batch_size == 32  # parent kept (deep merge)
    assert cfg.windows.lead == "V1"
    assert cfg.splits.n_folds == 3
    assert cfg.train.learning_rate == C.TrainConfig().learning_rate  # default


def test_extends_chain_of_three_and_relative_to_file(tmp_path, monkeypatch):
    sub = tmp_path / "cfgs"
    sub.mkdir()
    write_table(sub / "a.yaml", "train:\n  epochs: 1\n  batch_size: 8\n  seed: 1\n")
    write_table(sub / "b.yaml", "extends: a.yaml\ntrain:\n  batch_size: 16\n")
    c = write_table(sub / "c.yaml", "extends: b.yaml\ntrain:\n  seed: 3\n")
    # A decoy a.yaml in the working directory must not be picked up by `extends: a.yaml`.
    monkeypatch.chdir(tmp_path)
    write_table(tmp_path / "a.yaml", "train:\n  epochs: 99\n")
    cfg = C.load_config(c)
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.seed) == (1, 16, 3)


def test_extends_loop_raises(tmp_path):
    write_table(tmp_path / "a.yaml", "extends: b.yaml\n")
    write_table(tmp_path / "b.yaml", "extends: a.yaml\n")
    with pytest.raises(ConfigError, match="loops"):
        C.load_config(tmp_path / "a.yaml")


def test_extends_missing_parent(tmp_path):
    p = write_table(tmp_path / "a.yaml", "extends: nowhere.yaml\n")
    with pytest.raises(ConfigError, match="nowhere.yaml: config not found"):
        C.load_config(p)


def test_unknown_top_level_key_names_file_and_key(tmp_path):
    p = write_table(tmp_path / "bad.yaml", "trian:\n  epochs: 2\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*unknown key\(s\) \['trian'\]"):
        C.load_config(p)


def test_unknown_nested_key_names_file_section_and_key(tmp_path):
    p = write_table(tmp_path / "bad.yaml", "train:\n  epoch: 2\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml\.train: unknown key\(s\) \['epoch'\]"):
        C.load_config(p)


def test_unknown_key_in_parent_names_the_parent_file(tmp_path):
    write_table(tmp_path / "parent.yaml", "windows:\n  window_s: 4.0\n")
    child = write_table(tmp_path / "child.yaml", "extends: parent.yaml\n")
    with pytest.raises(
        ConfigError, match=r"parent\.yaml\.windows: unknown key\(s\) \['window_s'\]"
    ):
        C.load_config(child)


@pytest.mark.parametrize(
    "yaml_text, match",
    [
        ('data:\n  timeout_s: "4s"\n', r"data\.timeout_s: expected a number.*'4s'"),
        ("windows:\n  beat_fs_hz: 125Hz\n", r"windows\.beat_fs_hz: expected a number.*'125Hz'"),
        ("train:\n  epochs: 2.5\n", r"train\.epochs: expected an integer, got 2\.5"),
        ("train:\n  epochs: true\n", r"train\.epochs: expected an integer, got True"),
        ("train:\n  deterministic: 1\n", r"train\.deterministic: expected true/false"),
        ("train:\n  model: [a]\n", r"train\.model: expected a string"),
        ("data:\n  databases: mitdb\n", r"data\.databases: expected a list"),
        ("noise:\n  eval_snr_db: [24, 12dB]\n", r"noise\.eval_snr_db\[1\]: expected a number"),
        ("train:\n  model_kwargs: 3\n", r"train\.model_kwargs: expected a mapping"),
        ("train: 5\n", r"train: expected a mapping"),
    ],
)
def test_wrong_types_raise_with_file_and_key(tmp_path, yaml_text, match):
    p = write_table(tmp_path / "t.yaml", yaml_text)
    with pytest.raises(ConfigError, match=match) as exc:
        C.load_config(p)
    assert "t.yaml" in str(exc.value)


def test_integer_for_float_field_becomes_float():
    cfg = C.from_dict({"windows": {"beat_fs_hz": 125}})
    assert cfg.windows.beat_fs_hz == 125.0 and isinstance(cfg.windows.beat_fs_hz, float)
    assert isinstance(cfg.noise.curriculum_snr_db, tuple)


def test_yaml_exponent_without_dot_is_a_number(tmp_path):
    # PyYAML (YAML 1.1) reads 1e-3 as the string "1e-3"; it is accepted as a float.
    p = write_table(
        tmp_path / "t.yaml",
        "train:\n  learning_rate: 1e-3\nnoise:\n  curriculum_snr_db: [.inf, 2e1]\n",
    )
    cfg = C.load_config(p)
    assert cfg.train.learning_rate == pytest.approx(1e-3)
    assert cfg.noise.curriculum_snr_db[0] == math.inf
    assert cfg.noise.curriculum_snr_db[1] == 20.0


def test_record_names_written_as_numbers(tmp_path):
    p = write_table(tmp_path / "t.yaml", "data:\n  mitdb_records: [100, '201']\n")
    assert C.load_config(p).data.mitdb_records == ("100", "201")


def test_invalid_yaml_and_non_mapping(tmp_path):
    bad = write_table(tmp_path / "bad.yaml", "train: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: not valid YAML"):
        C.load_config(bad)
    lst = write_table(tmp_path / "list.yaml", "- 1\n- 2\n")
    with pytest.raises(ConfigError, match=r"list\.yaml: top level must be a mapping"):
        C.load_config(lst)
    with pytest.raises(ConfigError, match="config not found"):
        C.load_config(tmp_path / "missing.yaml")


def test_empty_file_gives_defaults(tmp_path):
    assert C.load_config(write_table(tmp_path / "e.yaml", "")) == C.PipelineConfig()


def test_parse_override():
    assert C.parse_override("train.epochs=2") == {"train": {"epochs": 2}}
    assert C.parse_override("data.mitdb_records=[100, 201]") == {
        "data": {"mitdb_records": [100, 201]}
    }
    assert C.parse_override("windows.lead=V1") == {"windows": {"lead": "V1"}}
    assert C.parse_override("train.model_kwargs={filters: 8}") == {
        "train": {"model_kwargs": {"filters": 8}}
    }
    for bad in ("train.epochs", "epochs=2", ".epochs=2", "train.=2"):
        with pytest.raises(ConfigError, match="expected section.key=value"):
            C.parse_override(bad)
    with pytest.raises(ConfigError, match="not valid YAML"):
        C.parse_override("train.epochs=[1")


def test_set_overrides_on_top_of_file(tmp_path):
    p = write_table(tmp_path / "c.yaml", "train:\n  epochs: 10\n  batch_size: 32\n")
    cfg = C.config_from_args(
        _args(
            "--config",
            str(p),
            "--set",
            "train.epochs=2",
            "--set",
            "windows.lead=V1",
            "--set",
            "train.epochs=3",
        )
    )
    assert cfg.train.epochs == 3  # last --set wins
    assert cfg.train.batch_size == 32
    assert cfg.windows.lead == "V1"


def test_set_unknown_key_or_bad_value_raises():
    with pytest.raises(ConfigError, match=r"overrides\.train: unknown key\(s\) \['epoch'\]"):
        C.config_from_args(_args("--set", "train.epoch=2"))
    with pytest.raises(ConfigError, match=r"timeout_s: expected a number.*'4s'"):
        C.config_from_args(_args("--set", "data.timeout_s=4s"))


def test_env_overrides_file_and_set_overrides_env(tmp_path, monkeypatch):
    p = write_table(tmp_path / "c.yaml", "data:\n  data_dir: from_file\n  mirror: file_mirror\n")
    monkeypatch.setenv(C.DATA_DIR_ENV, str(tmp_path / "from_env"))
    monkeypatch.setenv(C.MIRROR_ENV, "http://mirror.example/data")
    cfg = C.load_config(p)
    assert cfg.data.data_dir == str(tmp_path / "from_env")
    assert cfg.data.mirror == "http://mirror.example/data"
    assert C.load_config(p, apply_env=False).data.data_dir == "from_file"
    # Explicit command line beats the environment: --set, then --data-dir / --mirror.
    cfg = C.config_from_args(_args("--config", str(p), "--set", "data.data_dir=from_set"))
    assert cfg.data.data_dir == "from_set"
    cfg = C.config_from_args(
        _args(
            "--config",
            str(p),
            "--set",
            "data.data_dir=from_set",
            "--data-dir",
            "from_flag",
            "--mirror",
            "flag_mirror",
        )
    )
    assert (cfg.data.data_dir, cfg.data.mirror) == ("from_flag", "flag_mirror")
    assert cfg.data_dir == C.Path("from_flag")


def test_empty_env_is_ignored(monkeypatch):
    monkeypatch.setenv(C.DATA_DIR_ENV, "")
    assert C.load_config(None).data.data_dir == "data"


def test_dump_and_reload_equals(tmp_path):
    cfg = C.from_dict(
        {
            "train": {"epochs": 3, "model_kwargs": {"filters": 8, "dropout": 0.1}},
            "data": {"mitdb_records": ["100", "201"]},
            "noise": {"curriculum_snr_db": [float("inf"), 6.0]},
            "scalograms": {"scales": [1.5, 3.0]},
        }
    )
    out = tmp_path / "run" / "config.yaml"
    C.dump_config(cfg, out)
    assert C.load_config(out, apply_env=False) == cfg
    assert C.load_config(out, apply_env=False).noise.curriculum_snr_db[0] == math.inf
    # Written atomically (no temp file left) with the usual file mode, not mkstemp's 0600.
    assert [q.name for q in out.parent.iterdir()] == ["config.yaml"]
    mode = stat.S_IMODE(out.stat().st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask
    # And the defaults round-trip too.
    C.dump_config(C.PipelineConfig(), out)
    assert C.load_config(out, apply_env=False) == C.PipelineConfig()


def test_config_is_frozen_and_hash_is_stable():
    cfg = C.PipelineConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train.epochs = 3  # type: ignore[misc]
    assert C.config_hash(cfg.windows) == C.config_hash(C.WindowsConfig())
    other = dataclasses.replace(cfg.windows, beat_len_samples=186)
    assert C.config_hash(other) != C.config_hash(cfg.windows)


def test_resolve_config_path_by_name(tmp_path, monkeypatch):
    monkeypatch.setattr(C, "CONFIG_DIR", tmp_path)
    write_table(tmp_path / "quick.yaml", "train:\n  epochs: 1\n")
    assert C.resolve_config_path("quick") == tmp_path / "quick.yaml"
    assert C.load_config("quick").train.epochs == 1
