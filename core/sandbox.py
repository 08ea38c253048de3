"""Serving every plugin's sandbox regulator from one HTTP server (``baosong sandbox``)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Response

from core.plugins import registry


def combined_app(configs: dict[str, dict]):
    """One WSGI app with each sandbox mounted at ``/<name>``."""
    mounts = {}
    for name, sandbox in registry().sandboxes.items():
        mounts[f"/{name}"] = sandbox.make_app(configs.get(name, {}))
    listing = Response(
        json.dumps({"sandboxes": sorted(mounts)}, ensure_ascii=False), content_type="application/json"
    )
    return DispatcherMiddleware(listing, mounts)


class RawHeadersHandler(WSGIRequestHandler):
    """Keeps the request's headers as sent in ``environ["baosong.raw_headers"]``: the WSGI environ
    drops names with '_' (Alibaba CSB's ``_api_*`` headers), which a sandbox must verify."""

    protocol_version = "HTTP/1.1"

    def make_environ(self):
        environ = super().make_environ()
        environ["baosong.raw_headers"] = list(self.headers.items())
        return environ


def load_configs(path: Path) -> dict[str, dict]:
    return json.loads(path.read_text("utf-8")) if path.exists() else {}


class ServerThread(threading.Thread):
    """A real HTTP server on a background thread (tests, the demo)."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0):
        super().__init__(daemon=True)
        self.server = make_server(host, port, app, threaded=True, request_handler=RawHeadersHandler)
        self.url = f"http://{host}:{self.server.server_port}"

    def run(self) -> None:
        self.server.serve_forever()

    def stop(self) -> None:
        self.server.shutdown()
