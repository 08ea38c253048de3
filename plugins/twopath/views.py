"""Admin pages of the twopath plugin (blueprint ``bp``, url_prefix ``/twopath``): filings (form,
1101 lookup, HIS import, doctor's approval, submit, revoke), status sync, catalogues with Excel
import/export, the log search and statistics.

``web.create_app`` registers ``bp`` (and ``NAV``, ``upload_actions``) of every ``plugins/<name>/views.py``.

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

from core.db import db
from core.masking import mask_field
from core.models import Upload
from core.plugins import registry
from plugins.twopath import catalogue, client, filings, reports
from plugins.twopath.models import CHRONIC, KIND_LABELS, TWOPATH, Filing, FilingStatus, SignIn
from web.auth import can, current_user, require_role
from web.helpers import sees_patient_identifiers
from web.models import Role
from web.security import SEALED_FIELD, mask_values, restore_values

bp = Blueprint("twopath", __name__, url_prefix="/twopath", template_folder="templates")

NAV = ("双通道/慢特病", "twopath.index")

IDENTIFYING = ("psn_name", "certno", "card_no", "tel", "addr", "agnter_name", "agnter_certno", "agnter_tel",
               "agnter_addr")


def _actor() -> str:
    user = current_user()
    return user.username if user is not None else "anonymous"


def _operator() -> tuple[str, str]:
    """The envelope's opter / opter_name: the signed-in user."""
    name = _actor()
    return name[:30], name[:50]


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

    return {"shown": shown, "upload_url": upload_url, "S": FilingStatus, "KIND_LABELS": KIND_LABELS, "can_write": can(Role.OPERATOR)}


def upload_actions(upload: Upload) -> list[tuple[str, str]]:
    """Links on an upload's detail page: the filing it belongs to, the sync page for status queries."""
    if not upload.report_type.startswith("twopath."):
        return []
    row = (upload.rows or [{}])[0] if isinstance(upload.rows, list) and upload.rows else {}
    links = []
    if isinstance(row, dict) and row.get("filing_id"):
        links.append(("查看申请单", url_for("twopath.detail", filing_id=row["filing_id"])))
    for filing_id in (row.get("filing_ids") or [] if isinstance(row, dict) else []):
        links.append((f"申请单 {filing_id}", url_for("twopath.detail", filing_id=filing_id)))
    if upload.report_type == client.SYNC:
        links.append(("状态同步", url_for("twopath.sync")))
    return links


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


def _form_values() -> dict:
    values = restore_values({k: v for k, v in request.form.items() if k != "csrf_token"},
                            request.form.getlist(SEALED_FIELD))
    if values.get("kind", TWOPATH) == TWOPATH and values.get("fixmedins_code"):
        values["twopathfixmedins"] = [{"fixmedins_code": values.pop("fixmedins_code"),
                                       "fixmedins_name": values.pop("fixmedins_name", ""),
                                       "poolarea_no": values.pop("poolarea_no", "")}]
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
    return _form(kind, None, dict(request.form))


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
    values = {**(filing.data or {}), "card_no": filing.card_no, "insuplc_admdvs": filing.insuplc_admdvs,
              "item_code": filing.item_code, "appy_date": filing.appy_date}
    return _form(filing.kind, filing, values)


def _form(kind: str, filing: Filing | None, values: dict):
    kind_catalogue = "drugs" if kind == TWOPATH else "diseases"
    sealed = ""
    if not sees_patient_identifiers():
        values, sealed = mask_values(values, IDENTIFYING)
    return render_template("twopath/form.html", kind=kind, filing=filing, values=values, sealed=sealed,
                           fields=filings.form_fields(kind), items=catalogue.items(kind_catalogue, True),
                           cert_types=filings.CERT_TYPES)


@bp.post("/lookup")
@require_role(Role.OPERATOR)
def lookup():
    """1101 from the form (HTMX): fills the person fields."""
    opter, opter_name = _operator()
    try:
        person = filings.lookup_person(request.form.get("cert_type", "02"), request.form.get("number", ""),
                                       card_sn=request.form.get("card_sn", ""), actor=_actor(), opter=opter,
                                       opter_name=opter_name)
    except filings.FilingError as exc:
        return render_template("twopath/_person.html", error=str(exc), person=None)
    sealed = ""
    if not sees_patient_identifiers():
        person, sealed = mask_values(person, IDENTIFYING)
    return render_template("twopath/_person.html", person=person, error=None, sealed=sealed)


