"""Pretrained presets (``pipeline.serving.presets``): every shipped preset loads in safe mode,
matches its card (sha256, size, fields) and reproduces its golden outputs
(``tests/golden/presets/<name>.json``, made by ``python -m data_tools.golden_presets``); the
machinery (card, save, load, predict, export, bad input) is tested on presets made in a
temporary folder from run folders with untrained models (``_preset_runs.py``; no training).
"""

from __future__ import annotations

import json
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

wfdb = pytest.importorskip("wfdb")
pytest.importorskip("tensorflow")

import _preset_runs as PR  # noqa: E402
from conftest import mirror_dir  # noqa: E402

from data_tools import golden_presets  # noqa: E402
from pipeline import export as export_cmd  # noqa: E402
from pipeline import predict as predict_cmd  # noqa: E402
from pipeline.core.io_utils import PipelineError, run_cli  # noqa: E402
from pipeline.serving import preset_card, presets  # noqa: E402

SHIPPED = presets.list_presets()
DEV = {"segments_rr": "dev-beats", "denoise": "dev-denoise", "ptbxl": "dev-ptbxl"}


# ------------------------------------------------------------------ checks shared by both


def check_preset(root: Path, name: str) -> presets.Preset:
    """Loads in safe mode (sha256 checked), size limit, card complete, no optimizer state."""
    folder = Path(root) / name
    card = json.loads((folder / presets.CARD_FILE).read_text())
    assert preset_card.card_problems(card) == []
    if card.get("format") == "classic_trees":
        return check_classic_preset(root, name, card)
    for f in presets.PRESET_FILES:
        assert (folder / f).is_file(), f"{folder}: {f} missing"
    size = (folder / presets.MODEL_FILE).stat().st_size
    assert size <= presets.MAX_MODEL_BYTES and card["model_file"]["bytes"] == size
    assert not presets.has_optimizer_state(folder / presets.MODEL_FILE)
    preset = presets.load_preset(name, root)
    assert preset.card["model_file"]["sha256"] == presets.sha256_file(folder / presets.MODEL_FILE)
    assert presets.signal_input_shape(preset.model) == tuple(card["input"]["input_shape"])
    if not card["metrics"]["evaluated"]:
        assert card["metrics"]["headline"] == preset_card.NOT_EVALUATED
        assert "numbers" not in card["metrics"] and "bootstrap_95ci" not in card["metrics"]
    return preset


def check_classic_preset(root: Path, name: str, card: dict) -> presets.Preset:
    """The classic trees' preset: its files, size limit, sha256 and a skops load."""
    from pipeline.serving import classic_preset
    from pipeline.training import classic_store

    folder = Path(root) / name
    for f in classic_preset.FILES:
        assert (folder / f).is_file(), f"{folder}: {f} missing"
    size = (folder / classic_store.TREES_FILE).stat().st_size
    assert size <= presets.MAX_MODEL_BYTES and card["model_file"]["bytes"] == size
    preset = presets.load_preset(name, root)
    assert preset.model.kind == "classic_trees" and card["metrics"]["evaluated"]
    assert preset.card["model_file"]["sha256"] == presets.sha256_file(folder / classic_store.TREES_FILE)
    return preset


def check_golden(root: Path, name: str, golden_dir: Path, mirror: Path | None) -> None:
    """Reproduces the stored cases (mirror cases only with ``mirror``)."""
    path = Path(golden_dir) / f"{name}.json"
    assert path.is_file(), f"{path} missing: run python -m data_tools.golden_presets"
    golden = json.loads(path.read_text())
    preset = presets.load_preset(name, root)
    assert golden["model_sha256"] == preset.card["model_file"]["sha256"], (
        f"{path} was made for another model.keras: regenerate it")
    got = (golden_presets.mirror_cases(preset, mirror) if mirror is not None
           else golden_presets.synthetic_cases(preset))
    stored = {k: v for k, v in golden["cases"].items()
              if (k in golden_presets.MIRROR_CASES) == (mirror is not None)}
    assert stored, f"{path}: no {'mirror' if mirror else 'synthetic'} case stored"
    assert sorted(got) == sorted(stored)
    for key, case in stored.items():
        assert golden_presets.compare(case, got[key], key) == []
    assert golden_presets.consistency_problems(got) == []
    if preset.run.task.denoising and not preset.card["smoke"]:
        for key, case in stored.items():
            assert case["snr_out_db"] > case["snr_in_db"], f"{name} {key}: no SNR gain"


