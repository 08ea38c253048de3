"""The admin (Flask + HTMX, Simplified Chinese, every asset served by Baosong itself).

Blueprints: auth (login, CSRF, roles), dashboard, uploads (数据查询), retries, tasks, stats, users/audit;
configuration pages from ``web/config_*.py`` modules. Plugins' own admin pages and their navigation
entries come only from the ``register_blueprints`` hook (``core.hook_types.AdminPages``), the same way for
the built-in plugins and for a package installed from outside; actions on an upload come from the
``upload_actions`` hook (web/uploads.py).
"""

from __future__ import annotations

import hashlib
import hmac
import importlib
import logging
import pkgutil
from pathlib import Path

from flask import Flask, render_template, request
from htmx_flask import Htmx

from core.app import create_app as create_core_app
from core.config import Config

htmx = Htmx()
log = logging.getLogger("baosong.web")

# Main navigation: (label, endpoint, minimum role or None).
NAV = (
    ("数据看板", "dashboard.index", None),
    ("数据查询", "uploads.index", None),
    ("失败重试", "retries.index", None),
    ("定时任务", "tasks.index", None),
    ("统计分析", "stats.index", None),
)
CONFIG_ENDPOINT = "config.index"  # the configuration pages (web/config_*.py) provide this endpoint


def _session_secret(config: Config) -> str:
    """The session-signing key, derived from the deployment's at-rest key (one secret to keep)."""
    from core.secrets import load_or_create_key

    key = load_or_create_key(config.secret_key_file)
    return hmac.new(key, b"baosong-web-session", hashlib.sha256).hexdigest()


def create_app(config: Config | None = None, **overrides) -> Flask:
    config = config or Config.from_env()
    app = create_core_app(config, name="web")
    app.config["SECRET_KEY"] = _session_secret(config)
    app.config["MAX_CONTENT_LENGTH"] = 20 * 1024 * 1024
    app.config.update(overrides)
    app.json.ensure_ascii = False  # readable Chinese in JSON shown on pages (audit before/after)
    htmx.init_app(app)

    from web import auth, filters
    from web import models as _models  # noqa: F401  (registers the admin's tables)
    from web.dashboard import bp as dashboard_bp
    from web.retries import bp as retries_bp
    from web.stats import bp as stats_bp
    from web.tasks import bp as tasks_bp
    from web.uploads import bp as uploads_bp
    from web.users import bp as users_bp

    filters.register(app)
    auth.init_app(app)
    for blueprint in (dashboard_bp, uploads_bp, retries_bp, tasks_bp, stats_bp, users_bp):
        app.register_blueprint(blueprint)
    _register_config_blueprints(app)
    _register_plugin_blueprints(app)
    _error_pages(app)
    _install_search_index(app)

    @app.context_processor
    def _layout_context() -> dict:
        return {"nav": NAV, "config_endpoint": CONFIG_ENDPOINT if CONFIG_ENDPOINT in app.view_functions else None,
                "plugin_nav": app.extensions.get("baosong_plugin_nav", [])}

    @app.after_request
    def _security_headers(response):
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if request.endpoint != "static":
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    return app


def _install_search_index(app: Flask) -> None:
    """The upload log's free-text index (web/search_index.py), built where the admin runs."""
    from core.db import db
    from web import search_index

    try:
        with app.app_context():
            search_index.install(db.engine)
    except Exception as exc:  # the database may not be reachable (or migrated) yet: pages will say so
        log.warning("could not install the upload search index: %s", exc)


def _register_config_blueprints(app: Flask) -> None:
    """``web/config_*.py`` modules (configuration management) that expose ``bp``."""
    for module_info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if not module_info.name.startswith("config_"):
            continue
        _register_module_blueprint(app, f"web.{module_info.name}")


def _register_plugin_blueprints(app: Flask) -> None:
    """Every plugin's admin pages (hook ``register_blueprints``); one broken plugin loses only its pages."""
    from core.plugins import registry

    nav: list[tuple[str, str, str | None]] = []
    try:
        contributed = registry().admin_pages()
    except Exception:
        log.exception("a plugin's register_blueprints failed; plugin pages are not available")
        contributed = []
    for plugin, pages in contributed:
        blueprint = pages.blueprint
        if blueprint.name not in app.blueprints:
            try:
                app.register_blueprint(blueprint)
            except Exception:
                log.exception("could not register the blueprint of plugin %s", plugin)
                continue
        for entry in pages.nav:
            if entry.endpoint in app.view_functions:
                nav.append((entry.label, entry.endpoint, entry.role))
            else:
                log.error("plugin %s: navigation entry %s names no endpoint", plugin, entry.endpoint)
    app.extensions["baosong_plugin_nav"] = nav


def _register_module_blueprint(app: Flask, module_name: str):
    try:
        module = importlib.import_module(module_name)
    except Exception:  # one broken plugin page must not take the whole admin down
        log.exception("could not import %s; its pages are not available", module_name)
        return None
    blueprint = getattr(module, "bp", None)
    if blueprint is None:
        return None
    if blueprint.name in app.blueprints:
        return module
    try:
        app.register_blueprint(blueprint)
    except Exception:
        log.exception("could not register the blueprint of %s", module_name)
        return None
    return module


def _error_pages(app: Flask) -> None:
    messages = {
        400: ("请求无效", "表单已过期或缺少安全令牌，请刷新页面后重试。"),
        403: ("没有权限", "您的角色不能执行此操作。如需操作，请联系管理员。"),
        404: ("页面不存在", "请检查地址，或从导航进入。"),
        429: ("操作过于频繁", "请稍后再试。"),
        500: ("服务器错误", "处理请求时出错，详情已记录在服务器日志中。"),
    }

    def handler(error):
        code = getattr(error, "code", 500) or 500
        title, text = messages.get(code, ("出错了", str(error)))
        if code == 400 and getattr(error, "description", "") == "csrf":
            text = "安全令牌（CSRF）校验失败：表单已过期或来源不明，请刷新页面后重试。"
        return render_template("error.html", code=code, title=title, text=text), code

    for code in messages:
        app.register_error_handler(code, handler)
