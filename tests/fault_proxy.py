"""A fault-injecting HTTP proxy for tests: sits between a job and the moto S3 server and misbehaves on purpose.

Each request draws one fate from configurable rates: forwarded untouched, answered 503 SlowDown or 500
InternalError without reaching the server, connection reset before any answer, forwarded and then reset
(the write happened but the client never hears so), forwarded after a delay, or forwarded with its body cut
short. `outage(kind)` makes every request fail until `outage(None)`: a permanent outage. `outage_after(method,
suffix, kind)` starts one on an event instead of at a time: the first request for a key ending in `suffix` (say the
PUT of a shard's stats file, its commit marker) goes through, and every request that arrives after it fails, so a
test knows exactly what was written before the outage however fast or slow the machine is.
Use: `with FaultProxy(endpoint, rates={"503": .05, "reset": .05}) as proxy: ... proxy.url ...`.
"""

from __future__ import annotations

import http.client
import random
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

KINDS = ("503", "500", "reset", "reset_after", "delay", "truncate")
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "trailer", "upgrade"}


def _error_xml(code: str, message: str) -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{message}</Message>'
            f"<RequestId>fault-proxy</RequestId></Error>").encode()


class FaultProxy:
    """Threaded proxy on 127.0.0.1:<free port> forwarding to `upstream` (http://host:port)."""

    def __init__(self, upstream: str, rates: dict[str, float] | None = None, seed: int = 0,
                 delay_s: float = 0.2) -> None:
        unknown = set(rates or {}) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {KINDS}")
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.rates = dict(rates or {})
        self.delay_s = delay_s
        self._outage: str | None = None
        self._trip: tuple[str, str, str] | None = None  # (method, key suffix, kind) of outage_after
        self.tripped = threading.Event()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.counts: dict[str, int] = dict.fromkeys(("requests", "forwarded", *KINDS), 0)
        self.methods: dict[str, int] = {}
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # quiet
                pass

            def _body(self) -> bytes:
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    out = bytearray()
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass  # trailers
                            return bytes(out)
                        out += self.rfile.read(size)
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _reset(self) -> None:
                # SO_LINGER 0 + close sends a TCP RST: the client sees "connection reset by peer"
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True
                self.connection.close()

            def _answer(self, status: int, headers: list[tuple[str, str]], body: bytes, cut: bool = False) -> None:
                self.send_response_only(status)
                for k, v in headers:
                    if k.lower() not in HOP_BY_HOP and k.lower() != "content-length":
                        self.send_header(k, v)
                if self.command == "HEAD":
                    length = dict((k.lower(), v) for k, v in headers).get("content-length", "0")
                    self.send_header("Content-Length", length)
                    self.end_headers()
                    return
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if cut and len(body) > 1:
                    self.wfile.write(body[: len(body) // 2])
                    self._reset()
                    return
                self.wfile.write(body)

            def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                    headers.pop("Content-Length", None)
                    if self.command not in ("GET", "HEAD") or body:
                        headers["Content-Length"] = str(len(body))
                    conn.request(self.command, self.path, body=body or None, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    return resp.status, resp.getheaders(), data
                finally:
                    conn.close()

            def _handle(self) -> None:
                body = self._body()
                fate = proxy._draw(self.command, urlsplit(self.path).path)
                if fate in ("503", "500"):
                    code, msg = ("SlowDown", "Please reduce your request rate.") if fate == "503" else \
                        ("InternalError", "We encountered an internal error. Please try again.")
                    self._answer(int(fate), [("Content-Type", "application/xml")], _error_xml(code, msg))
                    return
                if fate == "reset":
                    self._reset()
                    return
                if fate == "delay":
                    time.sleep(proxy.delay_s)
                status, headers, data = self._forward(body)
                with proxy._lock:
                    proxy.counts["forwarded"] += 1
                if fate == "reset_after":
                    self._reset()
                    return
                self._answer(status, headers, data, cut=fate == "truncate" and self.command == "GET")

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True

            def handle_error(self, request: object, client_address: object) -> None:
                pass  # resets we caused ourselves

        self._server = Server(("127.0.0.1", 0), Handler)
        self._thread: threading.Thread | None = None

    def _draw(self, method: str, path: str = "") -> str | None:
        with self._lock:
            self.counts["requests"] += 1
            self.methods[method] = self.methods.get(method, 0) + 1
            fate = self._outage
            if fate is None and self._trip is not None and method == self._trip[0] and path.endswith(self._trip[1]):
                # the trigger itself is forwarded untouched; requests are drawn one at a time under the lock, so
                # every request drawn after this one fails
                self._outage, self._trip = self._trip[2], None
                self.tripped.set()
                return None
            if fate is None:
                r = self._rng.random()
                for kind, rate in self.rates.items():
                    if r < rate:
                        fate = kind
                        break
                    r -= rate
            if fate is not None:
                self.counts[fate] += 1
            return fate

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def set_rates(self, rates: dict[str, float]) -> None:
        with self._lock:
            self.rates = dict(rates)

    def outage(self, kind: str | None = "503") -> None:
        """Fail every request with `kind` ('503', '500', 'reset') until called with None."""
        with self._lock:
            self._outage = kind

    def outage_after(self, method: str, suffix: str, kind: str = "503") -> None:
        """A permanent outage (`kind`) that starts right after the first `method` request for a key ending in
        `suffix`; `tripped` is set then. Ends with outage(None)."""
        with self._lock:
            self._trip = (method, suffix, kind)
            self.tripped.clear()

    def faults(self) -> int:
        return sum(self.counts[k] for k in KINDS if k != "delay")

    def start(self) -> FaultProxy:
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def uniform_rates(total: float, kinds: tuple[str, ...] = ("503", "500", "reset", "reset_after", "delay")) -> dict[str, float]:
    """Spread a total fault rate evenly over `kinds`."""
    return {k: total / len(kinds) for k in kinds}
