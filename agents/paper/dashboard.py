"""The local web dashboard of a paper session (``paper.dashboard=true``), served from the paper process.

A stdlib `ThreadingHTTPServer` in a daemon thread, bound to 127.0.0.1 only, reads the ledger
read-only (`agents.paper.ledger.read_table`) and renders everything on the server (inline SVG charts;
one small hand-written script, ``static/dashboard.js``, shipped in the package, refreshes the panel when a
new bar is in the ledger). Nothing is loaded from the internet, and a Content-Security-Policy of
``'self'`` forbids it.

Endpoints:
    ``GET /``: the page. ``GET /panel``: its live part (HTML fragment).
    ``GET /api/state``: the snapshot as JSON (``?series=1``: with the per-step series). ``GET /metrics``: Prometheus text format.
    ``POST /api/kill`` (JSON or form: ``token``, ``reason``): the kill switch.

The kill switch writes ``<paper.dir>/KILL`` atomically (temporary file + rename), its text being the
reason; the session's risk controls consume that file (flatten at the next open, then stop). The
request needs the token logged at start (or given in ``QUANTGYM_DASHBOARD_TOKEN``); without it the answer
is 403 and nothing happens. Requests whose ``Host`` or ``Origin`` is not this dashboard's are refused too
(another web page in the same browser cannot post to it, nor reach it through DNS rebinding).
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import os
import secrets
import threading
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from agents.paper.dashboard_view import LedgerReader, Snapshot, page_html, panel_html, prometheus_text
from agents.paper.killswitch import KILL_FILE, request_kill

logger = logging.getLogger(__name__)

#: environment variable that sets the kill-switch token (then it is not logged)
TOKEN_ENV = "QUANTGYM_DASHBOARD_TOKEN"
STATIC_DIR = Path(__file__).with_name("static")
_MAX_BODY = 4096
_MAX_REASON = 200
_DEFAULT_REASON = "kill switch pressed on the dashboard"


def write_kill(paper_dir: str | Path, reason: str) -> Path:
    """Write ``<paper_dir>/KILL`` atomically with ``reason`` (`agents.paper.killswitch.request_kill`)."""
    return request_kill(paper_dir, reason)


def clean_reason(text: str | None) -> str:
    """One printable line of at most 200 characters (the default reason when empty)."""
    line = " ".join("".join(c if c.isprintable() else " " for c in (text or "")).split())[:_MAX_REASON]
    return line or _DEFAULT_REASON


class _Cache:
    """The last snapshot, re-read only when the ledger's files changed (polling stays cheap)."""

    def __init__(self, paper_dir: Path) -> None:
        self.paper_dir = paper_dir
        self.reader = LedgerReader(paper_dir)
        self.lock = threading.Lock()
        self.key: tuple[Any, ...] | None = None
        self.snap: Snapshot | None = None

    def get(self) -> Snapshot:
        files = [self.paper_dir / n for n in ("ledger.sqlite", "ledger.sqlite-wal", KILL_FILE)]
        key = tuple((f.stat().st_mtime_ns, f.stat().st_size) if f.exists() else None for f in files)
        with self.lock:
            if self.snap is None or key != self.key:
                self.snap, self.key = self.reader.snapshot(), key
            return self.snap


