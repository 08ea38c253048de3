"""Filings as the hospital keeps them: create/edit, the doctor's approval, submit, revoke, the
platform's answers (upload_finished) and status synchronisation (5311 / 5301)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from core import clock, ledger
from core.db import db
from core.errors import BaosongError
from core.hook_types import Outcome, Settings, UploadContext, UploadPlan
from core.plugins import registry
from plugins.twopath import client, protocol
from plugins.twopath.models import CHRONIC, KIND_INTERFACES, TWOPATH, Filing, FilingEvent, FilingStatus

S = FilingStatus

# Form fields per kind: the interface's data fields a person fills in (the doctor's fields are set at
# approval, the item from the catalogue, appy_type is fixed).
_TWOPATH_SKIP = {"appy_type", "atddr_no", "dr_name", "atddr_no1", "dr_name1", "appy_lmt", "twopathdruglist",
                 "twopathfixmedins"}
_CHRONIC_SKIP = {"diag_dr_codg", "diag_dr_name", "opsp_dise_code", "opsp_dise_name"}


class FilingError(BaosongError):
    """A filing operation is not allowed in its current state (message for the admin)."""


def form_fields(kind: str) -> list[Any]:
    if kind == TWOPATH:
        return [f for f in protocol.schema("2511").fields if f.name not in _TWOPATH_SKIP]
    return [f for f in protocol.schema("2503").fields if f.name not in _CHRONIC_SKIP]


def _today() -> str:
    return f"{clock.local_now():%Y-%m-%d}"


def _event(filing: Filing, to: str | None, *, actor: str, source: str, note: str = "",
           upload_id: int | None = None) -> None:
    filing.events.append(FilingEvent(actor=actor, source=source, from_status=filing.status, to_status=to,
                                     note=note, upload_id=upload_id))
    if to is not None:
        filing.status = to


# --- create / edit / approve ----------------------------------------------------------------------

def create_filing(kind: str, values: dict[str, Any], *, actor: str, settings: Settings | None = None) -> Filing:
    if kind not in KIND_INTERFACES:
        raise FilingError(f"未知的备案类别 {kind}")
    filing = Filing(kind=kind, status=S.DRAFT, created_by=actor, data={})
    _apply_values(filing, values, settings or client._settings())
    db.session.add(filing)
    _event(filing, S.DRAFT, actor=actor, source="user", note="新建申请单")
    db.session.commit()
    return filing


def update_filing(filing: Filing, values: dict[str, Any], *, actor: str) -> None:
    if filing.status not in S.EDITABLE:
        raise FilingError(f"状态为「{filing.status_label}」的申请单不能修改")
    _apply_values(filing, values, client._settings())
    # The sheet shows what the doctor approved: an edit voids it until a doctor approves again.
    filing.sheet, filing.sheet_generated_at = None, None
    note = "修改申请单" + ("（需医生重新审核）" if filing.status != S.DRAFT else "")
    _event(filing, S.DRAFT, actor=actor, source="user", note=note)
    db.session.commit()


def _apply_values(filing: Filing, values: dict[str, Any], settings: Settings) -> None:
    data = dict(filing.data or {})
    for spec in form_fields(filing.kind):
        if spec.name in values:
            data[spec.name] = str(values[spec.name] or "").strip()
    if filing.kind == TWOPATH:
        fixmedins = values.get("twopathfixmedins") or data.get("twopathfixmedins") or [{
            "fixmedins_code": settings.get("fixmedins_code"), "fixmedins_name": settings.get("fixmedins_name"),
            "poolarea_no": settings.get("poolarea_no") or settings.get("mdtrtarea_admvs"),
        }]
        data["twopathfixmedins"] = fixmedins
    else:
        data.setdefault("ide_fixmedins_no", settings.get("fixmedins_code"))
        data.setdefault("ide_fixmedins_name", settings.get("fixmedins_name"))
        data.setdefault("insu_optins", values.get("insuplc_admdvs") or "")
    filing.data = data
    for column in ("psn_no", "psn_name", "certno", "begndate", "enddate"):
        # 2503 has no name or ID number field: the list and search still need them (from the form/HIS)
        value = data.get(column) or values.get(column) or getattr(filing, column)
        setattr(filing, column, str(value or "").strip())
    for column in ("card_no", "insuplc_admdvs", "item_code", "item_name"):
        if column in values:
            setattr(filing, column, str(values[column] or "").strip())
    filing.appy_date = data.get("appy_date") or values.get("appy_date") or filing.appy_date or _today()
    if filing.kind == CHRONIC and not data.get("insu_optins"):
        data["insu_optins"] = filing.insuplc_admdvs


def doctor_approve(filing: Filing, doctor_code: str, doctor_name: str, *, actor: str,
                   his_code: str = "") -> None:
    """The diagnosing doctor's approval: the interfaces need the doctor (atddr_no / diag_dr_codg).

    From the admin and the API the doctor is the signed-in user holding the doctor permission
    (``approve_as``); their identity comes from the account, never from a form. The approved filing's
    application sheet is generated and kept with it (6.5)."""
    if filing.status != S.DRAFT:
        raise FilingError(f"只有草稿可以审核（当前：{filing.status_label}）")
    doctor_code, doctor_name = doctor_code.strip(), doctor_name.strip()
    if not doctor_code or not doctor_name:
        raise FilingError("医生审核需要医师编码与姓名")
    filing.doctor_code, filing.doctor_name, filing.doctor_his_code = doctor_code, doctor_name, his_code
    filing.doctor_approved_by, filing.doctor_approved_at = actor, clock.utc_naive(clock.now())
    problems = protocol.validate_input(filing.interfaces[0], protocol.build_input(filing.interfaces[0],
                                                                                  _input_values(filing)))
    if problems:
        db.session.rollback()
        raise FilingError("申请单不完整：" + "；".join(str(p) for p in problems[:10]))
    _event(filing, S.DOCTOR_APPROVED, actor=actor, source="user", note=f"医生 {doctor_name} 审核通过")
    generate_sheet(filing)
    db.session.commit()


def approve_as(filing: Filing, user: Any) -> None:
    """Approval by a Baosong user: only a user an admin granted the doctor permission (6.7) may approve,
    and the approval carries that doctor's HIS 工号, national doctor code and name."""
    if not getattr(user, "doctor_code", ""):
        raise FilingError("只有开通了医生权限的用户可以审核申请单（请管理员在「医生权限」页面开通）")
    doctor_code = user.doctor_insu_code or user.doctor_code
    doctor_approve(filing, doctor_code, user.doctor_name, actor=user.username, his_code=user.doctor_code)


