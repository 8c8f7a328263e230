"""Download stage: PhysioNet databases (or a mirror of them), verified file by file.

    python -m pipeline.download [--config quick] [--databases mitdb nstdb ptbxl]
                                [--mirror DIR_OR_URL] [--force] [--source synthetic]

Files land in ``<data_dir>/raw/<database>/<path>`` in PhysioNet's own layout, so
``wfdb.rdrecord("<data_dir>/raw/mitdb/100")`` reads them directly.

Sources, in order of preference:

* a mirror (``--mirror`` or ``$ECG_MIRROR``): a local folder or an ``https://`` base URL laid
  out like ``shared/data``: ``<mirror>/<database>/<path>``;
* PhysioNet itself: ``<data.base_url>/<slug>/<version>/<path>``;
* ``--source synthetic``: seeded synthetic MIT-BIH-like records (offline demo).

Integrity: the database's ``SHA256SUMS.txt`` is fetched first and kept beside the files. Every
file used must be listed there, and a file only reaches its final name after its SHA-256
matches: HTTP downloads stream into a hidden ``.<name>.part`` file (kept when interrupted, and
resumed with a ``Range`` request on the next attempt or run), folder copies go through
:func:`~pipeline.io_utils.atomic_path`. Files already verified are recorded in
``.verified.json`` (keyed by size, mtime and inode), so a second run does no work;
``--force`` fetches the checksums again and hashes every file.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import logging
import os
import re
import threading
import time
import types
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.core.config import MIRROR_ENV, PipelineConfig
from pipeline.core.io_utils import (
    PipelineError,
    UnknownNameError,
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    inside,
    read_json,
    safe_name,
    safe_relpath,
    sha256_file,
)

log = logging.getLogger("ecg.download")

MANIFEST = "SHA256SUMS.txt"
"""Checksum list of a database, PhysioNet's ``<sha256> <path>`` format."""
CACHE = ".verified.json"
"""Per-database record of files whose hash was checked (size, mtime, inode, sha256)."""
CACHE_VERSION = 1
DEFAULT_WORKERS = 4
"""Parallel HTTP downloads (PTB-XL is tens of thousands of small files)."""
BACKOFF_S = 1.0
"""Wait before the first retry after a network error; doubles each retry, at most 10 s."""
MAX_REDIRECTS = 5
CHUNK_BYTES = 1 << 16
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
MIRROR_HINT = (
    f"use a mirror with --mirror DIR_OR_URL or {MIRROR_ENV}=DIR_OR_URL (a folder or https URL "
    "laid out like shared/data), or put a local copy with its SHA256SUMS.txt in {root}"
)

MITDB_RECORDS = tuple(
    "100 101 102 103 104 105 106 107 108 109 111 112 113 114 115 116 117 118 119 121 122 123 "
    "124 200 201 202 203 205 207 208 209 210 212 213 214 215 217 219 220 221 222 223 228 230 "
    "231 232 233 234".split()
)


@dataclass(frozen=True)
class Database:
    """One PhysioNet release and the files the pipeline takes from it."""

    name: str
    """Key for ``--databases``, folder name under ``raw/`` and in a mirror."""
    slug: str
    """PhysioNet project slug (``<base_url>/<slug>/<version>/``)."""
    version: str
    title: str
    records: tuple[str, ...]
    """Record names; empty when they come from a metadata table (PTB-XL)."""
    extensions: tuple[str, ...]
    """Files per record: ``<record>.<ext>``."""
    metadata: tuple[str, ...] = ()
    """Files that must be fetched first (they say which records exist)."""
    optional: tuple[str, ...] = ()
    """Files fetched when the checksum list has them."""


DATABASES: Mapping[str, Database] = types.MappingProxyType(
    {
        db.name: db
        for db in (
            Database(
                "mitdb", "mitdb", "1.0.0", "MIT-BIH Arrhythmia Database",
                records=MITDB_RECORDS, extensions=("hea", "dat", "atr"),
                optional=("RECORDS", "ANNOTATORS"),
            ),
            Database(
                "nstdb", "nstdb", "1.0.0", "MIT-BIH Noise Stress Test Database",
                records=("bw", "em", "ma"), extensions=("hea", "dat"),
            ),
            Database(
                "ptbxl", "ptb-xl", "1.0.1", "PTB-XL (100 Hz records)",
                records=(), extensions=("hea", "dat"),
                metadata=("ptbxl_database.csv", "scp_statements.csv"),
            ),
        )
    }
)  # fmt: skip


