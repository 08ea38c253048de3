"""Admin pages of the twopath plugin (blueprint ``bp``, url_prefix ``/twopath``): filings (form,
1101 lookup, HIS import, the doctor's review and approval, the application sheet, submit, revoke),
status sync, sign-in/out, catalogues with Excel import/export and the 1309 download, doctor
permissions, the log search and statistics. The JSON API for a mini-program is ``api.py`` (nested).

Every call to the platform carries the signed-in user's own operator identity (``User.opter`` ...);
a user without an operator code is told so and nothing is sent.

Registered through the plugin's hooks (plugin.py): ``register_blueprints`` -> ``PAGES`` (``bp`` and its
navigation entry), ``upload_actions`` -> ``upload_actions`` (links to the filing, revoke).

Sessions, CSRF and "viewers may not POST" come from ``web.auth``'s before_request guard; the
state-changing routes here also carry ``require_role(Role.OPERATOR)``. Full patient identifiers are
shown only to roles allowed by ``web.permissions`` (default admin); other roles get masked values in
pages and forms, with a sealed copy for the form's round trip (``web.security``).
"""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa
from flask import Blueprint, abort, flash, redirect, render_template, request, send_file, url_for
from werkzeug.routing import BuildError

from core import clock
from core.db import db
from core.hook_types import AdminPages, NavEntry, UploadAction
from core.masking import mask_field
from core.models import Upload
from core.plugins import registry
from plugins.twopath import catalogue, client, filings, reports
from plugins.twopath import sheet as application_sheet
from plugins.twopath.models import CHRONIC, KIND_LABELS, TWOPATH, Filing, FilingStatus, Institution, SignIn
from web import audit
from web.auth import can, current_user, require_role
from web.helpers import sees_patient_identifiers
from web.models import Role, User
from web.security import SEALED_FIELD, mask_values, restore_values

bp = Blueprint("twopath", __name__, url_prefix="/twopath", template_folder="templates", static_folder="static")

PAGES = AdminPages(bp, nav=(NavEntry("双通道/慢特病", "twopath.index"),))

IDENTIFYING = ("psn_name", "certno", "card_no", "tel", "addr", "agnter_name", "agnter_certno", "agnter_tel",
               "agnter_addr")


def _actor() -> str:
    user = current_user()
    return user.username if user is not None else "anonymous"


def _operator() -> tuple[str, str, str]:
    """The envelope's opter / opter_name / opter_type: the signed-in user's insurance identity.
    Raises client.NoOperator (the user is told to ask an admin) when the account has none."""
    return client.operator_of(current_user())


def _his(infno: str, name: str, **params) -> list[dict]:
    from core.scheduler import hospital_data

    return hospital_data().query(registry().report_type(f"twopath.{infno}"), name, **params)


@bp.context_processor
def _helpers() -> dict:
    def shown(field: str, value):
        """Identifiers in full for the roles allowed to see them, masked for everyone else."""
        if value in (None, "") or sees_patient_identifiers():
            return value
        return mask_field(field, value)

    def upload_url(upload_id: int) -> str | None:
        try:
            return url_for("uploads.detail", upload_id=upload_id)
        except BuildError:
            return None

    user = current_user()
    return {"shown": shown, "upload_url": upload_url, "S": FilingStatus, "KIND_LABELS": KIND_LABELS,
            "can_write": can(Role.OPERATOR), "is_doctor": bool(user is not None and user.is_doctor)}


def upload_actions(upload: Upload) -> list[UploadAction]:
    """On an upload's detail page: the filing it belongs to, the sync page for status queries, and
    revoking (2512/2504) the filing a submission created, while the platform has not reviewed it."""
    row = (upload.rows or [{}])[0] if isinstance(upload.rows, list) and upload.rows else {}
    actions = []
    filing_id = row.get("filing_id") if isinstance(row, dict) else None
    if filing_id:
        actions.append(UploadAction("filing", "查看申请单", url=url_for("twopath.detail", filing_id=filing_id)))
    for other in (row.get("filing_ids") or [] if isinstance(row, dict) else []):
        actions.append(UploadAction(f"filing-{other}", f"申请单 {other}",
                                    url=url_for("twopath.detail", filing_id=other)))
    if upload.report_type == client.SYNC:
        actions.append(UploadAction("sync", "状态同步", url=url_for("twopath.sync")))
    filing = db.session.get(Filing, filing_id) if filing_id else None
    if filing is not None and filing.last_upload_id == upload.id and "-submit-" in upload.business_key:
        unavailable = "" if filing.status == FilingStatus.PENDING_REVIEW else \
            f"只能撤销待医保审核的备案（当前：{filing.status_label}）"
        actions.append(UploadAction("revoke", "撤销备案", handler=_revoke_from_upload, unavailable=unavailable,
                                    confirm="向医保平台提交撤销该备案？", done="已提交撤销"))
    return actions