def generate_sheet(filing: Filing) -> None:
    from plugins.twopath import sheet

    filing.sheet = sheet.build(filing)
    filing.sheet_generated_at = clock.utc_naive(clock.now())


def _input_values(filing: Filing) -> dict[str, Any]:
    """The flat input values of the filing interface (2511 / 2503)."""
    data = {k: v for k, v in (filing.data or {}).items()}
    if filing.kind == TWOPATH:
        data.update(appy_type="32", atddr_no=filing.doctor_code, dr_name=filing.doctor_name,
                    twopathdruglist=[{"med_list_codg": filing.item_code, "med_list_name": filing.item_name}],
                    twopathfixmedins=data.get("twopathfixmedins") or [])
        data.pop("appy_lmt", None)
    else:
        data.update(opsp_dise_code=filing.item_code, opsp_dise_name=filing.item_name,
                    diag_dr_codg=filing.doctor_code, diag_dr_name=filing.doctor_name)
    return data


# --- submit / revoke: plans in the ledger -----------------------------------------------------------

def _search_keys(filing: Filing) -> list[str]:
    return [k for k in (filing.certno, filing.card_no, filing.psn_no, filing.appy_no, f"filing-{filing.id}") if k]


def _enqueue(upload_id: int) -> None:
    from core.queue import enqueue_upload

    enqueue_upload(upload_id, 0)


