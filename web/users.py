"""Users (admin only), one's own password, and the audit log."""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for

from core.db import db
from core.models import AuditLog
from web import audit
from web.auth import end_sessions, hash_password, require_role
from web.models import Role, User

bp = Blueprint("users", __name__, url_prefix="/users")
MIN_PASSWORD_LENGTH = 10
AUDIT_PAGE_SIZE = 50


def generate_password() -> str:
    return secrets.token_urlsafe(12)


def password_problem(password: str) -> str | None:
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"密码至少 {MIN_PASSWORD_LENGTH} 位"
    if password.isdigit() or password.isalpha():
        return "密码应同时包含字母和数字或符号"
    return None


def create_user(username: str, role: str, password: str) -> User:
    user = User(username=username, role=role, password_hash=hash_password(password), active=True)
    db.session.add(user)
    return user


def ensure_first_admin(username: str = "admin") -> tuple[str, str] | None:
    """Create the first admin with a random password when there is no user yet (``make demo`` prints
    the password once). Returns (username, password), or None when users already exist."""
    if db.session.execute(sa.select(sa.func.count(User.id))).scalar():
        return None
    password = generate_password()
    create_user(username, Role.ADMIN, password)
    audit.record("user.create", username, after={"role": Role.ADMIN}, actor="system")
    db.session.commit()
    return username, password


@bp.get("/")
@require_role(Role.ADMIN)
def index():
    from web.permissions import patient_identifier_roles, table

    users = db.session.execute(sa.select(User).order_by(User.username)).scalars().all()
    return render_template("users.html", users=users, roles=Role.ALL, patient_roles=patient_identifier_roles(),
                           permission_table=table(), opter_types=OPTER_TYPES)


@bp.post("/patient-identifier-roles")
@require_role(Role.ADMIN)
def patient_roles():
    """Which roles see patient identifiers unmasked (admins always may be chosen; at least one)."""
    from core import settings
    from web.permissions import patient_identifier_roles

    chosen = [r for r in Role.ALL if r in request.form.getlist("role")]
    before = sorted(patient_identifier_roles())
    settings.set_flag("patient_identifier_roles", ",".join(chosen))
    audit.record("security.patient_roles", "patient_identifier_roles", before=before, after=chosen)
    db.session.commit()
    labels = "、".join(Role.LABELS[r] for r in chosen) or "无（所有人看到脱敏信息）"
    flash(f"可查看完整患者身份信息的角色：{labels}", "ok")
    return redirect(url_for("users.index"))


@bp.post("/")
@require_role(Role.ADMIN)
def create():
    username = (request.form.get("username") or "").strip()
    role = request.form.get("role") or Role.VIEWER
    if not username or len(username) > 80 or role not in Role.ALL:
        flash("用户名或角色无效", "error")
        return redirect(url_for("users.index"))
    exists = db.session.execute(
        sa.select(User.id).where(sa.func.lower(User.username) == username.lower())
    ).first()
    if exists:
        flash("该用户名已存在", "error")
        return redirect(url_for("users.index"))
    problem = identity_problem(request.form)
    if problem:
        flash(problem, "error")
        return redirect(url_for("users.index"))
    password = generate_password()
    identity = apply_identity(create_user(username, role, password), request.form)
    audit.record("user.create", username, after={"role": role, **identity})
    db.session.commit()
    return render_template("user_password_shown.html", username=username, password=password)


OPTER_TYPES = {"1": "经办人", "2": "自助终端", "3": "移动终端"}  # a medical-insurance envelope's opter_type


def identity_problem(form) -> str | None:
    """Display name, insurance operator code/name/type as the admin typed them (lengths of the envelope)."""
    if len(form.get("display_name", "")) > 50 or len(form.get("opter_name", "")) > 50:
        return "姓名与经办人姓名不超过 50 字"
    if len(form.get("opter", "")) > 30:
        return "经办人编号不超过 30 位"
    if form.get("opter_type", "1") not in OPTER_TYPES:
        return "经办人类别无效"
    return None


