"""Login, sessions, roles and CSRF.

Nothing but /static and the login page is served without a session. Every unsafe request (POST, also
HTMX's) must carry the session's CSRF token, as a form field ``csrf_token`` or the ``X-CSRF-Token``
header (set from the page's meta tag by static/app.js). Viewers may not POST anything except their own
account actions, so plugin and configuration blueprints are read-only for them without extra code.

Login throttling: failures are counted per (username, client address); after LOGIN_MAX_FAILURES within
the window the pair is locked for LOGIN_LOCK_MINUTES. Unknown users and wrong passwords get the same
message and the same work (a password hash is always checked), so the page does not reveal who exists.
"""

from __future__ import annotations

import functools
import hmac
import secrets
from collections.abc import Callable
from datetime import timedelta

import sqlalchemy as sa
from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.security import check_password_hash, generate_password_hash

from core import clock
from core.db import db
from web import audit
from web.models import LoginFailure, Role, User

bp = Blueprint("auth", __name__)

PUBLIC_ENDPOINTS = frozenset({"static", "auth.login",
                              "health.healthz", "health.readyz", "health.metrics"})  # web/health.py
# POST endpoints a viewer may use (their own session and password).
VIEWER_POST_ENDPOINTS = frozenset({"auth.login", "auth.logout", "users.own_password"})
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Blueprints that authenticate every request themselves with a bearer token and ignore the cookie session
# (so CSRF does not apply), e.g. the twopath mini-program API ("twopath.api"). Added by the plugin.
TOKEN_AUTH_BLUEPRINTS: set[str] = set()
CSRF_HEADER = "X-CSRF-Token"
LOGIN_FAILED_MESSAGE = "用户名或密码错误"
# Hash checked for unknown usernames so they take as long as a wrong password.
_DUMMY_HASH = generate_password_hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    return generate_password_hash(password)


def csrf_token() -> str:
    token = session.get("csrf")
    if not token:
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


def _csrf_ok() -> bool:
    expected = session.get("csrf")
    sent = request.headers.get(CSRF_HEADER) or request.form.get("csrf_token")
    return bool(expected and sent and hmac.compare_digest(str(expected), str(sent)))


def current_user() -> User | None:
    return getattr(g, "user", None)


def require_role(role: str) -> Callable:
    """Decorator: the signed-in user must have at least ``role`` (viewer < operator < admin)."""

    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapped(*args, **kwargs):
            user = current_user()
            if user is None or not user.at_least(role):
                abort(403)
            return view(*args, **kwargs)

        return wrapped

    return decorate


def can(role: str) -> bool:
    user = current_user()
    return bool(user and user.at_least(role))


def _load_user() -> None:
    g.user = None
    uid = session.get("uid")
    if uid is None:
        return
    user = db.session.get(User, uid)
    if user is not None and user.active and user.session_version == session.get("ver"):
        g.user = user
    else:
        session.pop("uid", None)


def guard():
    """before_request: load the user, check CSRF, require a session and the role for writes."""
    if request.blueprint in TOKEN_AUTH_BLUEPRINTS:
        g.user = None
        return None  # the blueprint's own before_request checks the token
    _load_user()
    if request.method in UNSAFE_METHODS and not _csrf_ok():
        abort(400, description="csrf")
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    if g.user is None:
        target = url_for("auth.login", next=_safe_next(request.full_path))
        if request.headers.get("HX-Request"):
            response = current_app.response_class("", status=401)
            response.headers["HX-Redirect"] = target
            return response
        return redirect(target)
    if request.method in UNSAFE_METHODS and request.endpoint not in VIEWER_POST_ENDPOINTS \
            and not g.user.at_least(Role.OPERATOR):
        abort(403)
    return None


def _safe_next(value: str | None) -> str | None:
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return None
    return value.rstrip("?") or None


def _client_address() -> str:
    return (request.remote_addr or "?")[:64]


def _now():
    return clock.utc_naive(clock.now())


def _failure_row(username: str, address: str) -> LoginFailure | None:
    return db.session.execute(
        sa.select(LoginFailure).filter_by(username=username, address=address)
    ).scalar_one_or_none()


def _locked(row: LoginFailure | None) -> bool:
    return bool(row and row.locked_until and row.locked_until > _now())


def _note_failure(username: str, address: str, row: LoginFailure | None) -> None:
    now = _now()
    window = timedelta(minutes=current_app.config["LOGIN_WINDOW_MINUTES"])
    if row is None:
        row = LoginFailure(username=username, address=address, failures=0, first_failed_at=now)
        db.session.add(row)
    if row.first_failed_at < now - window:
        row.failures, row.first_failed_at, row.locked_until = 0, now, None
    row.failures += 1
    if row.failures >= current_app.config["LOGIN_MAX_FAILURES"]:
        row.locked_until = now + timedelta(minutes=current_app.config["LOGIN_LOCK_MINUTES"])
        audit.record("login_locked", f"{username}@{address}", actor="system",
                     after={"failures": row.failures})
    db.session.commit()


@bp.route("/login", methods=["GET", "POST"])
def login():
    if request.method == "GET":
        if g.user is not None:
            return redirect(url_for("dashboard.index"))
        return render_template("login.html", next=_safe_next(request.args.get("next")))
    username = (request.form.get("username") or "").strip()[:80]
    password = request.form.get("password") or ""
    address = _client_address()
    row = _failure_row(username.lower(), address)
    user = db.session.execute(
        sa.select(User).where(sa.func.lower(User.username) == username.lower())
    ).scalar_one_or_none() if username else None
    # Always check a hash: same work whether or not the user exists.
    password_ok = check_password_hash(user.password_hash if user else _DUMMY_HASH, password)
    locked = _locked(row)
    if locked or user is None or not user.active or not password_ok:
        if not locked:
            _note_failure(username.lower(), address, row)
            locked = _locked(_failure_row(username.lower(), address))
        message = (f"登录失败次数过多，请 {current_app.config['LOGIN_LOCK_MINUTES']} 分钟后再试"
                   if locked else LOGIN_FAILED_MESSAGE)
        return render_template("login.html", error=message, username=username,
                               next=_safe_next(request.form.get("next"))), 401 if not locked else 429
    if row is not None:
        db.session.delete(row)
    user.last_login_at = _now()
    session.clear()  # a fresh session (and CSRF token) on login: no fixation
    session.permanent = True
    session["uid"], session["ver"] = user.id, user.session_version
    csrf_token()
    g.user = user
    audit.record("login", user.username, after={"address": address})
    db.session.commit()
    return redirect(_safe_next(request.form.get("next")) or url_for("dashboard.index"))


@bp.post("/logout")
def logout():
    if g.user is not None:
        audit.record("logout", g.user.username, commit=True)
    session.clear()
    return redirect(url_for("auth.login"))


def init_app(app: Flask) -> None:
    app.config.setdefault("LOGIN_MAX_FAILURES", 5)
    app.config.setdefault("LOGIN_WINDOW_MINUTES", 15)
    app.config.setdefault("LOGIN_LOCK_MINUTES", 15)
    app.config.setdefault("PERMANENT_SESSION_LIFETIME", timedelta(hours=8))
    app.config.setdefault("SESSION_COOKIE_HTTPONLY", True)
    app.config.setdefault("SESSION_COOKIE_SAMESITE", "Lax")
    app.before_request(guard)
    app.register_blueprint(bp)

    @app.context_processor
    def _auth_context() -> dict:
        return {"csrf_token": csrf_token, "current_user": current_user(), "can": can, "Role": Role}