def submit(filing: Filing, *, actor: str, opter: str | None = None, opter_name: str | None = None,
           enqueue: bool = True, opter_type: str = "") -> int:
    """Plan the filing interface (2511 / 2503) for this filing and queue it."""
    earlier = _last_upload(filing)
    resubmit_after_loss = filing.status == S.SUBMITTING and earlier is not None and earlier.status in (
        "failed", "cancelled")
    if filing.status != S.DOCTOR_APPROVED and not resubmit_after_loss:
        raise FilingError(f"只有医生已审核的申请单可以提交（当前：{filing.status_label}）")
    infno = filing.interfaces[0]
    settings = client._settings()
    filing.submissions += 1
    row = {
        "filing_id": filing.id,
        "opter": (opter or settings.get("default_opter"))[:30],
        "opter_name": (opter_name or opter or settings.get("default_opter_name"))[:50],
        "opter_type": opter_type,
        "insuplc_admdvs": filing.insuplc_admdvs,
        "input": protocol.build_input(infno, _input_values(filing)),
        # An earlier send of this filing may have reached the platform: query first, then decide.
        "query_first": bool(earlier is not None and earlier.delivery_uncertain),
    }
    plan = UploadPlan(business_key=f"filing-{filing.id}-submit-{filing.submissions}", period=filing.appy_date,
                      rows=[row], search_keys=_search_keys(filing))
    upload_id = ledger.record_plans(registry().report_type(f"twopath.{infno}"), [plan], actor=actor)[0]
    filing.last_upload_id = upload_id
    filing.submitted_at = clock.utc_naive(clock.now())
    _event(filing, S.SUBMITTING, actor=actor, source="user", note=f"提交【{infno}】", upload_id=upload_id)
    db.session.commit()
    if enqueue:
        _enqueue(upload_id)
    return upload_id


def revoke(filing: Filing, *, actor: str, reason: str = "", opter: str | None = None,
           opter_name: str | None = None, enqueue: bool = True, opter_type: str = "") -> int:
    """Plan the revoke interface (2512 / 2504): only an unreviewed filing can be revoked."""
    if filing.status != S.PENDING_REVIEW:
        raise FilingError(f"只能撤销待医保审核的备案（当前：{filing.status_label}）")
    if not filing.appy_no:
        raise FilingError("没有申请号（平台未返回），无法撤销：请先同步状态")
    infno = filing.interfaces[2]
    settings = client._settings()
    if infno == "2512":
        values: dict[str, Any] = {"two_path_reg_sn_list": [filing.appy_no]}
    else:
        values = {"psn_no": filing.psn_no, "trt_dcla_detl_sn": filing.appy_no, "memo": reason}
    filing.revocations += 1
    row = {
        "filing_id": filing.id,
        "opter": (opter or settings.get("default_opter"))[:30],
        "opter_name": (opter_name or opter or settings.get("default_opter_name"))[:50],
        "opter_type": opter_type,
        "insuplc_admdvs": filing.insuplc_admdvs,
        "input": protocol.build_input(infno, values),
        "previous_status": filing.status,
    }
    plan = UploadPlan(business_key=f"filing-{filing.id}-revoke-{filing.revocations}", period=filing.appy_date,
                      rows=[row], search_keys=_search_keys(filing))
    upload_id = ledger.record_plans(registry().report_type(f"twopath.{infno}"), [plan], actor=actor)[0]
    filing.last_upload_id = upload_id
    _event(filing, S.REVOKING, actor=actor, source="user", note=f"撤销【{infno}】{reason}", upload_id=upload_id)
    db.session.commit()
    if enqueue:
        _enqueue(upload_id)
    return upload_id


