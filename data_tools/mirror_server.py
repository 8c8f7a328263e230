"""A loopback HTTP server for a local PhysioNet mirror, for tests, CI and benchmarks.

It serves a folder laid out like ``shared/data`` (``<root>/<database>/<path>``) on
``127.0.0.1`` with the parts of HTTP the download stage relies on: ``Content-Length``,
single-range ``Range: bytes=N-[M]`` requests (206 / 416 answers) and keep-alive. Tests can
count what was requested and inject faults (a connection dropped mid-file, a file served
with other bytes).

Example:
    >>> with MirrorServer("/work/shared/data") as server:          # doctest: +SKIP
    ...     main(["--mirror", server.url, "--databases", "nstdb"])
    ...     server.fetched()                                         # paths served

From a shell: ``python -m data_tools.mirror_server /work/shared/data --port 8000``.
"""

from __future__ import annotations

import argparse
import http.server
import re
import threading
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


@dataclass(frozen=True)
class Request:
    """One request the server answered."""

    method: str
    path: str
    """URL path, unquoted, e.g. ``/nstdb/bw.dat``."""
    range: str | None
    """The ``Range`` header as sent, or ``None``."""
    status: int


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = 10

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base signature
        pass

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    def _serve(self, body: bool) -> None:
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        rng = self.headers.get("Range")
        state = self.server.mirror
        data = state.data_for(path)
        if data is None:
            state.record(self.command, path, rng, 404)
            self.send_error(404, "not found")
            return
        size = len(data)
        start, end, status = 0, size - 1, 200
        if rng is not None:
            m = _RANGE.match(rng.strip())
            if m:
                start = int(m.group(1))
                end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
                if start >= size or start > end:
                    state.record(self.command, path, rng, 416)
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status = 206
        state.record(self.command, path, rng, status)
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start + 1))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        drop = state.take_drop(path) if body else None
        if drop is not None:
            self.send_header("Connection", "close")
        self.end_headers()
        if not body:
            return
        payload = data[start : end + 1]
        if drop is not None:
            self.wfile.write(payload[:drop])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(payload)


class _State:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.lock = threading.Lock()
        self.requests: list[Request] = []
        self.drops: dict[str, int] = {}
        self.overrides: dict[str, bytes] = {}

    def record(self, method: str, path: str, rng: str | None, status: int) -> None:
        with self.lock:
            self.requests.append(Request(method, path, rng, status))

    def take_drop(self, path: str) -> int | None:
        with self.lock:
            return self.drops.pop(path, None)

    def data_for(self, path: str) -> bytes | None:
        with self.lock:
            if path in self.overrides:
                return self.overrides[path]
        rel = path.lstrip("/")
        parts = rel.split("/")
        if not rel or any(p in ("", ".", "..") for p in parts) or "\\" in rel:
            return None
        f = (self.root / rel).resolve()
        if self.root not in f.parents or not f.is_file():
            return None
        return f.read_bytes()


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    mirror: _State


class MirrorServer:
    """Context manager serving ``root`` on ``http://127.0.0.1:<port>`` in a background thread.

    Args:
        root: folder laid out like ``shared/data``.
        port: TCP port; 0 picks a free one (see :attr:`url`).
    """

    def __init__(self, root: str | Path, port: int = 0) -> None:
        self._state = _State(Path(root))
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.mirror = self._state
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL without a trailing slash, e.g. ``http://127.0.0.1:41234``."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def requests(self) -> list[Request]:
        """Every request answered so far, in order."""
        with self._state.lock:
            return list(self._state.requests)

    def fetched(self) -> list[str]:
        """Paths of the GET requests answered with file content (200 or 206)."""
        return [r.path for r in self.requests if r.method == "GET" and r.status in (200, 206)]

    def clear(self) -> None:
        """Forgets the request log."""
        with self._state.lock:
            self._state.requests.clear()

    def drop_once(self, path: str, after_bytes: int) -> None:
        """The next GET of ``path`` sends full headers, ``after_bytes`` of body, then hangs up."""
        with self._state.lock:
            self._state.drops[path] = after_bytes

    def override(self, path: str, data: bytes) -> None:
        """Serves ``data`` for ``path`` instead of the file (a corrupt or tampered mirror)."""
        with self._state.lock:
            self._state.overrides[path] = data

    def start(self) -> MirrorServer:
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="mirror-server", daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> MirrorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m data_tools.mirror_server",
        description="Serve a local PhysioNet mirror on 127.0.0.1 (Range requests supported).",
    )
    parser.add_argument("root", help="folder laid out like shared/data")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    server = MirrorServer(args.root, port=args.port)
    print(f"serving {args.root} at {server.url} (Ctrl-C to stop)", flush=True)
    try:
        server._server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server._server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
