"""The admin (Flask + HTMX, Simplified Chinese, every asset served by Baosong itself).

Blueprints: auth (login, CSRF, roles), dashboard, uploads (数据查询), retries, tasks, stats, users/audit;
configuration pages from ``web/config_*.py`` modules. Plugins' own admin pages and their navigation
entries come only from the ``register_blueprints`` hook (``core.hook_types.AdminPages``), the same way for
the built-in plugins and for a package installed from outside; actions on an upload come from the
``upload_actions`` hook (web/uploads.py).

Security (see web/permissions.py and web/auth.py): every response carries a strict
Content-Security-Policy (scripts and styles only from /static, no inline code, no framing) and
nosniff/Referrer-Policy headers; ``BAOSONG_HTTPS=1`` marks the session cookie Secure and sends HSTS;
``BAOSONG_TRUSTED_PROXIES=<n>`` trusts the X-Forwarded-* headers of that many reverse proxies (default
0: the socket address is the client); ``BAOSONG_MAX_UPLOAD_MB`` caps request bodies (default 20). The
crypto self-test runs before the app is built: an admin whose SM2/SM3/SM4 are broken does not start.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib
import logging
import os
import pkgutil
from pathlib import Path

from flask import Flask, g, render_template, request
from htmx_flask import Htmx
from werkzeug.middleware.proxy_fix import ProxyFix

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

# No inline script or style anywhere (templates declare behaviour with data- attributes read by
# static/app.js); 'self' only, no framing, forms post only here.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
DEFAULT_MAX_UPLOAD_MB = 20


def _session_secret(config: Config) -> str:
    """The session-signing key, derived from the deployment's at-rest key (one secret to keep)."""
    from core.secrets import load_or_create_key

    key = load_or_create_key(config.secret_key_file)
    return hmac.new(key, b"baosong-web-session", hashlib.sha256).hexdigest()


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name) or default)
    except ValueError:
        return default


def create_app(config: Config | None = None, **overrides) -> Flask:
    _crypto_self_test()
    config = config or Config.from_env()
    app = create_core_app(config, name="web")
    app.config["SECRET_KEY"] = _session_secret(config)
    app.config["MAX_CONTENT_LENGTH"] = _env_int("BAOSONG_MAX_UPLOAD_MB", DEFAULT_MAX_UPLOAD_MB) * 1024 * 1024
    app.config["BAOSONG_HTTPS"] = os.environ.get("BAOSONG_HTTPS", "") in ("1", "true", "yes")
    app.config["TRUSTED_PROXIES"] = _env_int("BAOSONG_TRUSTED_PROXIES", 0)
    app.config.update(overrides)
    if app.config["TRUSTED_PROXIES"] > 0:
        hops = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops)
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
    from web import alerts, health, platform  # production operations (issue 13)

    for blueprint in (health.bp, platform.bp, alerts.bp):
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
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "same-origin"
        if app.config["BAOSONG_HTTPS"]:
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        if request.endpoint != "static":
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.after_request
    def _audit_unmasked_view(response):
        """A page, fragment or export that showed patient identifiers in full is audited (who, what)."""
        # A self-refreshing fragment's polls are not new views (the page that embeds it was audited).
        if getattr(g, "unmasked_view", False) and response.status_code < 400 \
                and not request.headers.get("X-Baosong-Poll"):
            from core.db import db
            from web import audit

            try:
                audit.record("patient.unmasked_view", f"{request.method} {request.full_path.rstrip('?')}",
                             after={"endpoint": request.endpoint})
                db.session.commit()
            except Exception:  # the page was served; an audit failure is logged, not shown
                db.session.rollback()
                log.exception("could not audit an unmasked view")
        return response

    return app


def _crypto_self_test() -> None:
    """Known answers for SM2/SM3/SM4 before anything is served (once per process)."""
    global _SELF_TESTED
    if _SELF_TESTED:
        return
    from core.crypto import CryptoError, self_test

    try:
        self_test()
    except CryptoError:
        log.critical("加密自检失败，管理后台不启动")
        raise
    _SELF_TESTED = True


_SELF_TESTED = False


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
    from web import permissions

    nav: list[tuple[str, str, str | None]] = []
    table: dict[str, tuple[str, str]] = {}
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
        declared = permissions.checked_plugin_entries(plugin, blueprint.name, pages.permissions)
        table.update(declared)
        for entry in pages.nav:
            if entry.endpoint in app.view_functions:
                nav.append((entry.label, entry.endpoint, entry.role))
            else:
                log.error("plugin %s: navigation entry %s names no endpoint", plugin, entry.endpoint)
    app.extensions["baosong_plugin_nav"] = nav
    app.extensions["baosong_permissions"] = table


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
    """Chinese pages for every error status we produce (Werkzeug's own are English)."""
    limit_mb = app.config["MAX_CONTENT_LENGTH"] // (1024 * 1024)
    messages = {
        400: ("请求无效", "表单已过期或内容不完整，请刷新页面后重试。"),
        401: ("需要登录", "请先登录。"),
        403: ("没有权限", "您的角色不能执行此操作。如需操作，请联系管理员。"),
        404: ("页面不存在", "请检查地址，或从导航进入。"),
        405: ("请求方式不允许", "此地址不接受这种请求方式（例如直接在地址栏打开了只能提交的表单）。请从页面上的按钮操作。"),
        413: ("文件过大", f"上传的文件或提交的内容超过了 {limit_mb} MB 的上限。请拆分文件或减少行数后重试。"),
        422: ("内容无法处理", "提交的内容有误，请检查后重试。"),
        429: ("操作过于频繁", "请稍后再试。"),
        500: ("服务器错误", "处理请求时出错，详情已记录在服务器日志中。"),
    }

    def handler(error):
        code = getattr(error, "code", None) or 500
        if code == 500:
            log.error("unhandled error on %s", request.path, exc_info=getattr(error, "original_exception", None))
        title, text = messages.get(code, ("出错了", "请求未能完成。"))
        if code == 400 and getattr(error, "description", "") == "csrf":
            text = "安全令牌（CSRF）校验失败：表单已过期或来源不明，请刷新页面后重试。"
        try:
            return render_template("error.html", code=code, title=title, text=text), code
        except Exception:  # the error page must not fail in turn (e.g. the database is down)
            return f"{code} {title}：{text}", code, {"Content-Type": "text/plain; charset=utf-8"}

    for code in messages:
        app.register_error_handler(code, handler)