def _last_upload(filing: Filing):
    from core.models import Upload

    return db.session.get(Upload, filing.last_upload_id) if filing.last_upload_id else None


# --- person lookup (1101) -------------------------------------------------------------------------

CERT_TYPES = {"02": "居民身份证", "03": "社会保障卡", "01": "电子凭证"}


def lookup_person(cert_type: str, number: str, *, card_sn: str = "", actor: str,
                  opter: str | None = None, opter_name: str | None = None, opter_type: str = "") -> dict[str, Any]:
    """1101 from the form: the person's psn_no, insuplc_admdvs... Raises FilingError with the answer."""
    if cert_type not in CERT_TYPES or not number.strip():
        raise FilingError("请选择凭证类型并输入号码")
    settings = client._settings()
    data = {"mdtrt_cert_type": cert_type, "mdtrt_cert_no": number.strip(), "card_sn": card_sn.strip(),
            "psn_cert_type": "01" if cert_type == "02" else "", "certno": number.strip() if cert_type == "02" else "",
            "psn_name": ""}
    row = {"opter": (opter or settings.get("default_opter"))[:30],
           "opter_name": (opter_name or opter or settings.get("default_opter_name"))[:50],
           "opter_type": opter_type, "insuplc_admdvs": "", "input": protocol.build_input("1101", data)}
    upload = client.find_person(row, actor)
    if upload.status != "succeeded" or not (upload.result or {}).get("psn_no"):
        raise FilingError(f"人员信息获取失败：{upload.last_message or upload.status_label}")
    person = dict(upload.result)
    if cert_type == "03":
        person["card_no"] = number.strip()
    person["upload_id"] = upload.id
    return person


# --- the platform's answers ---------------------------------------------------------------------------

def on_upload_finished(upload: UploadContext, outcome: Outcome) -> None:
    infno = client.interface_of(upload)
    row = upload.rows[0]
    if infno == "9001":
        if outcome.kind == "success" and outcome.result.get("sign_no"):
            client.store_sign_in(row["opter"], outcome.result["sign_no"], outcome.result.get("sign_time", ""),
                                 upload.id)
        return
    if infno == "9002":
        if outcome.kind == "success":
            client.invalidate_sign_in(row["opter"])
        return
    if infno in ("5311", "5301"):
        if outcome.kind == "success":
            apply_query(infno, row, outcome.result.get("query_rows", []), upload.id, upload.settings)
        return
    filing = db.session.get(Filing, row.get("filing_id")) if row.get("filing_id") else None
    if filing is None:
        return
    if infno in ("2511", "2503"):
        if outcome.kind == "success":
            filing.appy_no = outcome.result.get("appno") or filing.appy_no
            filing.message = outcome.message
            _event(filing, S.PENDING_REVIEW, actor="platform", source="platform", note=outcome.message,
                   upload_id=upload.id)
            platform_status = outcome.result.get("platform_status")
            if platform_status:
                _apply_status(filing, platform_status, upload.settings, upload.id, source="platform")
        else:
            filing.message = outcome.message
            _event(filing, S.SUBMIT_REJECTED, actor="platform", source="platform",
                   note=f"提交被拒：{outcome.message}", upload_id=upload.id)
    elif infno in ("2512", "2504"):
        if outcome.kind == "success":
            filing.message = "已撤销"
            _event(filing, S.REVOKED, actor="platform", source="platform", note="平台已撤销", upload_id=upload.id)
        else:
            filing.message = f"撤销被拒：{outcome.message}"
            _event(filing, row.get("previous_status") or S.PENDING_REVIEW, actor="platform", source="platform",
                   note=filing.message, upload_id=upload.id)
    db.session.commit()