def _revoke_from_upload(upload_id: int, actor: str) -> int:
    """撤销备案 from the upload's detail page, with the signed-in user's own operator identity (as on the
    filing's page); a user without an operator code is refused (client.NoOperator) and nothing is sent."""
    upload = db.session.get(Upload, upload_id)
    filing = _filing(upload.rows[0]["filing_id"])
    opter, opter_name, opter_type = _operator()
    try:
        return filings.revoke(filing, actor=actor, reason="在上报详情中撤销", opter=opter, opter_name=opter_name,
                              opter_type=opter_type)
    except filings.FilingError as exc:
        raise ValueError(str(exc)) from None


def _filing(filing_id: int) -> Filing:
    filing = db.session.get(Filing, filing_id)
    if filing is None:
        abort(404)
    return filing


# --- filings -------------------------------------------------------------------------------------------

@bp.get("/")
def index():
    kind, status = request.args.get("kind", ""), request.args.get("status", "")
    query = sa.select(Filing).order_by(Filing.id.desc()).limit(300)
    if kind:
        query = query.where(Filing.kind == kind)
    if status:
        query = query.where(Filing.status == status)
    counts = dict(db.session.execute(sa.select(Filing.status, sa.func.count()).group_by(Filing.status)).all())
    return render_template("twopath/index.html", filings=db.session.execute(query).scalars().all(),
                           kind=kind, status=status, counts=counts)


def institution_choice(code: str | None) -> list[dict] | None:
    """twopathfixmedins for an institution chosen from the list (5.4); "" is the hospital itself (its
    settings), None when the form did not ask."""
    if code is None:
        return None
    if not code:
        settings = client._settings()
        return [{"fixmedins_code": settings.get("fixmedins_code"), "fixmedins_name": settings.get("fixmedins_name"),
                 "poolarea_no": settings.get("poolarea_no") or settings.get("mdtrtarea_admvs")}]
    item = db.session.execute(sa.select(Institution).filter_by(code=code, enabled=True)).scalar_one_or_none()
    if item is None:
        raise filings.FilingError("所选定点医药机构不在机构目录中")
    return [{"fixmedins_code": item.code, "fixmedins_name": item.name, "poolarea_no": item.poolarea_no}]


def _form_values() -> dict:
    values = restore_values({k: v for k, v in request.form.items() if k != "csrf_token"},
                            request.form.getlist(SEALED_FIELD))
    chosen = institution_choice(values.pop("institution_code", None))
    if chosen is not None and values.get("kind", TWOPATH) == TWOPATH:
        values["twopathfixmedins"] = chosen
    item = values.get("item_code", "")
    kind_catalogue = "drugs" if values.get("kind", TWOPATH) == TWOPATH else "diseases"
    names = {i.code: i.name for i in catalogue.items(kind_catalogue)}
    if item in names:
        values["item_name"] = names[item]
    return values


@bp.route("/filings/new", methods=["GET", "POST"])
@require_role(Role.OPERATOR)
def new_filing():
    kind = request.values.get("kind", TWOPATH)
    if kind not in KIND_LABELS:
        abort(400)
    if request.method == "POST":
        try:
            filing = filings.create_filing(kind, _form_values(), actor=_actor())
        except filings.FilingError as exc:
            flash(str(exc), "error")
        else:
            flash("申请单已保存为草稿", "ok")
            return redirect(url_for("twopath.detail", filing_id=filing.id))
    return _form(kind, None, {k: v for k, v in request.form.items() if k != "csrf_token"})


@bp.route("/filings/<int:filing_id>/edit", methods=["GET", "POST"])
@require_role(Role.OPERATOR)
def edit(filing_id: int):
    filing = _filing(filing_id)
    if request.method == "POST":
        try:
            filings.update_filing(filing, _form_values(), actor=_actor())
        except filings.FilingError as exc:
            flash(str(exc), "error")
        else:
            return redirect(url_for("twopath.detail", filing_id=filing.id))
    values = {"psn_name": filing.psn_name, "certno": filing.certno, **(filing.data or {}), "card_no": filing.card_no,
              "insuplc_admdvs": filing.insuplc_admdvs, "item_code": filing.item_code, "appy_date": filing.appy_date}
    return _form(filing.kind, filing, values)