def get_database(name: str) -> Database:
    """The :class:`Database` called ``name``; raises with the known names otherwise."""
    try:
        return DATABASES[name]
    except KeyError:
        raise UnknownNameError(f"unknown database {name!r}; known: {sorted(DATABASES)}") from None


def database_dir(cfg: PipelineConfig, db_name: str) -> Path:
    """Folder holding a database's raw files: ``<data_dir>/raw/<db_name>``."""
    return Path(cfg.data.data_dir) / "raw" / get_database(db_name).name


# ------------------------------------------------------------------------------ checksums

_HEX64 = re.compile(r"[0-9a-f]{64}")


def parse_sha256sums(text: str, where: str) -> dict[str, str]:
    """Parses a ``SHA256SUMS.txt`` (``<sha256> <path>`` per line) into ``{path: sha256}``.

    Every path is checked with :func:`~pipeline.io_utils.safe_relpath`: one absolute path or
    ``..`` anywhere refuses the whole list, since it did not come from an honest source.

    Args:
        text: file content.
        where: where it came from, for error messages.
    """
    out: dict[str, str] = {}
    for i, raw_line in enumerate(text.splitlines(), 1):
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(maxsplit=1)
        digest = parts[0].lower()
        if len(parts) != 2 or not _HEX64.fullmatch(digest):
            raise PipelineError(f"{where} line {i}: expected '<sha256> <path>', got {line[:80]!r}")
        rel = parts[1].strip()
        rel = rel[1:] if rel.startswith("*") else rel  # sha256sum's binary-mode marker
        try:
            safe_relpath(rel, "path")
        except PipelineError as exc:
            raise PipelineError(f"{where} line {i}: {exc}") from None
        if out.setdefault(rel, digest) != digest:
            raise PipelineError(f"{where} line {i}: {rel!r} is listed twice with different hashes")
    if not out:
        raise PipelineError(f"{where}: no checksums in it")
    return out


# -------------------------------------------------------------------------------- sources


def _check_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    ok = parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS)
    if not ok or not parts.hostname:
        raise PipelineError(
            f"refusing URL {url!r}: only https:// (or http://127.0.0.1 / localhost for tests) "
            "is allowed"
        )
    return url


@dataclass(frozen=True)
class _Source:
    kind: str
    """``dir`` or ``url``."""
    base: str
    """Folder or URL of this database's tree, without a trailing slash."""
    label: str
    is_physionet: bool
    """The configured PhysioNet base (an unreachable one means we are offline)."""

    def locate(self, rel: str) -> str:
        if self.kind == "dir":
            return str(Path(self.base) / rel)
        return f"{self.base}/{urllib.parse.quote(rel)}"


def _source_for(cfg: PipelineConfig, db: Database) -> _Source:
    mirror = cfg.data.mirror.strip()
    if mirror and "://" in mirror:
        base = _check_url(mirror).rstrip("/")
        return _Source("url", f"{base}/{db.name}", f"mirror {base}", False)
    if mirror:
        root = Path(mirror).expanduser()
        if not root.is_dir():
            raise PipelineError(f"mirror folder {root} does not exist (--mirror / ${MIRROR_ENV})")
        return _Source("dir", str(root / db.name), f"mirror {root}", False)
    base = _check_url(cfg.data.base_url.strip()).rstrip("/")
    return _Source("url", f"{base}/{db.slug}/{db.version}", base, True)


class _Transient(Exception):
    """A network failure a retry (or a rerun) may fix."""

    def __init__(self, message: str, retry: bool = True, nbytes: int = 0) -> None:
        super().__init__(message)
        self.retry = retry
        self.nbytes = nbytes
        """Bytes received (and kept in the ``.part`` file) before the failure."""


class _Mismatch(Exception):
    def __init__(self, got: str) -> None:
        super().__init__(got)
        self.got = got