def _status_for(code: str, settings: Settings) -> str | None:
    def values(key: str) -> set[str]:
        return {v.strip() for v in settings.get(key).split(",") if v.strip()}

    if code in values("status_approved_values"):
        return S.APPROVED
    if code in values("status_rejected_values"):
        return S.REJECTED
    if code in values("status_pending_values"):
        return S.PENDING_REVIEW
    return None


def _apply_status(filing: Filing, code: str, settings: Settings, upload_id: int, *, source: str) -> bool:
    """Move a submitted filing to what the platform's status code means; True when it changed."""
    target = _status_for(code, settings)
    filing.platform_status = code
    if target is None or target == filing.status:
        return False
    if filing.status not in (S.PENDING_REVIEW, S.APPROVED, S.REJECTED):
        return False  # drafts, revoked...: the platform's view does not move them
    _event(filing, target, actor="platform", source=source, note=f"平台审核状态 {code}", upload_id=upload_id)
    return True


def match_query_rows(infno: str, row: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The query row that is this filing: by application number when known, else by item and dates.
    Numbers already held by another of our filings are not this one (a refiling after a rejection)."""
    flat = client._flat_values(infno, row["input"])
    if infno == "2511":
        codes = {d.get("med_list_codg") for d in flat.get("twopathdruglist") or []}
    else:
        codes = {flat.get("opsp_dise_code")}
    taken = {n for (n,) in db.session.execute(
        sa.select(Filing.appy_no).where(Filing.appy_no != "", Filing.id != row.get("filing_id"))
    )}
    for candidate in rows:
        if candidate.get("appno") and candidate["appno"] in taken:
            continue
        if codes & set(candidate.get("codes") or []) and candidate.get("begndate") == flat.get("begndate") \
                and candidate.get("enddate", "") in ("", flat.get("enddate", "")):
            return candidate
    return None


def query_row_for(infno: str, row: dict[str, Any]) -> dict[str, Any]:
    """The 5311 / 5301 row asking about the filing a 2511 / 2503 row carries."""
    flat = client._flat_values(infno, row["input"])
    if infno == "2511":
        query = protocol.build_input("5311", {"psn_no": flat["psn_no"], "begndate": flat["begndate"],
                                              "enddate": flat["enddate"]})
    else:
        query = protocol.build_input("5301", {"psn_no": flat["psn_no"]})
    return {"opter": row.get("opter"), "opter_name": row.get("opter_name"), "opter_type": row.get("opter_type", ""),
            "insuplc_admdvs": row.get("insuplc_admdvs"), "input": query}


def apply_query(infno: str, row: dict[str, Any], rows: list[dict[str, Any]], upload_id: int,
                settings: Settings) -> int:
    """Update the filings a query asked about; returns how many changed status."""
    kind = TWOPATH if infno == "5311" else CHRONIC
    ids = row.get("filing_ids")
    query = sa.select(Filing).where(Filing.kind == kind)
    if ids:
        query = query.where(Filing.id.in_(ids))
    else:
        psn_no = (row["input"].get("data") or {}).get("psn_no")
        query = query.where(Filing.psn_no == psn_no, Filing.status.in_((S.PENDING_REVIEW, S.APPROVED, S.REJECTED)))
    changed = 0
    for filing in db.session.execute(query).scalars():
        apply_infno = filing.interfaces[0]
        filing_row = {"filing_id": filing.id, "input": protocol.build_input(apply_infno, _input_values(filing))}
        candidates = [r for r in rows if filing.appy_no and r.get("appno") == filing.appy_no] \
            or ([m] if (m := match_query_rows(apply_infno, filing_row, rows)) else [])
        if not candidates:
            continue
        found = candidates[0]
        if found.get("appno") and not filing.appy_no:
            filing.appy_no = found["appno"]
        if found.get("status") and _apply_status(filing, found["status"], settings, upload_id, source="sync"):
            changed += 1
    db.session.commit()
    return changed


# --- status synchronisation (twopath.sync) --------------------------------------------------------------

def plan_sync(slot: datetime, settings: Settings) -> list[UploadPlan]:
    """One query per person and kind for every filing awaiting the platform's review."""
    awaiting = db.session.execute(
        sa.select(Filing).where(Filing.status.in_(S.AWAITING_PLATFORM)).order_by(Filing.id)
    ).scalars().all()
    groups: dict[tuple[str, str, str], list[Filing]] = {}
    for filing in awaiting:
        groups.setdefault((filing.kind, filing.psn_no, filing.insuplc_admdvs), []).append(filing)
    plans = []
    stamp = f"{slot:%Y%m%d%H%M}"
    for (kind, psn_no, admdvs), members in groups.items():
        infno = KIND_INTERFACES[kind][1]
        if infno == "5311":
            values = {"psn_no": psn_no, "begndate": min(f.begndate for f in members),
                      "enddate": max(f.enddate for f in members)}
        else:
            values = {"psn_no": psn_no}
        row = {"infno": infno, "opter": settings.get("default_opter"), "opter_name": settings.get("default_opter_name"),
               "insuplc_admdvs": admdvs, "filing_ids": [f.id for f in members],
               "input": protocol.build_input(infno, values)}
        keys = [k for f in members for k in (f.appy_no, f.certno, f.card_no, f"filing-{f.id}") if k]
        plans.append(UploadPlan(business_key=f"sync-{stamp}-{infno}-f{members[0].id}",
                                period=f"{slot:%Y-%m-%d %H:%M}", rows=[row], search_keys=keys))
    return plans


def sync_changes(upload_ids: list[int]) -> dict[int, int]:
    """Status changes each sync upload caused (events recorded with source 'sync')."""
    if not upload_ids:
        return {}
    return dict(db.session.execute(
        sa.select(FilingEvent.upload_id, sa.func.count()).where(
            FilingEvent.upload_id.in_(upload_ids), FilingEvent.source == "sync").group_by(FilingEvent.upload_id)
    ).all())


# --- 5205 medication records (review) and 1309 catalogue download ------------------------------------

def medication_records(filing: Filing, *, actor: str, opter: str, opter_name: str, opter_type: str = "",
                       days: int | None = None) -> tuple[list[dict[str, Any]], int]:
    """The person's chronic/special-disease medication records the platform holds (5205), for the doctor's
    review: the last ``medication_days`` days. Returns (records, upload id)."""
    if not filing.psn_no:
        raise FilingError("申请单没有人员编号（先【1101】取得），无法查询用药记录")
    settings = client._settings()
    days = days or int(settings.get("medication_days", "180") or 180)
    end = clock.local_now()
    values = {"psn_no": filing.psn_no, "begntime": f"{end - timedelta(days=days):%Y-%m-%d} 00:00:00",
              "endtime": f"{end:%Y-%m-%d %H:%M:%S}"}
    row = {"filing_id": filing.id, "opter": opter, "opter_name": opter_name, "opter_type": opter_type,
           "insuplc_admdvs": filing.insuplc_admdvs, "input": protocol.build_input("5205", values)}
    upload = client.call_now("twopath.5205", row, label=f"用药记录 filing-{filing.id}", actor=actor,
                             search_keys=_search_keys(filing))
    if upload.status != "succeeded":
        raise FilingError(f"用药记录查询【5205】失败：{upload.last_message or upload.status_label}")
    return list((upload.result or {}).get("records") or []), upload.id


def download_disease_catalogue(ver: str, *, actor: str, opter: str, opter_name: str, opter_type: str = ""):
    """1309 from the version the hospital has ("0": everything); the rows stay in the upload's result
    until someone applies them after the preview."""
    row = {"opter": opter, "opter_name": opter_name, "opter_type": opter_type, "insuplc_admdvs": "",
           "input": protocol.build_input("1309", {"ver": (ver or "0").strip()[:20]})}
    return client.call_now("twopath.1309", row, label="门诊慢特病种目录下载", actor=actor)