# ---------------------------------------------------------------- the shipped presets


def test_the_repository_ships_presets():
    assert SHIPPED, (f"{presets.presets_dir()} holds no preset: make them with python -m "
                     "pipeline.export --run RUN --format preset --name NAME --description TEXT, "
                     "then python -m data_tools.golden_presets")


@pytest.mark.parametrize("name", SHIPPED or ["<no preset>"])
def test_shipped_preset_loads_in_safe_mode_and_matches_its_card(name):
    assert SHIPPED, "no preset shipped"
    check_preset(presets.presets_dir(), name)


@pytest.mark.parametrize("name", SHIPPED or ["<no preset>"])
def test_shipped_preset_reproduces_its_synthetic_golden_outputs(name):
    assert SHIPPED, "no preset shipped"
    check_golden(presets.presets_dir(), name, golden_presets.GOLDEN_DIR, None)


@pytest.mark.parametrize("name", [n for n in SHIPPED
                                  if presets.read_card(n)["task"] != "mitdb_denoise"] or ["<no preset>"])
def test_shipped_preset_reproduces_its_mirror_golden_outputs(name, mirror):
    assert SHIPPED, "no preset shipped"
    check_golden(presets.presets_dir(), name, golden_presets.GOLDEN_DIR, mirror)


# ------------------------------------------------------------- presets made for the tests


@pytest.fixture(scope="module")
def dev(tmp_path_factory):
    """Presets from untrained run folders (beats: evaluated; denoiser: evaluated, smoke;
    PTB-XL: not evaluated, smoke) and their golden files, in a temporary folder."""
    base = tmp_path_factory.mktemp("presets_dev")
    runs, root = base / "runs", base / "presets"
    made = {}
    for which, name in DEV.items():
        made[which] = PR.fake_run(runs, which, evaluated=which != "ptbxl")
        presets.save_preset(made[which], name, f"test preset ({which})", smoke=which != "segments_rr",
                            root=root)
    assert golden_presets.main(["--presets-dir", str(root), "--out", str(base / "golden")]) == 0
    return {"root": root, "golden": base / "golden", "runs": made, "base": base}


@pytest.mark.parametrize("which", list(DEV))
def test_dev_presets_load_and_reproduce_their_synthetic_golden_outputs(dev, which):
    check_preset(dev["root"], DEV[which])
    check_golden(dev["root"], DEV[which], dev["golden"], None)


@pytest.mark.parametrize("which", ["segments_rr", "ptbxl"])
def test_dev_presets_reproduce_their_mirror_golden_outputs(dev, mirror, which):
    check_golden(dev["root"], DEV[which], dev["golden"], mirror)
    golden = json.loads((dev["golden"] / f"{DEV[which]}.json").read_text())
    if which == "segments_rr":
        case = golden["cases"]["mitdb_100"]
        assert case["beats_from"] == "atr" and len(case["probabilities"]) == golden_presets.N_BEATS


def test_csv_edf_and_npy_copies_give_the_same_beats_and_classes(dev):
    golden = json.loads((dev["golden"] / "dev-beats.json").read_text())["cases"]
    csv, edf, npy = (golden[f"synthetic_250hz_{k}"] for k in ("csv", "edf", "npy"))
    assert csv["n_beats_total"] > 30 and csv["beats_from"] == "xqrs"
    assert csv["sample"] == edf["sample"] == npy["sample"]
    assert csv["predicted"] == edf["predicted"] == npy["predicted"]
    assert golden_presets.compare(csv["probabilities"], npy["probabilities"]) == []


