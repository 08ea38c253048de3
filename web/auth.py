"""Login, sessions, roles and CSRF.

Nothing is served without a session except what ``web.permissions.PUBLIC``/``PUBLIC_PATHS`` lists;
every other route needs the role ``web.permissions.required_role`` gives it (one table, fail closed).
Every unsafe request (POST, also HTMX's) must carry the session's CSRF token, as a form field
``csrf_token`` or the ``X-CSRF-Token`` header (set from the page's meta tag by static/app.js).

Sessions are checked on the server on every request: the signed cookie names the user and the user's
``session_version`` at login; logout, a password change, a role change and deactivation bump that
version, which ends every session of that user at once. A session idle for longer than
``SESSION_IDLE_MINUTES`` (default 8 h; ``BAOSONG_SESSION_IDLE_HOURS``) ends too, whatever the cookie
says. The cookie is HttpOnly, SameSite=Lax, and Secure when ``BAOSONG_HTTPS=1``.

Login throttling: failures are counted per (username, client address); after LOGIN_MAX_FAILURES within
the window the pair is locked for LOGIN_LOCK_MINUTES; and one address may fail at most
LOGIN_MAX_FAILURES_PER_ADDRESS times in the window across all usernames. The client address is the
socket's, or the one the configured number of trusted proxies reports (``BAOSONG_TRUSTED_PROXIES``,
see ``web.create_app``), so a client cannot pick its own. Unknown users and wrong passwords get the same
message and the same work (a password hash is always checked), so the page does not reveal who exists.
"""

from __future__ import annotations

import functools
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from datetime import timedelta
from urllib.parse import unquote, urlsplit

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
from web import audit, permissions
from web.models import LoginFailure, Role, User

bp = Blueprint("auth", __name__)
log = logging.getLogger("baosong.web.auth")

UNSAFE_METHODS = permissions.UNSAFE_METHODS
# Blueprints that authenticate every request themselves with a bearer token and ignore the cookie session
# (so CSRF does not apply), e.g. a plugin's mini-program API. Added by the plugin when it registers.
TOKEN_AUTH_BLUEPRINTS: set[str] = set()
CSRF_HEADER = "X-CSRF-Token"
POLL_HEADER = "X-Baosong-Poll"  # set by templates on self-refreshing fragments
LOGIN_FAILED_MESSAGE = "用户名或密码错误"
SESSION_ENDED_MESSAGE = "登录已失效（超时、已退出或账号已变更），请重新登录"
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
    """Decorator: the signed-in user must have at least ``role`` (viewer < operator < admin). It can
    only tighten what ``web.permissions`` grants (the guard checks the table first)."""

    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapped(*args, **kwargs):
            user = current_user()
            if user is None or not user.at_least(role):
                abort(403)
            return view(*args, **kwargs)

        wrapped.required_role = role  # read by the route-walk test
        return wrapped

    return decorate


def can(role: str) -> bool:
    user = current_user()
    return bool(user and user.at_least(role))


def _idle_limit() -> float:
    return current_app.config["SESSION_IDLE_MINUTES"] * 60.0


def _load_user() -> None:
    """The session's user, if the session is still valid on the server (version and idle time)."""
    g.user = None
    uid = session.get("uid")
    if uid is None:
        return
    user = db.session.get(User, uid)
    now = time.time()
    seen = session.get("seen")
    fresh = isinstance(seen, int | float) and 0 <= now - seen <= _idle_limit()
    if user is not None and user.active and user.session_version == session.get("ver") and fresh:
        g.user = user
        # A person's request refreshes the idle clock; a page polling by itself (HTMX "every", marked
        # with POLL_HEADER) does not, or an open dashboard would keep a session alive for ever.
        if now - seen > 30 and not request.headers.get(POLL_HEADER):
            session["seen"] = int(now)
    else:
        session.clear()
        g.session_ended = True


def end_sessions(user: User) -> None:
    """End every session of ``user`` (the caller commits): their cookies carry the old version."""
    user.session_version = (user.session_version or 0) + 1


def guard():
    """before_request: load the user, check CSRF, then the permission table for this route."""
    if request.blueprint in TOKEN_AUTH_BLUEPRINTS:
        g.user = None
        return None  # the blueprint's own before_request checks the token
    _load_user()
    if request.method in UNSAFE_METHODS and request.endpoint not in permissions.CSRF_EXEMPT \
            and not _csrf_ok():
        abort(400, description="csrf")
    rule = request.url_rule.rule if request.url_rule is not None else None
    if permissions.is_public(request.endpoint, rule):
        return None
    if g.user is None:
        ended = {"ended": "1"} if getattr(g, "session_ended", False) else {}
        target = url_for("auth.login", next=safe_next(request.full_path), **ended)
        if request.headers.get("HX-Request"):
            response = current_app.response_class("", status=401)
            response.headers["HX-Redirect"] = target
            return response
        return redirect(target)
    if request.endpoint is None:
        return None  # a 404 or 405 follows
    role = permissions.required_role(request.endpoint, request.method)
    if role is None:
        log.error("route %s has no entry in web.permissions: refused", request.endpoint)
        abort(403)
    if not g.user.at_least(role):
        abort(403)
    return None


