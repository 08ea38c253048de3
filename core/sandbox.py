"""Serving every plugin's sandbox regulator from one HTTP server (``baosong sandbox``).

The server keeps HTTP/1.1 connections open between requests, as a regulator's gateway does: werkzeug's
development server closes every connection after one answer, which made each upload pay a TCP connect
and the server a new thread (a real gateway would not make the client do that, and the benchmark would
measure it). A connection closes after a fault that cut or dropped an answer, after an error, after a
request whose body was not framed by Content-Length, and after ``IDLE_SECONDS`` without a request.
"""

from __future__ import annotations

import io
import json
import socket
import threading
from pathlib import Path

from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler
from werkzeug.wrappers import Response

from core.plugins import registry

IDLE_SECONDS = 60  # an idle kept-alive connection is closed after this (nginx's default is 75 s)
_CLOSE = "baosong.close_connection"  # environ key: this connection must not serve another request


def combined_app(configs: dict[str, dict]):
    """One WSGI app with each sandbox mounted at ``/<name>``."""
    mounts = {}
    for name, sandbox in registry().sandboxes.items():
        mounts[f"/{name}"] = sandbox.make_app(configs.get(name, {}))
    listing = Response(
        json.dumps({"sandboxes": sorted(mounts)}, ensure_ascii=False), content_type="application/json"
    )
    return DispatcherMiddleware(listing, mounts)


class _CloseOnError:
    """Marks the connection for closing when the app raises, while answering or mid-body: an answer cut
    short leaves the connection's framing broken, so it must not carry another request."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        try:
            body = self.app(environ, start_response)
        except BaseException:
            environ[_CLOSE] = True
            raise
        return self._iterate(environ, body)

    @staticmethod
    def _iterate(environ, body):
        try:
            yield from body
        except BaseException:
            environ[_CLOSE] = True
            raise
        finally:
            if hasattr(body, "close"):
                body.close()


class RawHeadersHandler(WSGIRequestHandler):
    """Keeps the request's headers as sent in ``environ["baosong.raw_headers"]`` (the WSGI environ drops
    names with '_', Alibaba CSB's ``_api_*`` headers, which a sandbox must verify), and keeps the
    connection alive between requests."""

    protocol_version = "HTTP/1.1"
    timeout = IDLE_SECONDS
    # An answer goes out in two writes (head, then body): with Nagle's algorithm the body waited for the
    # client's delayed ACK of the head on a kept-alive connection, 40 ms an answer (measured).
    disable_nagle_algorithm = True
    _keep_alive = False  # until a request has been read whole (send_error may answer before that)
    environ: dict | None = None

    server: SandboxServer

    def setup(self) -> None:
        super().setup()
        self.server.opened(self.connection)

    def finish(self) -> None:
        self.server.closed(self.connection)
        super().finish()

    def make_environ(self):
        environ = super().make_environ()
        environ["baosong.raw_headers"] = list(self.headers.items())
        return environ

    def run_wsgi(self) -> None:
        # werkzeug drains whatever is readable for 10 ms after answering, because it closes every
        # connection; on a kept-alive one that would swallow the client's next request. The body is
        # read here in full instead, and werkzeug drains an empty buffer.
        self._keep_alive = not self.close_connection
        connection_reader = self.rfile
        length = self.headers.get("Content-Length")
        if ("Transfer-Encoding" in self.headers or "Expect" in self.headers
                or (length is not None and not length.strip().isdigit())):
            self._keep_alive = False  # not framed by a plain Content-Length: werkzeug reads it as it can
        else:
            body = connection_reader.read(int(length)) if length else b""
            if length and len(body) < int(length):  # the client went away mid-body
                self.close_connection = True
                return
            self.rfile = io.BytesIO(body)
        self.environ = None
        try:
            super().run_wsgi()
        finally:
            self.rfile = connection_reader
        if not self._keeps_connection():
            self.close_connection = True
        self._keep_alive = False  # an error answered before the next request is read (send_error) closes

    def send_header(self, keyword: str, value: str) -> None:
        if keyword.lower() == "connection" and value.lower() == "close" and self._keeps_connection():
            return  # werkzeug says close on every answer; this server keeps the connection
        super().send_header(keyword, value)

    def _keeps_connection(self) -> bool:
        # An answer written after the app failed (werkzeug's 500) says "Connection: close", so that the
        # client does not send its next request down a connection about to close.
        return self._keep_alive and not (self.environ or {}).get(_CLOSE)

    def connection_dropped(self, error, environ=None) -> None:
        self.close_connection = True

    def log_error(self, format: str, *args) -> None:
        if format.startswith("Request timed out"):
            return  # an idle kept-alive connection reaching IDLE_SECONDS is not an error
        super().log_error(format, *args)


class SandboxServer(ThreadedWSGIServer):
    """A threaded werkzeug server with the sandbox's handler that knows its open connections, so that
    ``close_connections`` can shut the kept-alive ones when it stops."""

    def __init__(self, host: str, port: int, app) -> None:
        super().__init__(host, port, _CloseOnError(app), handler=RawHeadersHandler)
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def opened(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(connection)

    def closed(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    def close_connections(self) -> None:
        with self._connections_lock:
            open_connections = list(self._connections)
        for connection in open_connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def load_configs(path: Path) -> dict[str, dict]:
    return json.loads(path.read_text("utf-8")) if path.exists() else {}


class ServerThread(threading.Thread):
    """A real HTTP server on a background thread (tests, the demo)."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0):
        super().__init__(daemon=True)
        self.server = SandboxServer(host, port, app)
        self.url = f"http://{host}:{self.server.server_port}"

    def run(self) -> None:
        self.server.serve_forever()

    def stop(self) -> None:
        """Stop accepting and close the connections kept open, so no client is answered afterwards."""
        self.server.shutdown()
        self.server.close_connections()
        self.server.server_close()