def _reason(exc: BaseException) -> str:
    """Short cause of a requests error: ``[Errno 111] Connection refused`` rather than a page."""
    text = str(exc)
    m = re.search(r"\[Errno -?\d+\] [^'\")\]]+", text)
    if m:
        return m.group(0).strip()
    if "NameResolutionError" in text or "getaddrinfo" in text:
        return "name resolution failed"
    return f"{type(exc).__name__}: {text[:200]}"


def _is_dns_failure(exc: BaseException) -> bool:
    text = str(exc)
    return any(
        s in text
        for s in (
            "NameResolutionError",
            "Name or service not known",
            "name resolution",
            "getaddrinfo",
        )
    )


class _Http:
    """Thread-safe GETs: one keep-alive session per thread, every redirect target checked."""

    def __init__(self, timeout_s: float, loopback: bool) -> None:
        self.timeout_s = timeout_s
        self.loopback = loopback
        self._local = threading.local()
        self._sessions: list[Any] = []
        self._lock = threading.Lock()

    def _session(self) -> Any:
        import requests

        s = getattr(self._local, "session", None)
        if s is None:
            s = requests.Session()
            s.trust_env = not self.loopback  # never send loopback traffic through a proxy
            s.headers["Accept-Encoding"] = "identity"  # byte ranges of the file itself
            self._local.session = s
            with self._lock:
                self._sessions.append(s)
        return s

    def get(self, url: str, headers: Mapping[str, str] | None = None, stream: bool = False) -> Any:
        import requests

        for _ in range(MAX_REDIRECTS + 1):
            _check_url(url)
            try:
                resp = self._session().get(
                    url,
                    headers=dict(headers or {}),
                    stream=stream,
                    timeout=self.timeout_s,
                    allow_redirects=False,
                )
            except requests.RequestException as exc:
                raise _Transient(_reason(exc), retry=not _is_dns_failure(exc)) from exc
            if not resp.is_redirect:
                return resp
            url = urllib.parse.urljoin(url, resp.headers["location"])
            resp.close()
        raise PipelineError(f"too many redirects fetching {url}")

    def close(self) -> None:
        with self._lock:
            for s in self._sessions:
                s.close()
            self._sessions.clear()


def _check_status(code: int, url: str) -> None:
    if code in (200, 206):
        return
    if code == 429 or code >= 500:
        raise _Transient(f"HTTP {code} from {url}")
    raise PipelineError(f"{url}: HTTP {code}" + (" (not found)" if code == 404 else ""))