def test_card_copies_the_final_evaluation_with_intervals_and_licences(dev):
    card = presets.read_card("dev-beats", dev["root"])
    metrics = json.loads((dev["runs"]["segments_rr"] / "metrics_test.json").read_text())
    assert card["metrics"]["evaluated"] is True
    assert card["metrics"]["bootstrap_95ci"] == metrics["bootstrap_95ci"]
    assert card["metrics"]["headline"].startswith("macro_f1 0.420 [0.330, 0.510], accuracy 0.930")
    assert card["input"] == {**card["input"], "fs_hz": 360.0, "window_samples": 720, "leads": ["MLII"],
                             "units": "mV", "input_shape": [720, 4]}
    assert card["source"]["git_commit"] == "0123456789abcdef0123456789abcdef01234567"
    assert card["training"]["leaky"] is False and card["training"]["val_records"] == PR.DS1_VAL
    assert card["budget"]["epochs"] == 3 and card["budget"]["train_minutes"] == 1.5
    assert card["data"][0]["licence"].endswith("(ODC-By 1.0)")
    assert any("Moody GB, Mark RG" in c for c in card["data"][0]["citation"])
    assert card["smoke"] is False and card["warning"] is None
    den = presets.read_card("dev-denoise", dev["root"])
    assert [d["dataset"].split(" v1")[0] for d in den["data"]] == [
        "MIT-BIH Arrhythmia Database", "MIT-BIH Noise Stress Test Database"]
    assert den["metrics"]["headline"] == ("SNR improvement +4.40 dB [+3.90, +4.90] at 6 dB input, "
                                          "mixed NSTDB noise")


def test_card_of_a_run_without_final_evaluation_has_no_numbers(dev):
    card = presets.read_card("dev-ptbxl", dev["root"])
    assert card["metrics"] == {"evaluated": False, "split": None, "headline": "not evaluated on the test split"}
    assert card["data"][0]["licence"].startswith("Creative Commons Attribution 4.0")
    assert "Wagner P" in card["data"][0]["citation"][0]
    assert card["smoke"] is True and card["warning"] == preset_card.SMOKE_WARNING


def test_model_card_table_has_one_row_per_preset(dev):
    rows = presets.markdown_table(dev["root"]).strip().splitlines()
    assert len(rows) == 2 + len(DEV) and rows[0].startswith("| preset | task / model | input |")
    assert rows[2].startswith("| `dev-beats` | mitdb_aami5_segments_rr / ldcnn (")
    assert "2 s at 360 Hz, MLII (mV)" in rows[2] and rows[2].endswith("| ODC-By 1.0 |")
    assert rows[4].startswith("| `dev-ptbxl` **smoke model** |") and "not evaluated on the test split" in rows[4]
    assert rows[4].endswith("| CC BY 4.0 |")


def test_preset_model_is_saved_without_optimizer_state(dev):
    ckpt = dev["runs"]["segments_rr"] / "checkpoints" / "best.keras"
    assert presets.has_optimizer_state(ckpt)
    model = dev["root"] / "dev-beats" / "model.keras"
    assert not presets.has_optimizer_state(model)
    with zipfile.ZipFile(model) as zf:
        assert not json.loads(zf.read("config.json")).get("compile_config")


# ------------------------------------------------------------------ save and load faults


def test_save_preset_refuses_a_run_without_best_checkpoint(dev, tmp_path):
    run = PR.fake_run(tmp_path, "segments_rr", checkpoint=False)
    with pytest.raises(PipelineError, match=r"fake_segments_rr: no best checkpoint \(checkpoints/best\.keras\); "
                                            r"a preset is made from the best checkpoint"):
        presets.save_preset(run, "x", "d", root=tmp_path / "p")
    assert not (tmp_path / "p" / "x").exists()


def test_save_preset_refuses_to_overwrite_unless_forced(dev, tmp_path):
    root = tmp_path / "p"
    run = dev["runs"]["segments_rr"]
    first = presets.save_preset(run, "again", "one", root=root)
    with pytest.raises(PipelineError, match=r"again: preset 'again' exists; pass --force"):
        presets.save_preset(run, "again", "two", root=root)
    assert presets.read_card("again", root)["description"] == "one"
    assert presets.save_preset(run, "again", "two", root=root, force=True) == first
    assert presets.read_card("again", root)["description"] == "two"
    assert [p.name for p in root.iterdir()] == ["again"]  # no temporary folder left