@bp.post("/import-his")
@require_role(Role.OPERATOR)
def import_his():
    """A patient from the HIS (configurable SQL ``twopath.<infno>:patient``), then 1101 for psn_no."""
    kind = request.form.get("kind", TWOPATH)
    certno = request.form.get("certno", "").strip()
    try:
        from core.scheduler import hospital_data

        rows = hospital_data().query(registry().report_type("twopath.2511" if kind == TWOPATH else "twopath.2503"),
                                     "patient", certno=certno)
    except Exception as exc:  # the HIS connection, or the SQL the hospital configured
        flash(f"从 HIS 读取患者失败：{type(exc).__name__}", "error")
        return redirect(url_for("twopath.new_filing", kind=kind))
    if not rows:
        flash("HIS 中没有该证件号码的患者", "error")
        return redirect(url_for("twopath.new_filing", kind=kind))
    values = {k: ("" if v is None else str(v)) for k, v in rows[0].items()}
    opter, opter_name = _operator()
    try:
        person = filings.lookup_person("02", certno, actor=_actor(), opter=opter, opter_name=opter_name)
        values.update({k: v for k, v in person.items() if v and k != "upload_id"})
    except filings.FilingError as exc:
        flash(f"{exc}（已导入 HIS 数据，人员编号需补充）", "warn")
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


@bp.post("/filings/<int:filing_id>/approve")
@require_role(Role.OPERATOR)
def approve(filing_id: int):
    return _act(filing_id, lambda f: filings.doctor_approve(
        f, request.form.get("doctor_code", ""), request.form.get("doctor_name", ""), actor=_actor()), "医生审核完成")


@bp.post("/filings/<int:filing_id>/submit")
@require_role(Role.OPERATOR)
def submit(filing_id: int):
    opter, opter_name = _operator()
    return _act(filing_id, lambda f: filings.submit(f, actor=_actor(), opter=opter, opter_name=opter_name),
                "已提交，正在发送到医保平台")


@bp.post("/filings/<int:filing_id>/revoke")
@require_role(Role.OPERATOR)
def revoke(filing_id: int):
    opter, opter_name = _operator()
    return _act(filing_id, lambda f: filings.revoke(f, actor=_actor(), reason=request.form.get("reason", ""),
                                                    opter=opter, opter_name=opter_name), "已提交撤销")


def _act(filing_id: int, action, done: str):
    filing = _filing(filing_id)
    try:
        action(filing)
    except filings.FilingError as exc:
        flash(str(exc), "error")
    else:
        flash(done, "ok")
    return redirect(url_for("twopath.detail", filing_id=filing_id))


@bp.post("/signin")
@require_role(Role.OPERATOR)
def signin():
    opter, opter_name = _operator()
    upload = client.sign_in(opter, opter_name, actor=_actor())
    flash("签到成功" if upload.status == "succeeded" else f"签到失败：{upload.last_message}",
          "ok" if upload.status == "succeeded" else "error")
    return redirect(request.referrer or url_for("twopath.index"))


# --- status sync ---------------------------------------------------------------------------------------

@bp.get("/sync")
def sync():
    runs = client.uploads_of([client.SYNC], limit=100)
    changes = filings.sync_changes([u.id for u in runs])
    signins = db.session.execute(sa.select(SignIn).order_by(SignIn.obtained_at.desc())).scalars().all()
    settings = client._settings()
    return render_template("twopath/sync.html", runs=runs, changes=changes, signins=signins,
                           status_field=settings.get("query_status_field"))


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
    return render_template("twopath/catalogue.html", kind=kind, title=catalogue.TITLES[kind],
                           items=catalogue.items(kind), headers=catalogue.CATALOGUES[kind][1:3], errors=None)


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
        return render_template("twopath/catalogue.html", kind=kind, title=catalogue.TITLES[kind],
                               items=catalogue.items(kind), headers=catalogue.CATALOGUES[kind][1:3],
                               errors=errors), 422
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
