"""A fault-injecting HTTP reverse proxy for an S3 server (moto) on loopback.

Each request the proxy receives is one *attempt* of an S3 operation. With a seeded RNG it either forwards it
untouched, or injects one fault:

* ``error``: answer 503 ``SlowDown`` or 500 ``InternalError`` (an S3 XML error body) without forwarding;
* ``slow``: wait ``delay_s`` before forwarding;
* ``drop``: reset the connection without a response, either before forwarding or after it (the operation
  happened, the client never learns it); a response with a body is then cut after the headers and half the body.

:class:`FaultStats` counts the attempts, those forwarded, and the faults injected by kind. Rates can change while
the proxy runs (:meth:`S3FaultProxy.set_rates`), so one proxy serves a clean phase and a faulty one, and
:meth:`S3FaultProxy.fault_next` forces the faults of the next requests (for exact tests).
"""

from __future__ import annotations

import http.client
import random
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection", "expect"}
ERRORS = ((503, "SlowDown", "Please reduce your request rate."), (500, "InternalError", "We encountered an error."))


@dataclass(frozen=True)
class FaultRates:
    """Probability per request of each fault (they are exclusive: at most one per request)."""

    error: float = 0.0
    drop: float = 0.0
    slow: float = 0.0
    delay_s: float = 0.5

    def __post_init__(self) -> None:
        if min(self.error, self.drop, self.slow) < 0 or self.error + self.drop + self.slow > 1:
            raise ValueError(f"fault rates must be >= 0 and sum to <= 1: {self}")


CLEAN = FaultRates()


@dataclass(frozen=True)
class FaultStats:
    """Counts since the proxy started (or since :meth:`S3FaultProxy.reset`)."""

    requests: int
    """Attempts received (what the clients tried, retries included)."""
    forwarded: int
    """Attempts passed on to the S3 server (slow ones and those dropped mid-body included)."""
    faults: dict[str, int]
    """Faults injected by kind: ``error`` (5xx), ``drop``, ``slow``."""

    @property
    def failed(self) -> int:
        """Attempts the client saw fail (5xx or dropped): each one it survived, it retried."""
        return self.faults["error"] + self.faults["drop"]


class S3FaultProxy:
    """Reverse proxy on ``127.0.0.1:<port>`` in front of ``upstream`` (``http://host:port``); a context manager."""

    def __init__(self, upstream: str, rates: FaultRates = CLEAN, seed: int = 0, port: int = 0) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._rates = rates
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._forced: list[str] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="s3-fault-proxy", daemon=True)

    @property
    def endpoint_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> S3FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> S3FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def set_rates(self, rates: FaultRates) -> None:
        with self._lock:
            self._rates = rates

    def fault_next(self, kind: str, n: int = 1) -> None:
        """Inject ``kind`` (``error``, ``drop``, ``slow``) into each of the next ``n`` requests, whatever the rates."""
        if kind not in ("error", "drop", "slow"):
            raise ValueError(f"unknown fault kind {kind!r}")
        with self._lock:
            self._forced += [kind] * n

    def reset(self) -> None:
        """Zero the counts and forget the forced faults not yet injected."""
        with self._lock:
            self._counts.clear()
            self._forced.clear()

    def stats(self) -> FaultStats:
        with self._lock:
            c = self._counts
            faults = {kind: c[kind] for kind in ("error", "drop", "slow")}
            return FaultStats(requests=c["requests"], forwarded=c["forwarded"], faults=faults)

    def _draw(self) -> tuple[str | None, FaultRates, float]:
        """The fault for one request (``None``: forward untouched), the rates it was drawn at, and a second draw."""
        with self._lock:
            r, extra, rates = self._rng.random(), self._rng.random(), self._rates
            self._counts["requests"] += 1
            kind = None
            if self._forced:
                kind = self._forced.pop(0)
            elif r < rates.error:
                kind = "error"
            elif r < rates.error + rates.drop:
                kind = "drop"
            elif r < rates.error + rates.drop + rates.slow:
                kind = "slow"
            if kind:
                self._counts[kind] += 1
            return kind, rates, extra

    def _count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1


def _handler(proxy: S3FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as S3 clients expect

        def log_message(self, format: str, *args: object) -> None:
            pass

        def handle_one_request(self) -> None:
            try:
                super().handle_one_request()
            except OSError:  # the client went away (its own timeout, or it gave up on the connection)
                self.close_connection = True

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                while self.rfile.readline().strip():  # trailers
                    pass
                return b"".join(chunks)
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _abort(self) -> None:
            """Reset the connection (RST, no FIN handshake): the client sees it dropped."""
            self.close_connection = True
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()

        def _handle(self) -> None:
            body = self._body()
            kind, rates, extra = proxy._draw()
            if kind == "error":
                status, code, message = ERRORS[extra < 0.5]
                xml = (
                    f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
                    f"<RequestId>fault-proxy</RequestId></Error>"
                ).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(xml)))
                self.end_headers()
                self.wfile.write(xml)
                return
            if kind == "drop" and extra < 0.5:  # before the server sees it
                self._abort()
                return
            if kind == "slow":
                time.sleep(rates.delay_s)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            if body or self.command in ("PUT", "POST"):
                headers["Content-Length"] = str(len(body))
            conn = http.client.HTTPConnection(*proxy.upstream, timeout=120)
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                out_headers = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP]
            finally:
                conn.close()
            proxy._count("forwarded")
            if kind == "drop" and (self.command == "HEAD" or not data):  # the response is lost entirely
                self._abort()
                return
            self.send_response_only(response.status, response.reason)
            for key, value in out_headers:
                if self.command == "HEAD" or key.lower() != "content-length":
                    self.send_header(key, value)
            if self.command != "HEAD":
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if kind == "drop":  # mid-body
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self._abort()
                return
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

    return Handler
