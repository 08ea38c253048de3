"""The admin (Flask + HTMX, Simplified Chinese, every asset served by Baosong itself)."""

from __future__ import annotations

from flask import Flask
from htmx_flask import Htmx

from core.app import create_app as create_core_app
from core.config import Config

htmx = Htmx()


def create_app(config: Config | None = None, **overrides) -> Flask:
    app = create_core_app(config, name="web")
    app.config.update(overrides)
    htmx.init_app(app)

    from web import filters
    from web.home import bp as home_bp

    filters.register(app)
    app.register_blueprint(home_bp)
    return app
