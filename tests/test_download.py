"""Download stage: the real code paths against a loopback HTTP server and a local folder
serving ``shared/data``; checksums, resume, corruption, tampering, offline and unsafe paths.

Small subsets only (nstdb, two MIT-BIH records, a few PTB-XL records): the whole file runs in
a few seconds and never leaves 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import socket
import sys
import types
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `.venv/bin/pytest` alone does not put the checkout on the path
    sys.path.insert(0, str(ROOT))

from data_tools.mirror_server import MirrorServer  # noqa: E402
from pipeline.core.config import load_config  # noqa: E402
from pipeline.core.io_utils import PipelineError, run_cli, sha256_file  # noqa: E402
from pipeline.data import download  # noqa: E402
from pipeline.data.download import database_dir, download_database, parse_sha256sums  # noqa: E402
from pipeline.download import main  # noqa: E402

NSTDB_FILES = ["bw.hea", "bw.dat", "em.hea", "em.dat", "ma.hea", "ma.dat"]


@pytest.fixture(autouse=True)
def _isolated(monkeypatch):
    monkeypatch.delenv("ECG_MIRROR", raising=False)
    monkeypatch.delenv("ECG_DATA_DIR", raising=False)
    monkeypatch.setattr(download, "BACKOFF_S", 0.0)


@pytest.fixture
def server(mirror):
    with MirrorServer(mirror) as s:
        yield s


def make_cfg(tmp_path, source, **data):
    """Config with data_dir under tmp_path and ``source`` as mirror ('' = PhysioNet base)."""
    over = {"data_dir": str(tmp_path / "data"), "mirror": str(source), **data}
    return load_config(overrides={"data": over}, apply_env=False)


def sums(mirror, db) -> dict[str, str]:
    return parse_sha256sums((Path(mirror) / db / "SHA256SUMS.txt").read_text(), db)


def assert_verified(root: Path, expected: dict[str, str], rels) -> None:
    for rel in rels:
        assert sha256_file(root / rel) == expected[rel], rel
    leftovers = [p.name for p in root.rglob(".*") if p.name.endswith((".part", ".tmp"))]
    assert leftovers == []


def copy_db(mirror, db, dest_root: Path) -> Path:
    """Writable copy of one database of the mirror, for a tampered folder mirror."""
    dest = dest_root / db
    shutil.copytree(Path(mirror) / db, dest)
    for p in dest.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    return dest


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------ 1. HTTP download


@pytest.mark.mirror
def test_http_download_fetches_and_verifies(server, mirror, tmp_path):
    cfg = make_cfg(tmp_path, server.url, mitdb_records=["100", "101"], ptbxl_max_records=5)

    nst = download_database(cfg, "nstdb")
    mit = download_database(cfg, "mitdb")
    ptb = download_database(cfg, "ptbxl")

    assert (nst["files"], nst["fetched"], nst["already_verified"]) == (6, 6, 0)
    assert nst["bytes_fetched"] == sum((mirror / "nstdb" / f).stat().st_size for f in NSTDB_FILES)
    assert_verified(database_dir(cfg, "nstdb"), sums(mirror, "nstdb"), NSTDB_FILES)

    mit_files = [f"{r}.{e}" for r in ("100", "101") for e in ("hea", "dat", "atr")]
    assert (mit["files"], mit["fetched"], mit["records"]) == (8, 8, ["100", "101"])
    assert_verified(
        database_dir(cfg, "mitdb"), sums(mirror, "mitdb"), mit_files + ["RECORDS", "ANNOTATORS"]
    )
    assert not (database_dir(cfg, "mitdb") / "102.dat").exists()

    ptb_records = [f"records100/00000/{i:05d}_lr" for i in range(1, 6)]
    assert ptb["records"] == ptb_records
    assert (ptb["files"], ptb["fetched"]) == (12, 12)
    ptb_files = ["ptbxl_database.csv", "scp_statements.csv"]
    ptb_files += [f"{r}.{e}" for r in ptb_records for e in ("hea", "dat")]
    assert_verified(database_dir(cfg, "ptbxl"), sums(mirror, "ptbxl"), ptb_files)
    assert not (database_dir(cfg, "ptbxl") / "records100/00000/00006_lr.dat").exists()

    fetched = Counter(server.fetched())
    assert max(fetched.values()) == 1, "a file was downloaded twice"
    assert fetched["/ptbxl/SHA256SUMS.txt"] == 1
    assert len(fetched) == 3 + 6 + 8 + 12


# ------------------------------------------------------------------------- 2. corruption


@pytest.mark.mirror
def test_corrupted_local_file_is_refetched(server, mirror, tmp_path):
    cfg = make_cfg(tmp_path, server.url, retries=0)
    download_database(cfg, "nstdb")
    target = database_dir(cfg, "nstdb") / "bw.dat"
    st = target.stat()
    with open(target, "r+b") as fh:  # same size, same inode
        fh.seek(1000)
        byte = fh.read(1)
        fh.seek(1000)
        fh.write(bytes([byte[0] ^ 0xFF]))
    # An edit moves mtime; make that certain even with coarse file-system timestamps.
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    server.clear()

    summary = download_database(cfg, "nstdb")

    assert (summary["fetched"], summary["rehashed"], summary["already_verified"]) == (1, 1, 5)
    assert server.fetched() == ["/nstdb/bw.dat"]
    assert_verified(database_dir(cfg, "nstdb"), sums(mirror, "nstdb"), NSTDB_FILES)


@pytest.mark.mirror
def test_force_catches_corruption_that_kept_size_and_mtime(server, mirror, tmp_path):
    cfg = make_cfg(tmp_path, server.url)
    download_database(cfg, "nstdb")
    target = database_dir(cfg, "nstdb") / "em.hea"
    st = target.stat()
    data = bytearray(target.read_bytes())
    data[0] ^= 0x01
    with open(target, "r+b") as fh:
        fh.write(data)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))  # silent bit rot
    server.clear()

    assert download_database(cfg, "nstdb")["fetched"] == 0  # the size+mtime cache trusts it
    summary = download_database(cfg, "nstdb", force=True)

    assert (summary["fetched"], summary["rehashed"]) == (1, 6)
    assert sorted(server.fetched()) == ["/nstdb/SHA256SUMS.txt", "/nstdb/em.hea"]
    assert_verified(database_dir(cfg, "nstdb"), sums(mirror, "nstdb"), NSTDB_FILES)


# ----------------------------------------------------------------------------- 3. resume


@pytest.mark.mirror
def test_dropped_connection_resumes_with_range(server, mirror, tmp_path):
    cfg = make_cfg(tmp_path, server.url, retries=1)
    server.drop_once("/nstdb/bw.dat", after_bytes=700_000)

    summary = download_database(cfg, "nstdb")

    assert summary["fetched"] == 6
    tries = [r for r in server.requests if r.path == "/nstdb/bw.dat"]
    assert [(r.range is None, r.status) for r in tries] == [(True, 200), (False, 206)]
    start = int(re.fullmatch(r"bytes=(\d+)-", tries[1].range).group(1))
    assert 0 < start <= 700_000
    # Resumed bytes are not fetched twice: the total equals the file sizes.
    assert summary["bytes_fetched"] == sum(
        (mirror / "nstdb" / f).stat().st_size for f in NSTDB_FILES
    )
    assert_verified(database_dir(cfg, "nstdb"), sums(mirror, "nstdb"), NSTDB_FILES)


@pytest.mark.mirror
def test_interrupted_run_resumes_and_fetches_only_what_is_missing(server, mirror, tmp_path):
    cfg = make_cfg(tmp_path, server.url, retries=0)
    server.drop_once("/nstdb/em.dat", after_bytes=500_000)
    root = database_dir(cfg, "nstdb")

    with pytest.raises(PipelineError, match=r"could not fetch em\.dat .*rerun the same command"):
        download_database(cfg, "nstdb", workers=1)
    part = root / ".em.dat.part"
    assert part.is_file() and 0 < part.stat().st_size <= 500_000
    assert not (root / "em.dat").exists()
    kept = part.stat().st_size
    missing = [f for f in NSTDB_FILES if not (root / f).exists()]
    assert missing[0] == "em.dat" and "bw.dat" not in missing
    server.clear()

    summary = download_database(cfg, "nstdb")

    assert (summary["fetched"], summary["already_verified"]) == (len(missing), 6 - len(missing))
    assert sorted(server.fetched()) == sorted(f"/nstdb/{f}" for f in missing)
    (em,) = [r for r in server.requests if r.path == "/nstdb/em.dat"]
    assert (em.range, em.status) == (f"bytes={kept}-", 206)
    assert_verified(root, sums(mirror, "nstdb"), NSTDB_FILES)


@pytest.mark.mirror
@pytest.mark.parametrize(
    "kind, statuses",
    [("prefix", [206]), ("garbage", [206, 200]), ("too_long", [416, 200])],
)
def test_leftover_part_file(server, mirror, tmp_path, kind, statuses):
    cfg = make_cfg(tmp_path, server.url, retries=1, mitdb_records=["100"])
    good = (mirror / "mitdb" / "100.dat").read_bytes()
    part = database_dir(cfg, "mitdb") / ".100.dat.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(
        {"prefix": good[:1_000_000], "garbage": b"\x00" * 1000, "too_long": good + b"x"}[kind]
    )

    download_database(cfg, "mitdb")

    assert [r.status for r in server.requests if r.path == "/mitdb/100.dat"] == statuses
    assert_verified(database_dir(cfg, "mitdb"), sums(mirror, "mitdb"), ["100.dat", "100.hea"])


# -------------------------------------------------------------------- 4. tampered mirror


@pytest.mark.mirror
def test_tampered_http_mirror_is_refused(server, mirror, tmp_path, capsys):
    cfg = make_cfg(tmp_path, server.url, retries=1)
    server.override("/nstdb/em.hea", b"tampered\n")
    bad = hashlib.sha256(b"tampered\n").hexdigest()
    good = sums(mirror, "nstdb")["em.hea"]
    root = database_dir(cfg, "nstdb")

    with pytest.raises(
        PipelineError,
        match=rf"nstdb: em\.hea: sha256 mismatch after 2 attempt\(s\) from http://127\.0\.0\.1:\d+/nstdb/em\.hea: "
        rf"got {bad}, SHA256SUMS\.txt lists {good}",
    ):
        download_database(cfg, "nstdb")
    assert [r.path for r in server.requests].count("/nstdb/em.hea") == 2
    assert not (root / "em.hea").exists()
    assert not (root / ".em.hea.part").exists()

    argv = ["--data-dir", cfg.data.data_dir, "--mirror", server.url, "--databases", "nstdb"]
    assert run_cli(main, argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"got {bad}" in err and "em.hea" in err
    assert not (root / "em.hea").exists()


@pytest.mark.mirror
def test_tampered_folder_mirror_is_refused(mirror, tmp_path):
    fake = copy_db(mirror, "nstdb", tmp_path / "fake_mirror")
    (fake / "ma.dat").write_bytes(b"\x00" * 10)
    cfg = make_cfg(tmp_path, tmp_path / "fake_mirror")

    with pytest.raises(
        PipelineError, match=r"nstdb: ma\.dat: sha256 mismatch after 4 attempt\(s\)"
    ):
        download_database(cfg, "nstdb")
    root = database_dir(cfg, "nstdb")
    assert not (root / "ma.dat").exists()
    assert [p.name for p in root.glob(".ma.dat*")] == []


# ------------------------------------------------------------------------------ 5. offline


def test_offline_without_mirror_says_how_to_use_one(tmp_path, capsys):
    base = f"http://127.0.0.1:{closed_port()}/files"
    argv = ["--data-dir", str(tmp_path / "data"), "--databases", "nstdb"]
    argv += ["--set", f"data.base_url={base}", "--set", "data.retries=1"]

    assert run_cli(main, argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "--mirror DIR_OR_URL" in err and "ECG_MIRROR=" in err and "Connection refused" in err

    with pytest.raises(
        PipelineError,
        match=r"cannot reach .*offline\? use a mirror with --mirror DIR_OR_URL or ECG_MIRROR=",
    ):
        main(argv)


def test_dns_failure_is_not_retried(tmp_path, monkeypatch):
    requests = pytest.importorskip("requests")
    calls = []

    def no_dns(self, url, **kwargs):
        calls.append(url)
        raise requests.ConnectionError(
            "NameResolutionError: Failed to resolve 'physionet.org' "
            "([Errno -3] Temporary failure in name resolution)"
        )

    monkeypatch.setattr(requests.Session, "get", no_dns)
    cfg = make_cfg(tmp_path, "", retries=3)
    with pytest.raises(
        PipelineError,
        match=r"cannot reach https://physionet\.org/files \(\[Errno -3\] Temporary failure in name resolution\); offline\? .*--mirror",
    ):
        download_database(cfg, "nstdb")
    assert calls == ["https://physionet.org/files/nstdb/1.0.0/SHA256SUMS.txt"]


@pytest.mark.parametrize(
    "data",
    [
        {"mirror": "http://example.org/data"},
        {"mirror": "ftp://example.org/data"},
        {"base_url": "http://physionet.org/files"},
    ],
)
def test_insecure_urls_are_refused(tmp_path, data):
    cfg = load_config(overrides={"data": {"data_dir": str(tmp_path), **data}}, apply_env=False)
    with pytest.raises(PipelineError, match=r"refusing URL .*only https://"):
        download_database(cfg, "nstdb")


# --------------------------------------------------------------------------- 6. bad paths


@pytest.mark.mirror
@pytest.mark.parametrize("bad", ["../evil", "/etc/evil", "sub/../../evil", "..\\evil"])
def test_unsafe_checksum_path_is_refused(mirror, tmp_path, bad):
    fake = copy_db(mirror, "nstdb", tmp_path / "fake_mirror")
    with open(fake / "SHA256SUMS.txt", "a") as fh:
        fh.write(f"{'0' * 64} {bad}\n")
    cfg = make_cfg(tmp_path, tmp_path / "fake_mirror")

    with pytest.raises(
        PipelineError, match=r"SHA256SUMS\.txt from mirror .* line 7: path .* is not allowed"
    ):
        download_database(cfg, "nstdb")
    assert not (tmp_path / "data" / "raw" / "evil").exists()
    assert [p.name for p in (tmp_path / "data" / "raw" / "nstdb").iterdir()] == [".download.lock"]


@pytest.mark.mirror
def test_file_missing_from_checksums_is_refused(mirror, tmp_path):
    fake = copy_db(mirror, "nstdb", tmp_path / "fake_mirror")
    lines = (fake / "SHA256SUMS.txt").read_text().splitlines()
    (fake / "SHA256SUMS.txt").write_text(
        "\n".join(x for x in lines if not x.endswith(" em.dat")) + "\n"
    )
    cfg = make_cfg(tmp_path, tmp_path / "fake_mirror")

    with pytest.raises(
        PipelineError,
        match=r"nstdb: 1 file\(s\) are not listed in SHA256SUMS\.txt of mirror .*\(first: em\.dat\); refusing unverifiable files",
    ):
        download_database(cfg, "nstdb")
    assert not (database_dir(cfg, "nstdb") / "em.dat").exists()


def test_unsafe_ptbxl_filename_is_refused(tmp_path):
    fake = tmp_path / "fake_mirror" / "ptbxl"
    fake.mkdir(parents=True)
    (fake / "ptbxl_database.csv").write_text(
        "ecg_id,filename_lr\n1,records100/00000/00001_lr\n2,../../evil\n"
    )
    (fake / "scp_statements.csv").write_text("code\n")
    (fake / "SHA256SUMS.txt").write_text(
        "".join(
            f"{sha256_file(fake / n)} {n}\n" for n in ("ptbxl_database.csv", "scp_statements.csv")
        )
    )
    cfg = make_cfg(tmp_path, tmp_path / "fake_mirror")
    with pytest.raises(
        PipelineError,
        match=r"ptbxl_database\.csv line 3: filename_lr '\.\./\.\./evil' is not allowed",
    ):
        download_database(cfg, "ptbxl")


@pytest.mark.mirror
def test_ptbxl_beyond_the_mirror_says_how_many_it_has(mirror, tmp_path):
    cfg = make_cfg(tmp_path, mirror, ptbxl_max_records=600)
    with pytest.raises(
        PipelineError,
        match=r"ptbxl: 200 file\(s\) are not listed .*set data\.ptbxl_max_records=500",
    ):
        download_database(cfg, "ptbxl")


@pytest.mark.parametrize(
    "records, message",
    [
        (["100", "999"], r"unknown mitdb record '999' in data\.mitdb_records; known: \['100'"),
        (["../100"], r"mitdb record '\.\./100' is not allowed"),
    ],
)
def test_bad_mitdb_records_are_refused(tmp_path, records, message):
    cfg = make_cfg(tmp_path, tmp_path, mitdb_records=records)
    with pytest.raises(PipelineError, match=message):
        download_database(cfg, "mitdb")


def test_unknown_database_is_refused(tmp_path):
    cfg = make_cfg(tmp_path, tmp_path)
    with pytest.raises(
        PipelineError, match=r"unknown database 'mimic'; known: \['mitdb', 'nstdb', 'ptbxl'\]"
    ):
        download_database(cfg, "mimic")


# ------------------------------------------------------------------------ 7. idempotence


@pytest.mark.mirror
def test_second_run_does_no_work_and_force_reverifies(server, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="ecg")
    argv = ["--data-dir", str(tmp_path / "data"), "--mirror", server.url, "--databases", "nstdb"]
    assert main(argv) == 0
    assert "nstdb: 6 files, 0 already verified, 6 fetched (5.9 MB)" in caplog.text
    server.clear()
    caplog.clear()

    assert main(argv) == 0
    assert "nstdb: all 6 files already verified, nothing to do" in caplog.text
    assert server.requests == []  # not even the checksum list
    caplog.clear()

    assert main([*argv, "--force"]) == 0
    assert "nstdb: re-verified 6 files by hash, 0 fetched" in caplog.text
    assert server.fetched() == ["/nstdb/SHA256SUMS.txt"]


# -------------------------------------------------------------------- 8. folder mirror


@pytest.mark.mirror
def test_folder_mirror(mirror, tmp_path):
    cfg = make_cfg(tmp_path, mirror, mitdb_records=["100"], ptbxl_max_records=3)
    for db, n in (("nstdb", 6), ("mitdb", 5), ("ptbxl", 8)):
        summary = download_database(cfg, db)
        assert (summary["files"], summary["fetched"], summary["source"]) == (
            n,
            n,
            f"mirror {mirror}",
        )
        root = database_dir(cfg, db)
        expected = sums(mirror, db)
        files = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]
        data = sorted(
            f for f in files if f not in ("SHA256SUMS.txt", ".verified.json", ".download.lock")
        )
        assert len(data) == n
        assert_verified(root, expected, data)
    assert download_database(cfg, "mitdb")["fetched"] == 0


# ------------------------------------------------------------------------------ synthetic


def _fake_synthetic(calls):
    def write_synthetic_database(
        out_dir: Path, n_records: int = 4, seed: int = 0, duration_s: float = 120.0
    ):
        calls.append(out_dir)
        lines = []
        for name in ("s01", "s02"):
            for ext, data in (
                ("hea", f"{name} 1 360 10\n".encode()),
                ("dat", bytes(20)),
                ("atr", bytes(4)),
            ):
                (out_dir / f"{name}.{ext}").write_bytes(data)
                lines.append(f"{hashlib.sha256(data).hexdigest()} {name}.{ext}\n")
        (out_dir / "SHA256SUMS.txt").write_text("".join(lines))
        return ["s01", "s02"]

    return types.SimpleNamespace(write_synthetic_database=write_synthetic_database)


def test_synthetic_source(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="ecg")
    calls: list[Path] = []
    monkeypatch.setitem(sys.modules, "data_tools.synthetic", _fake_synthetic(calls))
    argv = ["--data-dir", str(tmp_path / "data"), "--source", "synthetic"]

    assert main(argv) == 0
    out = tmp_path / "data" / "raw" / "mitdb"
    assert calls == [out] and (out / "s02.atr").is_file()
    assert "skipping nstdb, ptbxl" in caplog.text
    assert main(argv) == 0
    assert len(calls) == 1 and "mitdb: all 6 files already verified" in caplog.text

    cfg = make_cfg(tmp_path, tmp_path)
    with pytest.raises(
        PipelineError, match=r"holds synthetic records; remove it or use another --data-dir"
    ):
        download_database(cfg, "mitdb")


def test_synthetic_source_without_its_module(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "data_tools.synthetic", None)
    with pytest.raises(PipelineError, match=r"--source synthetic needs data_tools\.synthetic"):
        main(["--data-dir", str(tmp_path), "--source", "synthetic"])


@pytest.mark.mirror
def test_two_downloads_into_one_folder_take_turns(mirror, tmp_path, caplog):
    fcntl = pytest.importorskip("fcntl")
    import threading

    caplog.set_level(logging.INFO, logger="ecg")
    cfg = make_cfg(tmp_path, mirror)
    root = database_dir(cfg, "nstdb")
    root.mkdir(parents=True)
    result = {}
    with open(root / ".download.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        worker = threading.Thread(target=lambda: result.update(download_database(cfg, "nstdb")))
        worker.start()
        worker.join(timeout=0.5)
        assert worker.is_alive() and not (root / "bw.hea").exists()
        fcntl.flock(fh, fcntl.LOCK_UN)
    worker.join(timeout=10)
    assert result["fetched"] == 6
    assert "another download is writing here; waiting for it" in caplog.text