def safe_next(value: str | None) -> str | None:
    """``value`` if it is a path on this site (after decoding), else None. Rejects schemes, hosts,
    control characters (a browser drops tabs and line breaks: ``/%09/evil`` becomes ``//evil``),
    backslashes (``/\\evil`` is ``//evil`` to a browser) and leading ``//``."""
    if not value or len(value) > 2000:
        return None
    for candidate in (value, unquote(value)):
        if any(ord(c) < 32 or ord(c) == 127 for c in candidate) or "\\" in candidate:
            return None
        if not candidate.startswith("/") or candidate.startswith("//"):
            return None
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    if parts.scheme or parts.netloc or not parts.path.startswith("/") or parts.path.startswith("//"):
        return None
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    return path.rstrip("?") or None


def _client_address() -> str:
    """The socket's address, or the client address the trusted proxies (ProxyFix) report."""
    return (request.remote_addr or "?")[:64]


def _now():
    return clock.utc_naive(clock.now())


def _failure_row(username: str, address: str) -> LoginFailure | None:
    return db.session.execute(
        sa.select(LoginFailure).filter_by(username=username, address=address)
    ).scalar_one_or_none()


def _locked(row: LoginFailure | None) -> bool:
    return bool(row and row.locked_until and row.locked_until > _now())


def _address_locked(address: str) -> bool:
    """Too many recent failures from one address, across every username it tried."""
    since = _now() - timedelta(minutes=current_app.config["LOGIN_WINDOW_MINUTES"])
    total = db.session.execute(
        sa.select(sa.func.coalesce(sa.func.sum(LoginFailure.failures), 0))
        .where(LoginFailure.address == address, LoginFailure.first_failed_at >= since)
    ).scalar()
    return int(total or 0) >= current_app.config["LOGIN_MAX_FAILURES_PER_ADDRESS"]


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
        ended = getattr(g, "session_ended", False) or request.args.get("ended") == "1"
        return render_template("login.html", next=safe_next(request.args.get("next")),
                               notice=SESSION_ENDED_MESSAGE if ended else None)
    raw_username = (request.form.get("username") or "").strip()[:80]
    username = "".join(c for c in raw_username if ord(c) >= 32 and ord(c) != 127)
    password = request.form.get("password") or ""
    address = _client_address()
    key = username.lower()
    row = _failure_row(key, address)
    user = db.session.execute(
        sa.select(User).where(sa.func.lower(User.username) == key)
    ).scalar_one_or_none() if username else None
    # Always check a hash: same work whether or not the user exists.
    password_ok = check_password_hash(user.password_hash if user else _DUMMY_HASH, password)
    locked = _locked(row) or _address_locked(address)
    if locked or user is None or not user.active or not password_ok:
        if not locked:
            _note_failure(key, address, row)
            locked = _locked(_failure_row(key, address)) or _address_locked(address)
        message = (f"登录失败次数过多，请 {current_app.config['LOGIN_LOCK_MINUTES']} 分钟后再试"
                   if locked else LOGIN_FAILED_MESSAGE)
        return render_template("login.html", error=message, username=username,
                               next=safe_next(request.form.get("next"))), 401 if not locked else 429
    if row is not None:
        db.session.delete(row)
    user.last_login_at = _now()
    session.clear()  # a fresh session (and CSRF token) on login: no fixation
    session.permanent = True
    session["uid"], session["ver"], session["seen"] = user.id, user.session_version, int(time.time())
    csrf_token()
    g.user = user
    audit.record("login", user.username, after={"address": address})
    db.session.commit()
    return redirect(safe_next(request.form.get("next")) or url_for("dashboard.index"))


@bp.post("/logout")
def logout():
    """Logging out ends this user's sessions everywhere (a copied cookie stops working too)."""
    if g.user is not None:
        end_sessions(g.user)
        audit.record("logout", g.user.username)
        db.session.commit()
    session.clear()
    return redirect(url_for("auth.login"))


def init_app(app: Flask) -> None:
    """Session and login settings (explicit: Flask's own defaults are a 31-day cookie without SameSite),
    the guard, the login blueprint."""
    import os

    idle_hours = float(os.environ.get("BAOSONG_SESSION_IDLE_HOURS") or 8)
    defaults = {
        "LOGIN_MAX_FAILURES": 5,
        "LOGIN_MAX_FAILURES_PER_ADDRESS": 20,
        "LOGIN_WINDOW_MINUTES": 15,
        "LOGIN_LOCK_MINUTES": 15,
        "SESSION_IDLE_MINUTES": idle_hours * 60,
    }
    for key, value in defaults.items():
        app.config.setdefault(key, value)
    app.config["PERMANENT_SESSION_LIFETIME"] = timedelta(minutes=app.config["SESSION_IDLE_MINUTES"])
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    app.config["SESSION_COOKIE_SECURE"] = bool(app.config.get("BAOSONG_HTTPS"))
    app.config["SESSION_COOKIE_NAME"] = "baosong_session"
    app.before_request(guard)
    app.register_blueprint(bp)

    @app.context_processor
    def _auth_context() -> dict:
        return {"csrf_token": csrf_token, "current_user": current_user(), "can": can, "Role": Role,
                "patient_identifier_roles": permissions.patient_identifier_roles}