@dataclass(frozen=True, slots=True)
class _Site:
    """What the request handler needs (set on the server)."""

    paper_dir: Path
    token: str
    cache: _Cache


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        logger.debug("dashboard %s: " + format, self.client_address[0], *args)

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        site = self.server.site
        path, _, query = self.path.partition("?")
        if not self._same_host():
            return self._send(HTTPStatus.FORBIDDEN, b"wrong Host header\n", "text/plain")
        if path == "/static/dashboard.js":
            return self._send(HTTPStatus.OK, (STATIC_DIR / "dashboard.js").read_bytes(), "text/javascript")
        if path == "/favicon.ico":
            return self._send(HTTPStatus.NO_CONTENT, b"", "text/plain")
        try:
            snap = site.cache.get()
        except ValueError as err:  # no ledger yet
            return self._send(HTTPStatus.SERVICE_UNAVAILABLE, f"{err}\n".encode(), "text/plain")
        if path == "/":
            body, kind = page_html(snap).encode(), "text/html; charset=utf-8"
        elif path == "/panel":
            body, kind = panel_html(snap).encode(), "text/html; charset=utf-8"
        elif path == "/api/state":
            series = parse_qs(query).get("series", ["0"])[0] == "1"
            body, kind = json.dumps(_finite(snap.state(series))).encode(), "application/json"
        elif path == "/metrics":
            body, kind = prometheus_text(snap).encode(), "text/plain; version=0.0.4; charset=utf-8"
        else:
            return self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")
        self._send(HTTPStatus.OK, body, kind)

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        if self.path.split("?", 1)[0] != "/api/kill":
            return self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")
        if not self._same_host() or not self._same_origin():
            return self._json(HTTPStatus.FORBIDDEN, {"ok": False, "error": "cross-site request refused"})
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY:
            return self._json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"ok": False, "error": "request too large"})
        fields = _fields(self.rfile.read(length), self.headers.get("Content-Type", ""))
        token = str(fields.get("token") or "")
        if not hmac.compare_digest(token.encode(), self.server.site.token.encode()):
            logger.warning("dashboard: kill request with a wrong token refused (from %s)", self.client_address[0])
            return self._json(HTTPStatus.FORBIDDEN, {"ok": False, "error": "wrong token: nothing was done"})
        reason = clean_reason(str(fields.get("reason") or ""))
        path = write_kill(self.server.site.paper_dir, reason)
        logger.warning("dashboard: kill switch written to %s (reason: %s)", path, reason)
        self._json(HTTPStatus.OK, {"ok": True, "file": str(path), "reason": reason})

    def _same_host(self) -> bool:
        port = self.server.server_address[1]
        return self.headers.get("Host", "") in (f"127.0.0.1:{port}", f"localhost:{port}")

    def _same_origin(self) -> bool:
        origin = self.headers.get("Origin")
        port = self.server.server_address[1]
        return origin is None or origin in (f"http://127.0.0.1:{port}", f"http://localhost:{port}")

    def _json(self, status: HTTPStatus, payload: dict[str, Any]) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json")

    def _send(self, status: HTTPStatus, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    site: _Site

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.exception("dashboard: error while answering %s", client_address[0])


class Dashboard:
    """The dashboard server of a paper folder, on 127.0.0.1.

    Args:
        paper_dir: the paper folder (its ledger is read read-only; ``KILL`` is written there).
        port: TCP port (0 = any free port; `url` tells which).
        token: the kill-switch token; None = ``QUANTGYM_DASHBOARD_TOKEN`` or, when unset, a random one that
            `start` logs.
    """

    def __init__(self, paper_dir: str | Path, port: int = 0, token: str | None = None) -> None:
        self.paper_dir = Path(paper_dir)
        self.port = port
        self._token_from = "argument" if token else ("environment" if os.environ.get(TOKEN_ENV) else None)
        self.token = token or os.environ.get(TOKEN_ENV) or secrets.token_urlsafe(16)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>/`` (after `start`)."""
        assert self._server is not None, "start the dashboard first"
        return f"http://127.0.0.1:{self._server.server_address[1]}/"

    def start(self) -> Dashboard:
        """Bind 127.0.0.1:port, serve in a daemon thread, log the URL and (when generated) the token.

        Raises:
            ValueError: when the port is taken (names ``paper.dashboard_port``).
        """
        try:
            server = _Server(("127.0.0.1", self.port), _Handler)
        except OSError as err:
            raise ValueError(f"the dashboard cannot listen on 127.0.0.1:{self.port} ({err}): choose another "
                             "paper.dashboard_port, or 0 for any free port") from err
        server.site = _Site(self.paper_dir, self.token, _Cache(self.paper_dir))
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="paper-dashboard", daemon=True)
        self._thread.start()
        if self._token_from is None:
            logger.info("dashboard: %s | kill-switch token: %s (set %s to choose it and keep it out of the log)",
                        self.url, self.token, TOKEN_ENV)
        else:
            logger.info("dashboard: %s | kill-switch token from the %s", self.url, self._token_from)
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


def _fields(body: bytes, content_type: str) -> dict[str, Any]:
    """The fields of a JSON or form-encoded body ({} when malformed)."""
    text = body.decode("utf-8", errors="replace")
    if content_type.startswith("application/json"):
        try:
            data = json.loads(text or "{}")
        except json.JSONDecodeError:
            return {}
        return data if isinstance(data, dict) else {}
    return {k: v[0] for k, v in parse_qs(text).items()}


def _finite(x: Any) -> Any:
    """JSON-safe copy: NaN and infinities become null."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_finite(v) for v in x]
    return x