def apply_identity(user: User, form) -> dict:
    """Set the identity fields from the form; returns what changed (for the audit log)."""
    changed = {}
    for name in ("display_name", "opter", "opter_name", "opter_type"):
        if name in form:
            value = form.get(name, "").strip()
            if value != (getattr(user, name) or ""):
                changed[name] = value
                setattr(user, name, value)
    return changed


@bp.post("/<int:user_id>")
@require_role(Role.ADMIN)
def update(user_id: int):
    user = db.session.get(User, user_id) or abort(404)
    before = {"role": user.role, "active": user.active}
    role = request.form.get("role", user.role)
    active = request.form.get("active", "1" if user.active else "0") == "1"
    if role not in Role.ALL:
        abort(400)
    if user.id == g.user.id and (role != Role.ADMIN or not active):
        flash("不能降低或停用自己的管理员账号", "error")
        return redirect(url_for("users.index"))
    problem = identity_problem(request.form)
    if problem:
        flash(problem, "error")
        return redirect(url_for("users.index"))
    if (role, active) != (user.role, user.active):
        end_sessions(user)  # a new role or a deactivation applies now, not at their next login
    user.role, user.active = role, active
    identity = apply_identity(user, request.form)
    audit.record("user.update", user.username, before=before, after={"role": role, "active": active, **identity})
    db.session.commit()
    flash(f"已更新用户 {user.username}", "ok")
    return redirect(url_for("users.index"))


@bp.post("/<int:user_id>/reset-password")
@require_role(Role.ADMIN)
def reset_password(user_id: int):
    user = db.session.get(User, user_id) or abort(404)
    password = generate_password()
    user.password_hash = hash_password(password)
    end_sessions(user)
    audit.record("user.password", user.username, after={"reset_by_admin": True})
    db.session.commit()
    return render_template("user_password_shown.html", username=user.username, password=password)


@bp.route("/me/password", methods=["GET", "POST"])
def own_password():
    from werkzeug.security import check_password_hash

    if request.method == "GET":
        return render_template("own_password.html")
    user: User = g.user
    if not check_password_hash(user.password_hash, request.form.get("current") or ""):
        return render_template("own_password.html", error="当前密码不正确"), 400
    new = request.form.get("new") or ""
    if new != (request.form.get("confirm") or ""):
        return render_template("own_password.html", error="两次输入的新密码不一致"), 400
    problem = password_problem(new)
    if problem:
        return render_template("own_password.html", error=problem), 400
    user.password_hash = hash_password(new)
    end_sessions(user)
    audit.record("user.password", user.username)
    db.session.commit()
    from flask import session

    # Every other session of this user ends; this one continues under the new version and a new token.
    session["ver"] = user.session_version
    session.pop("csrf", None)
    flash("密码已修改", "ok")
    return redirect(url_for("dashboard.index"))


def _labeller():
    labels = audit.all_labels()
    return lambda action: audit.action_label(action, labels)


@bp.get("/audit")
@require_role(Role.OPERATOR)
def audit_log():
    query = sa.select(AuditLog)
    actor = (request.args.get("actor") or "").strip()
    action = (request.args.get("action") or "").strip()
    if actor:
        query = query.where(AuditLog.actor == actor)
    if action:
        query = query.where(AuditLog.action == action)
    before_id = request.args.get("before", type=int)
    if before_id:
        query = query.where(AuditLog.id < before_id)
    entries = db.session.execute(query.order_by(AuditLog.id.desc()).limit(AUDIT_PAGE_SIZE + 1)).scalars().all()
    more = len(entries) > AUDIT_PAGE_SIZE
    entries = entries[:AUDIT_PAGE_SIZE]
    seen = [a for (a,) in db.session.execute(sa.select(AuditLog.action).distinct())]
    return render_template("audit.html", entries=entries, more=more, actor=actor, action=action,
                           choices=audit.action_choices(seen), action_label=_labeller())