def _form(kind: str, filing: Filing | None, values: dict):
    kind_catalogue = "drugs" if kind == TWOPATH else "diseases"
    chosen = ((values.get("twopathfixmedins") or [{}])[0] or {}).get("fixmedins_code", "") \
        if isinstance(values.get("twopathfixmedins"), list) else ""
    action = url_for("twopath.edit", filing_id=filing.id) if filing else url_for("twopath.new_filing", kind=kind)
    sealed = ""
    if not sees_patient_identifiers():
        values, sealed = mask_values(values, IDENTIFYING)
    return render_template("twopath/form.html", kind=kind, filing=filing, values=values, action=action, sealed=sealed,
                           fields=filings.form_fields(kind), items=catalogue.items(kind_catalogue, True),
                           institutions=catalogue.items("institutions", True),
                           chosen_institution=values.get("institution_code") or chosen,
                           cert_types=filings.CERT_TYPES)


@bp.post("/lookup")
@require_role(Role.OPERATOR)
def lookup():
    """1101 from the form (HTMX): fills the person fields."""
    try:
        opter, opter_name, opter_type = _operator()
        person = filings.lookup_person(request.form.get("cert_type", "02"), request.form.get("number", ""),
                                       card_sn=request.form.get("card_sn", ""), actor=_actor(), opter=opter,
                                       opter_name=opter_name, opter_type=opter_type)
    except (filings.FilingError, client.NoOperator) as exc:
        return render_template("twopath/_person.html", error=str(exc), person=None)
    sealed = ""
    if not sees_patient_identifiers():
        person, sealed = mask_values(person, IDENTIFYING)
    return render_template("twopath/_person.html", person=person, error=None, sealed=sealed)


@bp.post("/import-his")
@require_role(Role.OPERATOR)
def import_his():
    """从 HIS 导入: the whole form is posted here (its 从 HIS 导入 button), the patient found by ID number
    (configurable SQL ``twopath.<infno>:patient``) fills the empty fields, 1101 the person number;
    what was typed stays. The form posts on to 保存草稿 (new_filing), not back here."""
    kind = request.form.get("kind", TWOPATH)
    if kind not in KIND_LABELS:
        abort(400)
    typed = {k: v for k, v in request.form.items() if k != "csrf_token"}
    certno = (request.form.get("his_certno") or request.form.get("certno") or "").strip()
    if not certno:
        flash("请输入要从 HIS 导入的身份证号", "error")
        return _form(kind, None, typed)
    try:
        rows = _his("2511" if kind == TWOPATH else "2503", "patient", certno=certno)
    except Exception as exc:  # the HIS connection, or the SQL the hospital configured
        flash(f"从 HIS 读取患者失败：{exc}", "error")
        return _form(kind, None, typed)
    if not rows:
        flash("HIS 中没有该证件号码的患者", "error")
        return _form(kind, None, typed)
    values = {k: ("" if v is None else str(v)) for k, v in rows[0].items()}
    try:
        opter, opter_name, opter_type = _operator()
        person = filings.lookup_person("02", certno, actor=_actor(), opter=opter, opter_name=opter_name,
                                       opter_type=opter_type)
        values.update({k: v for k, v in person.items() if v and k != "upload_id"})
    except (filings.FilingError, client.NoOperator) as exc:
        flash(f"{exc}（已导入 HIS 数据，人员编号需补充）", "warn")
    else:
        flash("已从 HIS 导入患者并取得医保人员编号【1101】：核对后保存草稿", "ok")
    values.update({k: v for k, v in typed.items() if v and k not in ("his_certno",)})
    return _form(kind, None, values)


@bp.get("/filings/<int:filing_id>")
def detail(filing_id: int):
    filing = _filing(filing_id)
    upload_ids = {e.upload_id for e in filing.events if e.upload_id}
    if filing.last_upload_id:
        upload_ids.add(filing.last_upload_id)
    uploads = db.session.execute(sa.select(Upload).where(Upload.id.in_(upload_ids)).order_by(Upload.id)) \
        .scalars().all() if upload_ids else []
    last = db.session.get(Upload, filing.last_upload_id) if filing.last_upload_id else None
    return render_template("twopath/detail.html", filing=filing, uploads=uploads, last=last,
                           identifying=IDENTIFYING)