def _stat_key(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ino": st.st_ino}


def _fmt_mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 or n == 0 else f"{n / 1e3:.1f} kB"


# ----------------------------------------------------------------------------- one database


class _Cache:
    """The verification cache of one database folder (``.verified.json``): which files were
    hashed, keyed by size, mtime and inode, and which source wrote the folder."""

    def __init__(self, root: Path, db_name: str) -> None:
        self.root = root
        self.db_name = db_name
        self.data = self._load()
        self.dirty = False

    def _load(self) -> dict[str, Any]:
        path = self.root / CACHE
        empty: dict[str, Any] = {"version": CACHE_VERSION, "source": None, "files": {}}
        if not path.is_file():
            return empty
        try:
            data = read_json(path, "verification cache")
            if (
                not isinstance(data, dict)
                or data.get("version") != CACHE_VERSION
                or not isinstance(data.get("files"), dict)
            ):
                raise PipelineError(f"{path}: unexpected layout")
            return data
        except PipelineError as exc:
            log.warning(
                "%s: ignoring unreadable %s (%s); files will be hashed again",
                self.db_name,
                path,
                exc,
            )
            return empty

    def save(self, source_kind: str) -> None:
        if self.dirty and self.root.is_dir():
            self.data["source"] = source_kind
            atomic_write_json(self.root / CACHE, self.data)

    def check_source_kind(self, source_kind: str) -> None:
        held = self.data.get("source")
        if held and held != source_kind:
            raise PipelineError(
                f"{self.root} holds {held} records; remove it or use another --data-dir "
                f"for --source {source_kind}"
            )

    def mark(self, rel: str, dest: Path, digest: str) -> None:
        self.data["files"][rel] = {"sha256": digest, **_stat_key(dest)}
        self.dirty = True

    def forget(self, rel: str) -> None:
        self.data["files"].pop(rel, None)
        self.dirty = True

    def holds(self, rel: str, dest: Path, expected: str) -> bool:
        """True when the cache says ``dest`` was hashed to ``expected`` as it is now."""
        entry = self.data["files"].get(rel)
        return (
            entry is not None
            and entry.get("sha256") == expected
            and {k: entry.get(k) for k in ("size", "mtime_ns", "ino")} == _stat_key(dest)
        )


class _Fetcher:
    """Gets files of one database from its source (a folder or HTTP), with retries, resumed
    partial downloads and the hash checked before a file reaches its name."""

    def __init__(self, cfg: PipelineConfig, db: Database, root: Path, src: _Source) -> None:
        self.cfg = cfg
        self.db = db
        self.root = root
        self.src = src
        self.http = _Http(cfg.data.timeout_s, loopback=_is_loopback(src))

    def close(self) -> None:
        self.http.close()

    def manifest_bytes(self) -> bytes:
        where = self.src.locate(MANIFEST)
        if self.src.kind == "dir":
            path = Path(where)
            if not path.is_file():
                raise PipelineError(f"{self.src.label} has no {self.db.name}/{MANIFEST}")
            return path.read_bytes()
        attempts = max(0, self.cfg.data.retries) + 1
        last: _Transient | None = None
        for attempt in range(attempts):
            try:
                with self.http.get(where) as resp:
                    _check_status(resp.status_code, where)
                    return resp.content
            except _Transient as exc:
                last = exc
                if not exc.retry or attempt == attempts - 1:
                    break
                _backoff(attempt)
        if self.src.is_physionet:
            raise PipelineError(
                f"cannot reach {self.src.label} ({last}); offline? "
                + MIRROR_HINT.format(root=self.root)
            )
        raise PipelineError(f"cannot reach {self.src.label} ({last}) fetching {where}")

    def _http_once(self, url: str, part: Path) -> tuple[str, int]:
        """GETs ``url`` into ``part``, resuming what it already holds. Returns (sha256, bytes)."""
        import requests

        offset = part.stat().st_size if part.is_file() else 0
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        with self.http.get(url, headers, stream=True) as resp:
            code = resp.status_code
            if offset and code == 416:  # the partial file is as long as the file, or longer
                part.unlink()
                return self._http_once(url, part)
            h = hashlib.sha256()
            if offset and code == 206:
                if not resp.headers.get("Content-Range", "").startswith(f"bytes {offset}-"):
                    part.unlink()
                    raise _Transient(
                        f"unexpected Content-Range {resp.headers.get('Content-Range')!r}"
                    )
                log.info("%s: resuming %s at %s", self.db.name, url, _fmt_mb(offset))
                with open(part, "rb") as fh:
                    for block in iter(lambda: fh.read(1 << 20), b""):
                        h.update(block)
                mode = "ab"
            else:
                _check_status(code, url)
                if code != 200:
                    raise _Transient(f"HTTP {code} to a request without Range")
                mode = "wb"
            n = 0
            try:
                with open(part, mode) as fh:
                    for chunk in resp.iter_content(CHUNK_BYTES):
                        fh.write(chunk)
                        h.update(chunk)
                        n += len(chunk)
                    fh.flush()
                    os.fsync(fh.fileno())
            except requests.RequestException as exc:
                raise _Transient(
                    f"connection lost after {offset + n} bytes ({_reason(exc)})", nbytes=n
                ) from exc
        return h.hexdigest(), n

    def _fetch_once(self, rel: str, dest: Path, expected: str) -> int:
        where = self.src.locate(rel)
        if self.src.kind == "dir":
            src = Path(where)
            if not src.is_file():
                raise PipelineError(
                    f"{self.db.name}: {rel} is listed in {MANIFEST} but missing from {self.src.label}"
                )
            h = hashlib.sha256()
            n = 0
            with atomic_path(dest) as tmp:
                with open(src, "rb") as fin, open(tmp, "wb") as fout:
                    for block in iter(lambda: fin.read(1 << 20), b""):
                        fout.write(block)
                        h.update(block)
                        n += len(block)
                    fout.flush()
                    os.fsync(fout.fileno())
                if h.hexdigest() != expected:
                    raise _Mismatch(h.hexdigest())
            return n
        # The .part file is the temporary file: kept when interrupted so that the next attempt
        # (or run) resumes it, renamed into place only once its hash matches.
        part = dest.with_name(f".{dest.name}.part")
        got, n = self._http_once(where, part)
        if got != expected:
            part.unlink()
            raise _Mismatch(got)
        os.replace(part, dest)
        return n

    def fetch(self, rel: str, expected: str) -> tuple[int, int]:
        """Fetches one listed file with retries. Returns (bytes transferred, bytes on disk)."""
        dest = inside(self.root, rel)
        dest.parent.mkdir(parents=True, exist_ok=True)
        attempts = max(0, self.cfg.data.retries) + 1
        transferred = 0
        last: Exception | None = None
        for attempt in range(attempts):
            try:
                transferred += self._fetch_once(rel, dest, expected)
                return transferred, dest.stat().st_size
            except _Mismatch as exc:
                last = exc
            except _Transient as exc:
                last = exc
                transferred += exc.nbytes
                if not exc.retry:
                    break
                if attempt < attempts - 1:
                    _backoff(attempt)
            except OSError as exc:
                raise PipelineError(f"{self.db.name}: cannot write {dest}: {exc}") from exc
        where = self.src.locate(rel)
        if isinstance(last, _Mismatch):
            raise PipelineError(
                f"{self.db.name}: {rel}: sha256 mismatch after {attempts} attempt(s) from {where}: "
                f"got {last.got}, {MANIFEST} lists {expected}; the source is corrupt or was "
                "tampered with, nothing was kept"
            )
        hint = f"; offline? {MIRROR_HINT.format(root=self.root)}" if self.src.is_physionet else ""
        raise PipelineError(
            f"{self.db.name}: could not fetch {rel} from {where} ({last}); "
            f"rerun the same command to resume{hint}"
        )


class _Job:
    """Brings one database folder in line with its checksum list (the job loop)."""

    def __init__(
        self, cfg: PipelineConfig, db: Database, force: bool, workers: int, source_kind: str
    ) -> None:
        self.cfg = cfg
        self.db = db
        self.force = force
        self.workers = max(1, workers)
        self.root = database_dir(cfg, db.name)
        self.source_kind = source_kind
        self.fetcher: _Fetcher | None = None
        self.manifest: dict[str, str] = {}
        self.manifest_fresh = False
        self.cache = _Cache(self.root, db.name)
        self.counts = {"files": 0, "already_verified": 0, "rehashed": 0, "fetched": 0}
        self.bytes_fetched = 0

    @property
    def src(self) -> _Source | None:
        return self.fetcher.src if self.fetcher is not None else None

    def save_cache(self) -> None:
        self.cache.save(self.source_kind)

    def load_manifest(self, fresh: bool) -> None:
        local = self.root / MANIFEST
        if not fresh and local.is_file():
            try:
                self.manifest = parse_sha256sums(local.read_text(encoding="utf-8"), str(local))
                self.manifest_fresh = False
                return
            except (PipelineError, UnicodeDecodeError, OSError) as exc:
                log.warning("%s: %s; fetching the checksums again", self.db.name, exc)
        assert self.fetcher is not None
        raw = self.fetcher.manifest_bytes()
        where = f"{MANIFEST} from {self.fetcher.src.label}"
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise PipelineError(f"{where}: not UTF-8 text") from None
        self.manifest = parse_sha256sums(text, where)
        self.manifest_fresh = True
        atomic_write_bytes(local, raw)

    def require_listed(self, rels: list[str], hint: Callable[[], str] | None = None) -> None:
        """Refuses files the checksum list lacks (after fetching a saved list afresh)."""
        missing = [r for r in rels if r not in self.manifest]
        if missing and not self.manifest_fresh:
            log.info(
                "%s: saved %s lacks %d file(s); fetching it again",
                self.db.name,
                MANIFEST,
                len(missing),
            )
            self.load_manifest(fresh=True)
            missing = [r for r in rels if r not in self.manifest]
        if missing:
            assert self.src is not None
            raise PipelineError(
                f"{self.db.name}: {len(missing)} file(s) are not listed in {MANIFEST} of "
                f"{self.src.label} (first: {missing[0]}); refusing unverifiable files"
                + (hint() if hint is not None else "")
            )

    def verify_local(self, rel: str, dest: Path) -> bool:
        """True when ``dest`` holds the listed content; a wrong copy is removed."""
        expected = self.manifest[rel]
        if not dest.is_file():
            return False
        if not self.force and self.cache.holds(rel, dest, expected):
            self.counts["already_verified"] += 1
            return True
        got = sha256_file(dest)
        self.counts["rehashed"] += 1
        if got == expected:
            self.cache.mark(rel, dest, got)
            self.counts["already_verified"] += 1
            return True
        log.warning(
            "%s: local %s has sha256 %s, %s lists %s; fetching it again",
            self.db.name, rel, got, MANIFEST, expected,
        )  # fmt: skip
        self.cache.forget(rel)
        dest.unlink()
        return False

    def ensure(self, rels: Iterable[str]) -> None:
        """Verifies ``rels`` locally and fetches the missing or wrong ones."""
        from tqdm import tqdm

        rels = list(dict.fromkeys(rels))
        self.require_listed(rels)
        self.counts["files"] += len(rels)
        with tqdm(
            total=len(rels), unit="file", desc=self.db.name, disable=None, leave=False
        ) as bar:
            todo = []
            for rel in rels:
                if self.verify_local(rel, inside(self.root, rel)):
                    bar.update(1)
                else:
                    todo.append(rel)
            if not todo:
                return
            self._fetch_all(todo, bar)

    def _fetch(self, rel: str) -> tuple[int, int]:
        assert self.fetcher is not None
        return self.fetcher.fetch(rel, self.manifest[rel])

    def _fetch_all(self, todo: list[str], bar: Any) -> None:
        """Fetches ``todo`` (in parallel threads from a URL); work finished when another
        fetch fails is still recorded."""
        workers = self.workers if self.src is not None and self.src.kind == "url" else 1
        if workers == 1 or len(todo) == 1:
            for rel in todo:
                self._fetched(rel, self._fetch(rel), bar)
            return
        with ThreadPoolExecutor(max_workers=min(workers, len(todo))) as pool:
            futures: dict[Future[tuple[int, int]], str] = {
                pool.submit(self._fetch, r): r for r in todo
            }
            pending = set(futures)
            try:
                while pending:
                    done, pending = wait(pending, return_when="FIRST_COMPLETED")
                    for fut in done:
                        self._fetched(futures[fut], fut.result(), bar)
            except BaseException:
                for fut in pending:
                    fut.cancel()
                wait(pending)
                for fut in pending:  # finished while we were stopping: keep their work
                    if not fut.cancelled() and fut.exception() is None:
                        self._fetched(futures[fut], fut.result(), bar)
                raise

    def _fetched(self, rel: str, sizes: tuple[int, int], bar: Any) -> None:
        dest = inside(self.root, rel)
        self.cache.mark(rel, dest, self.manifest[rel])
        self.counts["fetched"] += 1
        self.bytes_fetched += sizes[0]
        bar.update(1)
        bar.set_postfix_str(f"fetched {_fmt_mb(self.bytes_fetched)}", refresh=False)

    def summary(self, records: list[str]) -> dict[str, Any]:
        return {
            "database": self.db.name,
            "source": self.src.label if self.src is not None else self.source_kind,
            "dir": str(self.root),
            **self.counts,
            "bytes_fetched": self.bytes_fetched,
            "records": records,
        }


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """Creates ``root`` and holds ``<root>/.download.lock``: one writer per database folder."""
    root.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # not POSIX: no cross-process lock
        yield
        return
    with open(root / ".download.lock", "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("%s: another download is writing here; waiting for it", root)
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _backoff(attempt: int) -> None:
    time.sleep(min(BACKOFF_S * 2**attempt, 10.0))


# ------------------------------------------------------------------------------ selection


def _mitdb_records(cfg: PipelineConfig) -> list[str]:
    wanted = cfg.data.mitdb_records or MITDB_RECORDS
    for r in wanted:
        safe_name(r, "mitdb record")
        if r not in MITDB_RECORDS:
            raise PipelineError(
                f"unknown mitdb record {r!r} in data.mitdb_records; known: {list(MITDB_RECORDS)}"
            )
    return list(dict.fromkeys(wanted))


def _ptbxl_records(csv_path: Path, max_records: int) -> list[str]:
    """Record paths (``records100/00000/00001_lr``) of ecg_id 1..max_records (0: all)."""
    rows: list[tuple[int, str]] = []
    with open(csv_path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = {"ecg_id", "filename_lr"} - set(reader.fieldnames or ())
        if missing:
            raise PipelineError(f"{csv_path}: missing column(s) {sorted(missing)}")
        for line, row in enumerate(reader, 2):
            try:
                ecg_id = int(float(row["ecg_id"]))
            except (TypeError, ValueError):
                raise PipelineError(
                    f"{csv_path} line {line}: ecg_id {row['ecg_id']!r} is not a number"
                ) from None
            if max_records and ecg_id > max_records:
                continue
            rel = (row["filename_lr"] or "").strip()
            safe_relpath(rel, f"{csv_path.name} line {line}: filename_lr")
            rows.append((ecg_id, rel))
    rows.sort()
    return [rel for _, rel in rows]


def _record_files(db: Database, records: list[str]) -> list[str]:
    return [f"{r}.{ext}" for r in records for ext in db.extensions]


def _ptbxl_hint(job: _Job, records: list[str]) -> str:
    n_ok = 0
    for r in records:
        if not all(f in job.manifest for f in _record_files(job.db, [r])):
            break
        n_ok += 1
    if n_ok == 0:
        return ""
    return f"; this source has the first {n_ok} records: set data.ptbxl_max_records={n_ok}"


# -------------------------------------------------------------------------------- public API


def download_database(
    cfg: PipelineConfig,
    db_name: str,
    force: bool = False,
    *,
    workers: int = DEFAULT_WORKERS,
) -> dict[str, Any]:
    """Fetches and verifies one database into :func:`database_dir`.

    Args:
        cfg: pipeline config; uses ``cfg.data`` (data_dir, mirror, base_url, mitdb_records,
            ptbxl_max_records, timeout_s, retries).
        db_name: ``mitdb``, ``nstdb`` or ``ptbxl``.
        force: fetch the checksum list again and hash every file, re-fetching mismatches.
        workers: parallel HTTP downloads.

    Returns:
        Summary: ``database``, ``source``, ``dir``, ``files`` (count checked), ``already_verified``,
        ``rehashed`` (files hashed this run, not downloaded), ``fetched``, ``bytes_fetched`` and
        ``records`` (record names, or PTB-XL record paths without extension).

    Raises:
        PipelineError: unreachable source, file not listed in SHA256SUMS.txt, hash mismatch
            after ``cfg.data.retries`` retries, unsafe path, unknown database or record.
    """
    db = get_database(db_name)
    if cfg.data.ptbxl_max_records < 0:
        raise PipelineError(
            "data.ptbxl_max_records must be >= 0 (0 means all). "
            f"Received: ptbxl_max_records={cfg.data.ptbxl_max_records}"
        )
    records = _mitdb_records(cfg) if db.name == "mitdb" else list(db.records)
    src = _source_for(cfg, db)
    with _locked(database_dir(cfg, db.name)):
        return _download(cfg, db, src, records, force, workers)


def _download(
    cfg: PipelineConfig, db: Database, src: _Source, records: list[str], force: bool, workers: int
) -> dict[str, Any]:
    job = _Job(cfg, db, force, workers, source_kind="physionet")
    job.cache.check_source_kind(job.source_kind)
    job.fetcher = _Fetcher(cfg, db, job.root, src)
    try:
        job.load_manifest(fresh=force)
        optional = [f for f in db.optional if f in job.manifest]
        job.ensure(list(db.metadata) + optional)
        if db.name == "ptbxl":
            records = _ptbxl_records(inside(job.root, db.metadata[0]), cfg.data.ptbxl_max_records)
            job.require_listed(_record_files(db, records), lambda: _ptbxl_hint(job, records))
        job.ensure(_record_files(db, records))
    finally:
        job.save_cache()
        job.fetcher.close()
    _log_summary(job, force)
    return job.summary(records)


def _is_loopback(src: _Source) -> bool:
    return src.kind == "url" and urllib.parse.urlsplit(src.base).hostname in LOOPBACK_HOSTS


def _log_summary(job: _Job, force: bool) -> None:
    c = job.counts
    name = job.db.name
    if force:
        log.info(
            "%s: re-verified %d files by hash, %d fetched (%s)",
            name, c["files"], c["fetched"], _fmt_mb(job.bytes_fetched),
        )  # fmt: skip
    elif c["fetched"] == 0:
        log.info("%s: all %d files already verified, nothing to do", name, c["files"])
    else:
        log.info(
            "%s: %d files, %d already verified, %d fetched (%s)",
            name, c["files"], c["already_verified"], c["fetched"], _fmt_mb(job.bytes_fetched),
        )  # fmt: skip


def write_synthetic(cfg: PipelineConfig, force: bool = False) -> dict[str, Any]:
    """Writes seeded synthetic MIT-BIH-like records into ``database_dir(cfg, "mitdb")``.

    Uses ``data_tools.synthetic.write_synthetic_database``; the files it lists in its
    ``SHA256SUMS.txt`` are hashed and recorded like downloaded ones, so a second call does
    nothing unless ``force``. A folder holding PhysioNet files is refused.
    """
    with _locked(database_dir(cfg, "mitdb")):
        return _write_synthetic(cfg, force)


def _write_synthetic(cfg: PipelineConfig, force: bool) -> dict[str, Any]:
    db = get_database("mitdb")
    job = _Job(cfg, db, force, 1, source_kind="synthetic")
    job.cache.check_source_kind(job.source_kind)
    if job.cache.data.get("source") is None and any(job.root.glob("*.dat")):
        raise PipelineError(
            f"{job.root} holds records not written by --source synthetic; remove it or use "
            "another --data-dir"
        )
    manifest_path = job.root / MANIFEST
    if not force and manifest_path.is_file():
        try:
            job.manifest = parse_sha256sums(
                manifest_path.read_text(encoding="utf-8"), str(manifest_path)
            )
            if all(job.verify_local(rel, inside(job.root, rel)) for rel in job.manifest):
                job.counts["files"] = len(job.manifest)
                job.save_cache()
                _log_summary(job, force)
                return job.summary(_records_of(job.manifest))
        except PipelineError as exc:
            log.warning("mitdb: %s; writing the synthetic records again", exc)
    try:
        from data_tools.synthetic import write_synthetic_database
    except ImportError as exc:
        raise PipelineError(
            f"--source synthetic needs data_tools.synthetic, which cannot be imported ({exc})"
        ) from None
    write_synthetic_database(job.root)
    job.manifest = parse_sha256sums(manifest_path.read_text(encoding="utf-8"), str(manifest_path))
    job.counts = {"files": 0, "already_verified": 0, "rehashed": 0, "fetched": 0}
    try:
        for rel in job.manifest:
            dest = inside(job.root, rel)
            got = sha256_file(dest) if dest.is_file() else "missing"
            if got != job.manifest[rel]:
                raise PipelineError(
                    f"synthetic writer: {rel} has sha256 {got}, its {MANIFEST} lists {job.manifest[rel]}"
                )
            job.cache.mark(rel, dest, got)
            job.counts["files"] += 1
            job.counts["fetched"] += 1
            job.bytes_fetched += dest.stat().st_size
    finally:
        job.save_cache()
    log.info(
        "mitdb: wrote %d synthetic files (%s)", job.counts["files"], _fmt_mb(job.bytes_fetched)
    )
    return job.summary(_records_of(job.manifest))


def _records_of(manifest: Mapping[str, str]) -> list[str]:
    return sorted({rel[: -len(".hea")] for rel in manifest if rel.endswith(".hea")})