def test_save_preset_over_the_size_limit_leaves_nothing_and_keeps_the_old_one(dev, tmp_path):
    root = tmp_path / "p"
    run = dev["runs"]["segments_rr"]
    with pytest.raises(PipelineError, match=r"model\.keras would be 0\.\d\d MiB, above the "
                                            r"0\.000954 MiB preset limit"):
        presets.save_preset(run, "big", "d", root=root, max_bytes=1000)
    assert list(root.iterdir()) == []
    presets.save_preset(run, "big", "kept", root=root)
    with pytest.raises(PipelineError, match="preset limit"):
        presets.save_preset(run, "big", "new", root=root, force=True, max_bytes=1000)
    assert presets.read_card("big", root)["description"] == "kept"
    assert [p.name for p in root.iterdir()] == ["big"]


@pytest.mark.parametrize("name, description, pattern", [
    ("Bad Name", "d", r"preset name must be lower-case letters.*Received: 'Bad Name'"),
    ("../up", "d", r"preset name must be lower-case.*Received: '\.\./up'"),
    ("ok", "  ", r"a preset needs a description \(--description TEXT\)"),
])
def test_save_preset_refuses_bad_names_and_empty_descriptions(dev, tmp_path, name, description, pattern):
    with pytest.raises(PipelineError, match=pattern):
        presets.save_preset(dev["runs"]["segments_rr"], name, description, root=tmp_path)


def test_save_preset_refuses_a_model_that_needs_unsafe_loading(tmp_path):
    import keras

    inp = keras.Input((720, 4))
    out = keras.layers.Dense(5, activation="softmax")(
        keras.layers.GlobalAveragePooling1D()(keras.layers.Lambda(lambda t: t * 2.0)(inp)))
    run = PR.fake_run(tmp_path, "segments_rr", model=keras.Model(inp, out))
    with pytest.raises(PipelineError, match=r"best\.keras: refusing to load this model file in safe mode"):
        presets.save_preset(run, "unsafe", "d", root=tmp_path / "p")


def test_load_preset_unknown_name_lists_the_known_ones(dev):
    with pytest.raises(PipelineError, match=r"unknown preset 'nope'; known: \['dev-beats', "
                                            r"'dev-denoise', 'dev-ptbxl'\] in "):
        presets.load_preset("nope", dev["root"])