@bp.get("/filings/<int:filing_id>/review")
def review(filing_id: int):
    """The doctor's review (5.1, 6.5): the application, the patient's HIS visits and, on request, the
    medication records the platform holds (5205). Laid out for a phone as well (the mini-program's
    doctor review until it calls the API)."""
    filing = _filing(filing_id)
    visits, visits_error = [], None
    if filing.certno:
        try:
            visits = _his(filing.interfaces[0], "visits", certno=filing.certno)
        except Exception as exc:  # no HIS, or the hospital's SQL
            visits_error = f"HIS 就诊记录读取失败：{exc}"
    return render_template("twopath/review.html", filing=filing, visits=visits, visits_error=visits_error)


@bp.post("/filings/<int:filing_id>/medication")
@require_role(Role.OPERATOR)
def medication(filing_id: int):
    """5205 for the filing's person (HTMX fragment on the review page)."""
    filing = _filing(filing_id)
    try:
        opter, opter_name, opter_type = _operator()
        records, upload_id = filings.medication_records(filing, actor=_actor(), opter=opter, opter_name=opter_name,
                                                        opter_type=opter_type)
    except (filings.FilingError, client.NoOperator) as exc:
        return render_template("twopath/_medication.html", error=str(exc), records=None, upload_id=None)
    return render_template("twopath/_medication.html", error=None, records=records, upload_id=upload_id)


@bp.post("/filings/<int:filing_id>/approve")
@require_role(Role.OPERATOR)
def approve(filing_id: int):
    filing = _filing(filing_id)
    try:
        filings.approve_as(filing, current_user())
    except filings.FilingError as exc:
        flash(str(exc), "error")
        return redirect(url_for("twopath.review", filing_id=filing_id))
    flash("医生审核完成，已生成申请表", "ok")
    return redirect(url_for("twopath.detail", filing_id=filing_id))


