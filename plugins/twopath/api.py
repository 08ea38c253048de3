"""A small JSON API for the hospital's mini-program (5.4 patient applications, 6.7 doctor review),
nested in the plugin's blueprint at ``/twopath/api``.

Authentication: ``Authorization: Bearer <token>``. An admin issues a token for one Baosong user (医生权限
page); the token acts with that user's role, operator identity and doctor permission. Only the token's
SHA-256 is stored. The admin's session cookie is ignored here, so there is no CSRF surface: a request
without a valid token gets 401, a role it lacks 403.

    GET  /twopath/api/institutions               the institutions a patient chooses from (5.4)  viewer+
    GET  /twopath/api/items?kind=twopath|chronic drugs / diseases that can be filed                 viewer+
    POST /twopath/api/applications               a patient application -> a draft filing        operator
         {"kind": "twopath", "certno": "...", "item_code": "...", "institution_code": "...",
          "begndate": "yyyy-MM-dd", "enddate": "yyyy-MM-dd", "tel": "...", "addr": "...", "cond_abst": "..."}
         the person (psn_no...) comes from 1101 with the token user's operator identity
    GET  /twopath/api/reviews                    drafts awaiting a doctor (identifiers masked)   doctor
    GET  /twopath/api/reviews/<id>               one filing for review                           doctor
    POST /twopath/api/reviews/<id>/approve       approve as the token's doctor                   doctor

Answers: ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}`` with 400/401/403/404.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from flask import Blueprint, g, jsonify, request

from core import clock
from core.db import db
from core.masking import mask_field
from plugins.twopath import catalogue, client, filings
from plugins.twopath.models import KIND_LABELS, TWOPATH, ApiToken, Filing, FilingStatus
from web.models import Role, User

api_bp = Blueprint("api", __name__, url_prefix="/api")
BLUEPRINT_NAME = "twopath.api"  # as nested in the plugin's blueprint (web.auth leaves its auth to us)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def issue_token(user: User, *, label: str, created_by: str) -> str:
    """A new token for ``user`` (returned once, stored hashed)."""
    token = "bst_" + secrets.token_urlsafe(32)
    db.session.add(ApiToken(user_id=user.id, token_hash=_hash(token), label=label, created_by=created_by))
    return token


def _error(message: str, status: int):
    return jsonify({"ok": False, "error": message}), status


@api_bp.before_request
def _authenticate():
    """Bearer token only: whatever the cookie session loaded is dropped."""
    g.user = None
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        return _error("需要 Authorization: Bearer 令牌", 401)
    row = db.session.execute(sa.select(ApiToken).filter_by(token_hash=_hash(header[7:].strip()))).scalar_one_or_none()
    user = db.session.get(User, row.user_id) if row is not None and row.revoked_at is None else None
    if user is None or not user.active:
        return _error("令牌无效或已停用", 401)
    row.last_used_at = clock.utc_naive(clock.now())
    db.session.commit()
    g.user = user
    return None


def needs(role: str, doctor: bool = False) -> Callable:
    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapped(*args, **kwargs):
            if not g.user.at_least(role):
                return _error(f"需要{Role.LABELS[role]}权限", 403)
            if doctor and not g.user.is_doctor:
                return _error("需要医生权限（由管理员开通）", 403)
            return view(*args, **kwargs)

        wrapped.required_role = role  # read by the route-walk test (tests/test_security_routes.py)
        wrapped.token_auth = True
        return wrapped

    return decorate


def _filing_json(filing: Filing) -> dict[str, Any]:
    full = g.user.at_least(Role.ADMIN)
    return {
        "id": filing.id, "kind": filing.kind, "kind_label": KIND_LABELS[filing.kind], "status": filing.status,
        "status_label": filing.status_label,
        "psn_name": filing.psn_name if full else mask_field("psn_name", filing.psn_name),
        "certno": filing.certno if full else mask_field("certno", filing.certno),
        "item_code": filing.item_code, "item_name": filing.item_name, "appy_date": filing.appy_date,
        "begndate": filing.begndate, "enddate": filing.enddate, "cond_abst": (filing.data or {}).get("cond_abst", ""),
        "institution": ((filing.data or {}).get("twopathfixmedins") or [{}])[0].get("fixmedins_name", ""),
        "doctor_name": filing.doctor_name, "appy_no": filing.appy_no,
    }


@api_bp.get("/institutions")
@needs(Role.VIEWER)
def institutions():
    return jsonify({"ok": True, "institutions": [
        {"code": i.code, "name": i.name, "poolarea_no": i.poolarea_no} for i in catalogue.items("institutions", True)]})


@api_bp.get("/items")
@needs(Role.VIEWER)
def items():
    kind = request.args.get("kind", TWOPATH)
    if kind not in KIND_LABELS:
        return _error("kind 应为 twopath 或 chronic", 400)
    rows = catalogue.items("drugs" if kind == TWOPATH else "diseases", True)
    return jsonify({"ok": True, "items": [{"code": i.code, "name": i.name} for i in rows]})


@api_bp.post("/applications")
@needs(Role.OPERATOR)
def applications():
    from plugins.twopath.views import institution_choice

    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return _error("请求体应为 JSON 对象", 400)
    kind = body.get("kind", TWOPATH)
    if kind not in KIND_LABELS:
        return _error("kind 应为 twopath 或 chronic", 400)
    certno = str(body.get("certno") or "").strip()
    try:
        opter, opter_name, opter_type = client.operator_of(g.user)
        names = {i.code: i.name for i in catalogue.items("drugs" if kind == TWOPATH else "diseases", True)}
        if body.get("item_code") not in names:
            raise filings.FilingError("药品/病种不在目录中")
        chosen = institution_choice(str(body["institution_code"])) if body.get("institution_code") else None
        if kind == TWOPATH and chosen is None:
            raise filings.FilingError("请从机构列表选择定点医药机构（institution_code）")
        person = filings.lookup_person("02", certno, actor=g.user.username, opter=opter, opter_name=opter_name,
                                       opter_type=opter_type)
    except (filings.FilingError, client.NoOperator) as exc:
        return _error(str(exc), 400)
    values = {k: str(body.get(k) or "") for k in ("begndate", "enddate", "tel", "addr", "cond_abst", "card_no")}
    values.update({k: v for k, v in person.items() if v and k != "upload_id"})
    values.update(item_code=body["item_code"], item_name=names[body["item_code"]],
                  appy_date=f"{clock.local_now():%Y-%m-%d}", hosp_ide_date=values.get("begndate", ""))
    if chosen is not None:
        values["twopathfixmedins"] = chosen
    try:
        filing = filings.create_filing(kind, values, actor=f"api:{g.user.username}")
    except filings.FilingError as exc:
        return _error(str(exc), 400)
    return jsonify({"ok": True, "filing": _filing_json(filing)}), 201


@api_bp.get("/reviews")
@needs(Role.OPERATOR, doctor=True)
def reviews():
    rows = db.session.execute(sa.select(Filing).filter_by(status=FilingStatus.DRAFT).order_by(Filing.id.desc())
                              .limit(100)).scalars()
    return jsonify({"ok": True, "filings": [_filing_json(f) for f in rows]})


@api_bp.get("/reviews/<int:filing_id>")
@needs(Role.OPERATOR, doctor=True)
def review(filing_id: int):
    filing = db.session.get(Filing, filing_id)
    if filing is None:
        return _error("没有该申请单", 404)
    return jsonify({"ok": True, "filing": _filing_json(filing)})


@api_bp.post("/reviews/<int:filing_id>/approve")
@needs(Role.OPERATOR, doctor=True)
def approve(filing_id: int):
    filing = db.session.get(Filing, filing_id)
    if filing is None:
        return _error("没有该申请单", 404)
    try:
        filings.approve_as(filing, g.user)
    except filings.FilingError as exc:
        return _error(str(exc), 400)
    return jsonify({"ok": True, "filing": _filing_json(filing), "sheet": bool(filing.sheet)})