def test_load_preset_refuses_a_model_file_that_differs_from_its_card(dev, tmp_path):
    shutil.copytree(dev["root"] / "dev-beats", tmp_path / "changed")
    with open(tmp_path / "changed" / "model.keras", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(PipelineError, match=r"changed/model\.keras: sha256 [0-9a-f]{16}\.\.\. differs "
                                            r"from the card's [0-9a-f]{16}\.\.\. \(file changed or damaged"):
        presets.load_preset("changed", tmp_path)


def test_load_preset_refuses_an_incomplete_card(dev, tmp_path):
    shutil.copytree(dev["root"] / "dev-beats", tmp_path / "nocard")
    card = json.loads((tmp_path / "nocard" / "preset.json").read_text())
    del card["data"]
    card["input"].pop("fs_hz")
    (tmp_path / "nocard" / "preset.json").write_text(json.dumps(card))
    with pytest.raises(PipelineError, match=r"preset\.json: incomplete card \(missing \['data', "
                                            r"'input\.fs_hz'"):
        presets.load_preset("nocard", tmp_path)


# ------------------------------------------------------------------------- Python API


def test_predict_record_on_an_array_equals_the_same_samples_as_a_file(dev, tmp_path):
    preset = presets.load_preset("dev-beats", dev["root"])
    files = golden_presets.synthetic_files(tmp_path)
    x = np.load(files["npy"][0])
    from_array = preset.predict_record(x, fs=250, leads=["II", "V1"])
    from_file = preset.predict_record(files["csv"][0], fs=250, out_dir=tmp_path / "out")
    np.testing.assert_array_equal(from_array.beats.sample, from_file.beats.sample)
    np.testing.assert_allclose(from_array.probabilities, from_file.probabilities, atol=1e-6)
    assert from_array.summary["input"] == "<array>" and from_array.summary["preset"] == "dev-beats"
    assert from_array.out_dir is None and (tmp_path / "out" / "synth250_beats.png").is_file()
    one = preset.predict_record(x[:, 0], fs=250)  # one column: the card's lead (MLII)
    assert one.summary["lead"] == "MLII"


@pytest.mark.parametrize("kwargs, pattern", [
    ({}, r"an array input needs fs= \(sampling rate in Hz\)"),
    ({"fs": 250}, r"preset dev-beats: an array of 2 column\(s\) needs leads=\[\.\.\.\] "
                  r"\(the preset reads \['MLII'\]\)"),
    ({"fs": 40, "leads": ["II", "V1"]}, r"record array: sampling rate 40 Hz is below 50 Hz"),
])
def test_predict_record_array_errors_give_one_line(dev, kwargs, pattern):
    preset = presets.load_preset("dev-beats", dev["root"])
    with pytest.raises(PipelineError, match=pattern):
        preset.predict_record(np.zeros((5000, 2)), **kwargs)


# -------------------------------------------------------------------------------- CLI


@pytest.fixture()
def env_root(dev, monkeypatch):
    monkeypatch.setenv(presets.PRESETS_ENV, str(dev["root"]))
    return dev["root"]


def _run(capsys, main, *argv):
    rc = run_cli(main, [str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_cli_preset_list_prints_each_preset_with_task_and_metrics(env_root, capsys):
    rc, out, _ = _run(capsys, predict_cmd.main, "--preset", "list")
    lines = out.strip().splitlines()
    assert rc == 0 and [ln.split()[0] for ln in lines] == ["dev-beats", "dev-denoise", "dev-ptbxl"]
    assert "mitdb_aami5_segments_rr / ldcnn  MIT-BIH DS2" in lines[0] and "macro_f1 0.420 [0.330, 0.510]" in lines[0]
    assert lines[2].endswith("not evaluated on the test split  [SMOKE]")


def test_cli_predict_with_a_preset_writes_beats_annotations_summary_and_plot(env_root, tmp_path, capsys):
    files = golden_presets.synthetic_files(tmp_path)
    out = tmp_path / "out"
    rc, stdout, _ = _run(capsys, predict_cmd.main, "--preset", "dev-beats", "--input", files["csv"][0],
                         "--fs", "250", "--out", out)
    assert rc == 0 and stdout.startswith("preset dev-beats: mitdb_aami5_segments_rr / ldcnn")
    s = json.loads((out / "synth250_prediction.json").read_text())
    assert s["run"] == str(env_root / "dev-beats") and s["checkpoint"] == "model.keras"
    assert s["files"]["plot"] == str(out / "synth250_beats.png")
    assert (out / "synth250_beats.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "synth250_beats.csv").is_file() and wfdb.rdann(str(out / "synth250"), "pred").fs == 250


def test_cli_denoiser_preset_writes_the_denoised_record_and_plot(env_root, tmp_path, capsys):
    from data_tools import synthetic

    synthetic.write_record(tmp_path, "noisy", seed=4, duration_s=12.0)
    out = tmp_path / "out"
    rc, stdout, _ = _run(capsys, predict_cmd.main, "--preset", "dev-denoise", "--input",
                         tmp_path / "noisy", "--out", out)
    assert rc == 0 and "warning: smoke model" in stdout
    assert (out / "noisy_denoised.png").is_file() and (out / "noisy_denoised.hea").is_file()


def test_cli_export_turns_a_run_into_a_preset(dev, env_root, capsys):
    rc, out, _ = _run(capsys, export_cmd.main, "--run", dev["runs"]["ptbxl"], "--format", "preset",
                      "--name", "cli-made", "--description", "made by the CLI", "--smoke")
    assert rc == 0 and re.match(r"preset .*cli-made: \d+ bytes, sha256 [0-9a-f]{16}\.\.\.; cli-made  "
                                r"ptbxl_superdiagnostic / cnn  not evaluated", out)
    assert presets.read_card("cli-made")["smoke"] is True
    rc, _, err = _run(capsys, export_cmd.main, "--run", dev["runs"]["ptbxl"], "--format", "preset",
                      "--name", "cli-made", "--description", "again")
    assert rc == 2 and "preset 'cli-made' exists; pass --force" in err
    shutil.rmtree(env_root / "cli-made")


@pytest.mark.parametrize("argv, pattern", [
    (["--format", "preset", "--run", "RUN"], r"--format preset needs --run RUN and --name NAME"),
    (["--format", "preset", "--preset", "dev-beats"], r"--format preset turns a run into a preset"),
    (["--format", "tflite", "--preset", "nope"], r"unknown preset 'nope'; known: \['dev-beats'"),
])
def test_cli_export_preset_argument_errors_give_one_line(env_root, capsys, argv, pattern):
    rc, _, err = _run(capsys, export_cmd.main, *argv)
    lines = [ln for ln in err.splitlines() if ln]
    assert rc == 2 and len(lines) == 1 and re.search(pattern, lines[0]), err


def test_cli_exports_a_preset_to_tflite_with_parity(dev, tmp_path, monkeypatch, capsys):
    root = tmp_path / "p"
    shutil.copytree(dev["root"] / "dev-beats", root / "dev-beats")
    monkeypatch.setenv(presets.PRESETS_ENV, str(root))
    rc, out, _ = _run(capsys, export_cmd.main, "--preset", "dev-beats", "--format", "tflite",
                      "--parity-examples", "16")
    assert rc == 0 and "parity on 16 examples (seeded random normal inputs" in out
    rec = json.loads((root / "dev-beats" / "export" / "export.json").read_text())["tflite"]
    assert rec["ok"] and rec["parity"]["max_abs_diff"] < 1e-3
    assert (root / "dev-beats" / "export" / "model.tflite").is_file()
    presets.load_preset("dev-beats", root)  # the export folder does not disturb the preset


# ------------------------------------------------------------------------ bad user input


def _bad_input(tmp_path, case):
    fs = 250
    sine = np.sin(np.arange(4000)[:, None] / 9.0)
    if case == "csv_no_fs" or case == "rate_40":
        return tmp_path / "user.csv", sine, ["MLII"]
    if case == "lead_unmatched":
        return tmp_path / "user.csv", np.hstack([sine, sine]), ["V1", "V2"]
    if case in ("short", "denoise_short"):
        return tmp_path / "user.csv", sine[: fs if case == "short" else 3 * fs], ["MLII"]
    if case == "npy_nan_only":
        return tmp_path / "user.npy", np.full((4000, 1), np.nan), None
    return tmp_path / "user.edf", sine, ["Resp"]


BAD = [
    ("dev-beats", "csv_no_fs", [], r"user\.csv: --fs is required for \.csv input \(sampling rate in Hz\)"),
    ("dev-beats", "rate_40", ["--fs", "40"], r"record user: sampling rate 40 Hz is below 50 Hz"),
    ("dev-beats", "lead_unmatched", ["--fs", "250"],
     r"record user has leads \['V1', 'V2'\]; the model needs \['MLII'\] \(no lead matches \['MLII'\]; "
     r"names accepted for MLII: MLII, II, ML2, ECG1"),
    ("dev-beats", "short", ["--fs", "250"],
     r"record user: 1 s long, shorter than one model window \(2 s\); nothing to predict"),
    ("dev-beats", "npy_nan_only", ["--fs", "250", "--leads", "MLII"],
     r"record user: lead MLII is all NaN \(no valid sample\); nothing to predict"),
    ("dev-beats", "edf_non_ecg_only", [], r"record user has leads \['Resp'\]; the model needs \['MLII'\]"),
    ("dev-denoise", "denoise_short", ["--fs", "250"],
     r"record user: 3 s long, shorter than one model window \(4 s\)"),
    ("dev-denoise", "edf_non_ecg_only", [],
     r"record user has leads \['Resp'\]; none looks like an ECG lead"),
    ("nope", "csv_no_fs", ["--fs", "250"],
     r"unknown preset 'nope'; known: \['dev-beats', 'dev-denoise', 'dev-ptbxl'\]"),
]


@pytest.mark.parametrize("name, case, argv, pattern", BAD, ids=[f"{b[0]}-{b[1]}" for b in BAD])
def test_cli_bad_input_with_a_preset_gives_one_line(env_root, tmp_path, capsys, name, case, argv, pattern):
    from data_tools.golden_presets import write_edf

    path, x, leads = _bad_input(tmp_path, case)
    if path.suffix == ".csv":
        np.savetxt(path, x, delimiter=",", header=",".join(leads), comments="", fmt="%.6f")
    elif path.suffix == ".npy":
        np.save(path, x)
    else:
        write_edf(path, x, 250, leads)
    rc, _, err = _run(capsys, predict_cmd.main, "--preset", name, "--input", path,
                      "--out", tmp_path / "o", *argv)
    lines = [ln for ln in err.splitlines() if ln]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert re.search(pattern, lines[0]), lines[0]
    assert not list((tmp_path / "o").glob("user_*")) if (tmp_path / "o").is_dir() else True


def test_cli_preset_without_input_gives_one_line(env_root, capsys):
    rc, _, err = _run(capsys, predict_cmd.main, "--preset", "dev-beats")
    assert rc == 2 and err.strip() == ("error: --input is required (a WFDB record, an .edf/.csv/.npy "
                                       "file or a folder)")


def test_mirror_dir_of_the_golden_tool_matches_conftest():
    assert golden_presets.mirror_dir() == mirror_dir()


def test_a_denoiser_runs_pass_through_gate_travels_into_its_preset_and_is_applied(tmp_path):
    from pipeline.evaluation import pass_through
    from pipeline.serving.predict_denoise import denoise_signal

    run = PR.fake_run(tmp_path / "runs", "denoise")
    rng = np.random.default_rng(5)
    x = np.cumsum(rng.normal(size=(3600, 2)), axis=0) * 0.01
    presets.save_preset(run, "plain", "test denoiser", smoke=True, root=tmp_path / "zoo")
    plain = presets.load_preset("plain", tmp_path / "zoo")
    assert plain.run.gate is None and plain.card["pass_through_gate"] is None
    (run / pass_through.GATE_FILE).write_text(json.dumps({"chosen": {"threshold_db": -200.0,
                                                                     "width_db": 1.0}}))
    folder = presets.save_preset(run, "gated", "test denoiser", smoke=True, root=tmp_path / "zoo")
    assert (folder / pass_through.GATE_FILE).is_file()
    gated = presets.load_preset("gated", tmp_path / "zoo")
    assert gated.card["pass_through_gate"] == {"threshold_db": -200.0, "width_db": 1.0}
    assert gated.run.gate == pass_through.GateSetting(-200.0, 1.0)
    y_plain, y_gated = denoise_signal(plain.run, x, 360.0), denoise_signal(gated.run, x, 360.0)
    assert not np.allclose(y_plain, y_gated, atol=1e-3)  # an always-open gate passes the input
    from pipeline.data.signal import highpass

    np.testing.assert_allclose(y_gated[720:-720], highpass(x, 0.5, 360.0)[720:-720], atol=1e-3)


def test_denoiser_card_reports_the_chain_predict_runs():
    """The card's numbers are those of what the preset's predict does: the served chain
    (record high-pass, model, gate) when the run was scored with it; older runs fall back to
    the gate on unfiltered windows, or the model alone."""
    from pipeline.serving.preset_card import denoiser_metrics

    def cell(v):
        return {"mix": {"6": {"snr_imp_db": {"mean": v}}}}

    every = {"u": cell(1.0), "u+gate": cell(2.0), "u+hp": cell(3.0), "u+hp+gate": cell(4.0)}
    gate = {"threshold_db": 10.0, "width_db": 0.5}
    cases = [(every, gate, "u+hp+gate", 4.0, "(the chain predict runs: record high-pass, model, gate)"),
             ({k: every[k] for k in ("u", "u+hp")}, None, "u+hp", 3.0,
              "(the chain predict runs: record high-pass, model)"),
             ({k: every[k] for k in ("u", "u+gate")}, gate, "u+gate", 2.0, "(with its pass-through gate)"),
             ({"u": every["u"]}, None, "u", 1.0, "mixed NSTDB noise")]
    for results, g, method, value, says in cases:
        out = denoiser_metrics("u", {"results": results, "pass_through_gate": g})
        assert out["method"] == method and out["snr_improvement_db"]["mix"]["6"] == value
        assert out["headline"].startswith(f"SNR improvement {value:+.2f} dB")
        assert says in out["headline"]