@bp.get("/filings/<int:filing_id>/sheet")
@require_role(Role.OPERATOR)
def sheet(filing_id: int):
    """The application sheet kept with the filing: identifiers in full for the roles that may see them
    (an unmasked view, audited), masked for anyone else."""
    import io

    filing = _filing(filing_id)
    if not filing.sheet:
        abort(404)
    full = sees_patient_identifiers()
    content = filing.sheet if full else application_sheet.masked(filing.sheet)
    audit.record("twopath.sheet", f"filing-{filing.id}", after={"患者信息": "完整" if full else "已脱敏"}, commit=True)
    return send_file(io.BytesIO(content), as_attachment=True, download_name=application_sheet.file_name(filing),
                     mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")


@bp.post("/filings/<int:filing_id>/submit")
@require_role(Role.OPERATOR)
def submit(filing_id: int):
    def action(f: Filing) -> None:
        opter, opter_name, opter_type = _operator()
        filings.submit(f, actor=_actor(), opter=opter, opter_name=opter_name, opter_type=opter_type)

    return _act(filing_id, action, "已提交，正在发送到医保平台")


@bp.post("/filings/<int:filing_id>/revoke")
@require_role(Role.OPERATOR)
def revoke(filing_id: int):
    def action(f: Filing) -> None:
        opter, opter_name, opter_type = _operator()
        filings.revoke(f, actor=_actor(), reason=request.form.get("reason", ""), opter=opter, opter_name=opter_name,
                       opter_type=opter_type)

    return _act(filing_id, action, "已提交撤销")


def _act(filing_id: int, action, done: str):
    filing = _filing(filing_id)
    try:
        action(filing)
    except (filings.FilingError, client.NoOperator) as exc:
        flash(str(exc), "error")
    else:
        flash(done, "ok")
    return redirect(url_for("twopath.detail", filing_id=filing_id))


@bp.post("/signin")
@require_role(Role.OPERATOR)
def signin():
    try:
        opter, opter_name, opter_type = _operator()
    except client.NoOperator as exc:
        flash(str(exc), "error")
        return redirect(url_for("twopath.index"))
    upload = client.sign_in(opter, opter_name, actor=_actor(), opter_type=opter_type)
    flash("签到成功" if upload.status == "succeeded" else f"签到失败：{upload.last_message}",
          "ok" if upload.status == "succeeded" else "error")
    return redirect(url_for("twopath.index"))


@bp.post("/signout")
@require_role(Role.OPERATOR)
def signout():
    try:
        opter, opter_name, opter_type = _operator()
    except client.NoOperator as exc:
        flash(str(exc), "error")
        return redirect(url_for("twopath.index"))
    upload = client.sign_out(opter, opter_name, actor=_actor(), opter_type=opter_type)
    if upload is None:
        flash("当前没有有效的签到号，无需签退", "ok")
    else:
        flash("签退成功【9002】" if upload.status == "succeeded" else f"签退失败：{upload.last_message}",
              "ok" if upload.status == "succeeded" else "error")
    return redirect(url_for("twopath.index"))


@bp.before_app_request
def _sign_out_on_logout():
    """9002 when a user leaves the admin (setting ``sign_out_on_logout``): runs before auth.logout clears
    the session; a failure never blocks the logout."""
    if request.endpoint != "auth.logout" or request.method != "POST":
        return
    user = current_user()
    if user is None or not user.opter:
        return
    try:
        if client._settings().get("sign_out_on_logout", "1") != "1":
            return
        client.sign_out(*client.operator_of(user)[:2], actor=user.username, opter_type=user.opter_type)
    except Exception:  # noqa: BLE001 - the platform being down must not keep anyone logged in
        db.session.rollback()


# --- status sync ---------------------------------------------------------------------------------------

@bp.get("/sync")
def sync():
    runs = client.uploads_of([client.SYNC], limit=100)
    changes = filings.sync_changes([u.id for u in runs])
    signins = db.session.execute(sa.select(SignIn).order_by(SignIn.obtained_at.desc())).scalars().all()
    settings = client._settings()
    from core.models import Task

    task = db.session.execute(sa.select(Task).filter_by(report_type=client.SYNC)).scalar_one_or_none()
    return render_template("twopath/sync.html", runs=runs, changes=changes, signins=signins,
                           status_field=settings.get("query_status_field"), task=task,
                           cron=task.cron if task else registry().report_type(client.SYNC).cron)


@bp.post("/sync/run")
@require_role(Role.OPERATOR)
def sync_run():
    from core.scheduler import run_now

    ids = run_now(client.SYNC)
    flash(f"已计划 {len(ids)} 个查询", "ok")
    return redirect(url_for("twopath.sync"))


# --- catalogues ----------------------------------------------------------------------------------------

@bp.get("/catalogue/<kind>")
def catalogue_page(kind: str):
    if kind not in catalogue.CATALOGUES:
        abort(404)
    return _catalogue_page(kind, None)


def _catalogue_page(kind: str, errors, preview=None, upload_id=None):
    extras = catalogue.EXTRA_COLUMNS.get(kind, [])
    return render_template("twopath/catalogue.html", kind=kind, title=catalogue.TITLES[kind],
                           items=catalogue.items(kind), headers=catalogue.CATALOGUES[kind][1:3], extras=extras,
                           errors=errors, preview=preview, upload_id=upload_id)


@bp.post("/catalogue/<kind>/import")
@require_role(Role.OPERATOR)
def catalogue_import(kind: str):
    if kind not in catalogue.CATALOGUES:
        abort(404)
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        flash("请选择 Excel 文件", "error")
        return redirect(url_for("twopath.catalogue_page", kind=kind))
    applied, errors = catalogue.import_workbook(kind, upload.read(catalogue.MAX_IMPORT_BYTES + 1))
    if errors:
        flash(f"导入失败：{len(errors)} 处错误，未导入任何数据", "error")
        return _catalogue_page(kind, errors), 422
    flash(f"已导入 {applied} 行", "ok")
    return redirect(url_for("twopath.catalogue_page", kind=kind))


@bp.get("/catalogue/<kind>/export")
def catalogue_export(kind: str):
    if kind not in catalogue.CATALOGUES:
        abort(404)
    import io

    return send_file(io.BytesIO(catalogue.export_workbook(kind)), as_attachment=True,
                     download_name=f"{catalogue.TITLES[kind]}-{date.today():%Y%m%d}.xlsx",
                     mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")


@bp.post("/catalogue/diseases/download")
@require_role(Role.OPERATOR)
def catalogue_download():
    """1309: download the platform's chronic-disease catalogue and show what applying it would change."""
    try:
        opter, opter_name, opter_type = _operator()
        upload = filings.download_disease_catalogue(request.form.get("ver", "0"), actor=_actor(), opter=opter,
                                                    opter_name=opter_name, opter_type=opter_type)
    except client.NoOperator as exc:
        flash(str(exc), "error")
        return redirect(url_for("twopath.catalogue_page", kind="diseases"))
    rows = (upload.result or {}).get("catalogue") or []
    if upload.status != "succeeded" or not rows:
        flash(f"目录下载【1309】未取得病种：{upload.last_message or upload.status_label}", "error")
        return redirect(url_for("twopath.catalogue_page", kind="diseases"))
    return _catalogue_page("diseases", None, preview=catalogue.diff_diseases(rows), upload_id=upload.id)


@bp.post("/catalogue/diseases/apply")
@require_role(Role.OPERATOR)
def catalogue_apply():
    """Apply a 1309 download previewed before (by its upload: what was shown is what is applied)."""
    upload = db.session.get(Upload, request.form.get("upload_id", type=int) or 0)
    if upload is None or upload.report_type != "twopath.1309" or upload.status != "succeeded":
        abort(404)
    diff = catalogue.apply_diseases((upload.result or {}).get("catalogue") or [])
    audit.record("twopath.catalogue_1309", f"upload-{upload.id}",
                 after={"added": len(diff.added), "renamed": len(diff.renamed), "disabled": len(diff.disabled)})
    db.session.commit()
    flash(f"已应用【1309】目录：新增 {len(diff.added)}，改名 {len(diff.renamed)}，停用 {len(diff.disabled)}", "ok")
    return redirect(url_for("twopath.catalogue_page", kind="diseases"))


# --- doctor permissions (6.7) ----------------------------------------------------------------------------

@bp.get("/doctors")
@require_role(Role.ADMIN)
def doctors():
    return _doctors_page()


def _doctors_page(**context):
    """The doctor-permission page: users, and each user's API tokens still in force."""
    from plugins.twopath.models import ApiToken

    users = db.session.execute(sa.select(User).order_by(User.username)).scalars().all()
    tokens: dict[int, list] = {}
    for token in db.session.execute(sa.select(ApiToken).where(ApiToken.revoked_at.is_(None))
                                    .order_by(ApiToken.id)).scalars():
        tokens.setdefault(token.user_id, []).append(token)
    context = {"found": None, "error": None, **context}
    return render_template("twopath/doctors.html", users=users, tokens=tokens, **context)


@bp.post("/doctors/lookup")
@require_role(Role.ADMIN)
def doctor_lookup():
    """The doctor by HIS 工号 (configurable SQL ``twopath.2511:doctor``), to confirm before granting."""
    code = request.form.get("doctor_code", "").strip()
    found, error = None, None
    try:
        rows = _his("2511", "doctor", doctor_code=code) if code else []
        found = rows[0] if rows else None
        error = None if found else "HIS 中没有该工号的医生"
    except Exception as exc:  # no HIS, or the hospital's SQL
        error = f"HIS 医生查询失败：{exc}"
    return _doctors_page(found=found, error=error, chosen_user=request.form.get("user_id", type=int))


@bp.post("/doctors/grant")
@require_role(Role.ADMIN)
def doctor_grant():
    """Grant the doctor permission: the name and national code come from the HIS, not from the form."""
    user = db.session.get(User, request.form.get("user_id", type=int) or 0) or abort(404)
    code = request.form.get("doctor_code", "").strip()
    rows = _his("2511", "doctor", doctor_code=code) if code else []
    if not rows:
        flash("HIS 中没有该工号的医生，未开通", "error")
        return redirect(url_for("twopath.doctors"))
    if not user.at_least(Role.OPERATOR):
        flash("医生权限需要操作员或管理员角色的账号", "error")
        return redirect(url_for("twopath.doctors"))
    doctor = rows[0]
    before = {"doctor_code": user.doctor_code, "doctor_name": user.doctor_name}
    user.doctor_code, user.doctor_name = str(doctor["doctor_code"]), str(doctor.get("name") or "")
    user.doctor_insu_code = str(doctor.get("insu_dr_code") or "")
    user.doctor_granted_by, user.doctor_granted_at = _actor(), clock.utc_naive(clock.now())
    audit.record("twopath.doctor_grant", user.username, before=before,
                 after={"doctor_code": user.doctor_code, "doctor_name": user.doctor_name})
    db.session.commit()
    flash(f"已为 {user.username} 开通医生权限：{user.doctor_name}（工号 {user.doctor_code}）", "ok")
    return redirect(url_for("twopath.doctors"))


@bp.post("/doctors/<int:user_id>/revoke")
@require_role(Role.ADMIN)
def doctor_revoke(user_id: int):
    user = db.session.get(User, user_id) or abort(404)
    audit.record("twopath.doctor_revoke", user.username, before={"doctor_code": user.doctor_code})
    user.doctor_code = user.doctor_name = user.doctor_insu_code = ""
    db.session.commit()
    flash(f"已取消 {user.username} 的医生权限", "ok")
    return redirect(url_for("twopath.doctors"))


@bp.post("/doctors/<int:user_id>/token")
@require_role(Role.ADMIN)
def api_token(user_id: int):
    """A new API token for the mini-program acting as this user (shown once)."""
    from plugins.twopath import api

    user = db.session.get(User, user_id) or abort(404)
    token = api.issue_token(user, label=request.form.get("label", "小程序")[:80], created_by=_actor())
    audit.record("twopath.api_token", user.username)
    db.session.commit()
    return _doctors_page(new_token=token, token_user=user)


@bp.post("/doctors/tokens/<int:token_id>/revoke")
@require_role(Role.ADMIN)
def api_token_revoke(token_id: int):
    """Withdraw an API token (a lost phone, a mini-program retired): refused from its next request on."""
    from plugins.twopath.models import ApiToken

    token = db.session.get(ApiToken, token_id) or abort(404)
    user = db.session.get(User, token.user_id)
    name = user.username if user else str(token.user_id)
    if token.revoked_at is None:
        token.revoked_at = clock.utc_naive(clock.now())
        audit.record("twopath.api_token_revoke", name, before={"label": token.label})
        db.session.commit()
        flash(f"已停用 {name} 的接口令牌「{token.label}」：小程序用它的请求将被拒绝", "ok")
    else:
        flash("该令牌已经停用", "ok")
    return redirect(url_for("twopath.doctors"))


# --- log search and statistics ---------------------------------------------------------------------------

def _date(name: str) -> date | None:
    try:
        return date.fromisoformat(request.args.get(name, ""))
    except ValueError:
        return None


@bp.get("/logs")
def logs():
    args = {k: request.args.get(k, "").strip() for k in ("card_no", "certno", "appy_no")}
    start, end = _date("start"), _date("end")
    searched = any(args.values()) or start or end
    result = reports.search(**args, start=start, end=end) if searched else None
    return render_template("twopath/logs.html", args=args, start=request.args.get("start", ""),
                           end=request.args.get("end", ""), result=result)


@bp.get("/stats")
def stats():
    by = "year" if request.args.get("by") == "year" else "month"
    year, kind = request.args.get("year", ""), request.args.get("kind", "")
    rows = reports.statistics(by=by, year=year or None, kind=kind if kind in (TWOPATH, CHRONIC) else None)
    return render_template("twopath/stats.html", rows=rows, by=by, year=year, kind=kind, chart=_stats_chart(rows),
                           columns=[("approved", "审核通过"), ("rejected", "不通过"), ("pending", "审核中"),
                                    ("revoked", "已撤销"), ("unsent", "未提交")])


def _stats_chart(rows) -> dict:
    """Filings per period, stacked by drug / disease (the eight most filed; the rest as 其他)."""
    from web.stats import chart_spec

    totals: dict[str, int] = {}
    for r in rows:
        totals[r.name] = totals.get(r.name, 0) + r.total
    top = set(sorted(totals, key=totals.get, reverse=True)[:8])
    periods = sorted({r.period for r in rows})
    series: dict[str, dict[str, int]] = {}
    for r in rows:
        name = r.name if r.name in top else "其他"
        bucket = series.setdefault(name, {})
        bucket[r.period] = bucket.get(r.period, 0) + r.total
    return chart_spec("bar", periods, series, stacked=True, y_title="申报数")


@bp.get("/interfaces")
def interfaces():
    types = [rt for name, rt in sorted(registry().report_types.items()) if name.startswith("twopath.")]
    return render_template("twopath/interfaces.html", types=types)


def _register_api() -> None:
    from plugins.twopath import api
    from web import auth

    bp.register_blueprint(api.api_bp)
    auth.TOKEN_AUTH_BLUEPRINTS.add(api.BLUEPRINT_NAME)


_register_api()
