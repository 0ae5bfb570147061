"""A threaded HTTP server on 127.0.0.1 serving a folder, with HTTP Range and per-path faults.

Faults are queued per path and consumed one per request, so "500 then success" is
`server.fail("audio/x.wav", "500")`. Kinds: "404", "500", "503", "drop" (full Content-Length,
half the body, then the connection closes), "slow" (no response until after the client's
timeout), "html" (a 200 HTML page instead of the file), "empty" (a 200 with no body).
Hostile ones: "gzip" (the file gzip-compressed with `Content-Encoding: gzip`, Content-Length the
compressed size), "chunked" (chunked transfer, no Content-Length), "trickle" (one byte every
`trickle_s`), "429date" (429 with an HTTP-date `Retry-After` `retry_after_s` ahead).
"""

from __future__ import annotations

import contextlib
import email.utils
import gzip
import re
import socket
import threading
import time
import urllib.parse
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

FAULTS = ("404", "500", "503", "drop", "slow", "html", "empty", "gzip", "chunked", "trickle", "429date")
HTML = b"<!DOCTYPE html><html><head><title>Moved</title></head><body>Sign in to continue</body></html>"


class MirrorServer:
    def __init__(self, root: Path, slow_s: float = 1.5) -> None:
        self.root = Path(root)
        self.slow_s = slow_s
        self.latency_s = 0.0  # added to every response (to emulate a network round trip)
        self.trickle_s = 0.05  # "trickle": seconds between bytes
        self.retry_after_s = 1.0  # "429date": how far ahead the Retry-After date lies
        self.honour_range = True
        self.hits: Counter[str] = Counter()
        self.range_headers: list[tuple[str, str]] = []
        self._faults: dict[str, list[str]] = {}
        self._lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"mirror": self})
        self.httpd = _QuietServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/"

    def start(self) -> MirrorServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def fail(self, path: str, *faults: str) -> None:
        unknown = [f for f in faults if f not in FAULTS]
        if unknown:
            raise ValueError(f"unknown fault(s) {unknown}; choose from {FAULTS}")
        with self._lock:
            self._faults.setdefault(path, []).extend(faults)

    def _next(self, path: str, range_header: str | None) -> str | None:
        with self._lock:
            self.hits[path] += 1
            if range_header:
                self.range_headers.append((path, range_header))
            queue = self._faults.get(path)
            return queue.pop(0) if queue else None


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        """A client that hangs up (a refused oversized body, a timeout test) is no server error."""
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    mirror: MirrorServer
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers and the shared session use
    disable_nagle_algorithm = True  # else delayed ACKs add ~40 ms to every small response

    def log_message(self, format: str, *args: object) -> None:  # quiet tests
        pass

    def do_GET(self) -> None:
        # the client may have given up (a timeout test): nothing to answer then
        with contextlib.suppress(BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            self._serve()

    def _send(self, code: int, body: bytes, ctype: str = "application/octet-stream", **headers: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for key, value in headers.items():
            self.send_header(key.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def _serve(self) -> None:
        mirror = self.mirror
        rel = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path).lstrip("/")
        range_header = self.headers.get("Range")
        fault = mirror._next(rel, range_header)
        if mirror.latency_s:
            time.sleep(mirror.latency_s)
        if fault in ("404", "500", "503"):
            self._send(int(fault), f"fault {fault}".encode(), "text/plain")
            return
        if fault == "slow":
            time.sleep(mirror.slow_s)
        if fault == "html":
            self._send(200, HTML, "text/html; charset=utf-8")
            return
        if fault == "empty":
            self._send(200, b"", "audio/wav")
            return
        if fault == "429date":
            when = email.utils.formatdate(time.time() + mirror.retry_after_s, usegmt=True)
            self._send(429, b"slow down", "text/plain", Retry_After=when)
            return
        path = mirror.root / rel
        if ".." in Path(rel).parts or not path.is_file():
            self._send(404, b"not found", "text/plain")
            return
        data = path.read_bytes()
        code, extra = 200, {"Accept_Ranges": "bytes"}
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", range_header or "")
        if mirror.honour_range and match:
            start = int(match.group(1))
            end = int(match.group(2)) if match.group(2) else len(data) - 1
            if start >= len(data):
                self._send(416, b"", "text/plain", Content_Range=f"bytes */{len(data)}")
                return
            code, extra["Content_Range"] = 206, f"bytes {start}-{end}/{len(data)}"
            data = data[start : end + 1]
        if fault == "gzip":
            self._send(code, gzip.compress(data, compresslevel=6), Content_Encoding="gzip", **extra)
            return
        if fault in ("chunked", "trickle"):
            self._stream(code, data, extra, chunked=fault == "chunked")
            return
        if fault == "drop":
            self.send_response(code)
            self.send_header("Content-Length", str(len(data)))
            for key, value in extra.items():
                self.send_header(key.replace("_", "-"), value)
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        self._send(code, data, **extra)

    def _stream(self, code: int, data: bytes, extra: dict[str, str], chunked: bool) -> None:
        self.send_response(code)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(len(data)))
        for key, value in extra.items():
            self.send_header(key.replace("_", "-"), value)
        self.end_headers()
        if chunked:
            for start in range(0, len(data), 1 << 16):
                piece = data[start : start + (1 << 16)]
                self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
            return
        for i in range(len(data)):  # trickle: until the client gives up
            self.wfile.write(data[i : i + 1])
            self.wfile.flush()
            time.sleep(self.mirror.trickle_s)
