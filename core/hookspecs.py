"""The plugin contract. Every regulator is a plugin module implementing some of these hooks.

A plugin is a plain module (or object) with functions decorated by ``core.hookimpl`` and registered
through the ``baosong.plugins`` entry-point group::

    # pyproject.toml of a plugin package
    [project.entry-points."baosong.plugins"]
    myreport = "my_report.plugin"

The core asks only the plugin that declared a report type for that report type's hooks, so a plugin
never has to check whose upload it is handed. The upload pipeline (``core.pipeline``) calls, for each
attempt at one upload::

    build_payload -> (validate against the report type's field schema) -> sign -> post -> parse_response

and records everything in the upload ledger; plugins never write the ledger themselves.

Everything else a plugin contributes also goes through hooks here, the same way for the built-in
plugins and for a package installed from outside: admin pages and menu entries
(``register_blueprints``), its own tables' migrations (``migrations_location``), actions on an upload
(``upload_actions``), a connection probe (``test_connection``), code dictionaries and their local
mappings (``register_dictionaries``), demo data (``seed_demo_hospital``) and commands
(``register_commands``). Ordering between uploads is data, not a hook: ``UploadPlan.depends_on``.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import pluggy

from core.hook_types import (
    AdminPages,
    CodeDictionary,
    OutboundRequest,
    Outcome,
    Payload,
    ProbeResult,
    Regulator,
    RegulatorStatus,
    ReportType,
    Response,
    Sandbox,
    Settings,
    UploadAction,
    UploadContext,
    UploadPlan,
)

hookspec = pluggy.HookspecMarker("baosong")
hookimpl = pluggy.HookimplMarker("baosong")


@hookspec
def register_regulators() -> list[Regulator]:
    """Declare the regulators this plugin talks to and their settings.

    Example::

        @hookimpl
        def register_regulators():
            return [Regulator("weekly", "周报平台", settings=(SettingField("url", "接口地址"),))]
    """


@hookspec
def register_report_types() -> list[ReportType]:
    """Declare the report types this plugin owns. Names are ``<plugin>.<report>`` and unique.

    Example::

        @hookimpl
        def register_report_types():
            return [ReportType("weekly.visits", "门诊周报", "weekly", cron="0 1 * * 1", schema=None)]
    """


@hookspec
def register_sandboxes() -> list[Sandbox]:
    """Declare the plugin's sandbox regulator(s); ``baosong sandbox`` serves each under ``/<name>``."""


@hookspec(firstresult=True)
def schedule(report_type: ReportType, slot: datetime, source: Any, settings: Settings) -> list[UploadPlan]:
    """Plan the uploads one due slot creates.

    ``slot`` is the aware datetime (in the report type's time zone) at which the slot fell due, also
    for back-fills and catch-up runs: plans must derive their period from ``slot``, never from now.
    ``source`` is the hospital data source (``core.hisdb.HospitalData`` wrapped by
    ``core.mapping.MappedHospitalData``): ``source.query(report_type, name, **params)`` runs the report
    type's configured SQL read-only, and returns rows through the report type's active field mapping.

    Return one ``UploadPlan`` per upload. A plan whose ``business_key`` already exists in the ledger is
    not planned again, so planning the same slot twice is harmless.

    Example::

        @hookimpl
        def schedule(report_type, slot, source, settings):
            week_end = slot - timedelta(seconds=1)
            rows = source.query(report_type, "visits", start=slot - timedelta(days=7), end=slot)
            return [UploadPlan(business_key=week_end.isoformat(), period=str(week_end), rows=rows)]
    """


@hookspec(firstresult=True)
def build_payload(upload: UploadContext) -> Payload:
    """Turn the upload's frozen ``rows`` into the plaintext to send.

    Called on every attempt. ``upload.resend`` is True when an earlier attempt may have reached the
    regulator: use the regulator's idempotency means (an "update" flag instead of "new", or the same
    message id, which is ``upload.idempotency_key``). ``Payload.records`` are validated by the core against the
    report type's ``schema`` before anything is signed; a failing record stops the attempt as a
    rejection naming the field. May raise ``core.errors.RejectUpload`` to refuse with a reason.
    """


@hookspec(firstresult=True)
def sign(upload: UploadContext, payload: Payload) -> OutboundRequest:
    """Encrypt and sign the payload and build the HTTP request (URL, headers, body).

    All SM2/SM3/SM4 goes through ``core.crypto`` with the regulator's configured profile. Name the
    headers that carry secrets in ``secret_headers`` so the ledger masks them.
    """


@hookspec(firstresult=True)
def post(upload: UploadContext, request: OutboundRequest) -> Response:
    """Send the request. The core's default (``core.http``) posts with ``requests`` and turns transport
    errors into a ``Response`` with ``error`` set; implement it only for an unusual transport."""


@hookspec(firstresult=True)
def parse_response(upload: UploadContext, response: Response) -> Outcome:
    """Classify the answer: ``success``; ``retry`` (network, timeout, 5xx, the regulator's system-error
    codes: retried automatically); or ``reject`` (data or configuration errors a person must fix)."""


@hookspec
def upload_finished(upload: UploadContext, outcome: Outcome) -> None:
    """Called after the ledger recorded a final outcome (success or rejection), in the same process.
    Plugins keep their own domain records in step here (e.g. an application number on a filing)."""


# --- the plugin boundary ---------------------------------------------------------------------------------


@hookspec
def register_blueprints() -> list[AdminPages]:
    """Add admin pages: a Flask blueprint and its navigation entries. The admin (``web.create_app``)
    registers what every plugin returns here and nothing else; a plugin's templates folder is its
    blueprint's ``template_folder``, its pages extend ``base.html``.

    Example::

        from flask import Blueprint, render_template
        from web.auth import require_role

        bp = Blueprint("weekly", __name__, url_prefix="/weekly", template_folder="templates")

        @bp.get("/")
        @require_role("viewer")
        def index():
            return render_template("weekly/index.html")

        @hookimpl
        def register_blueprints():
            return [AdminPages(bp, nav=(NavEntry("门诊周报", "weekly.index"),))]

    Import the views module inside the hook so that a worker (no admin) never imports Flask views.
    """


@hookspec
def migrations_location() -> str | None:
    """The folder of this plugin's own Alembic migrations, for its own tables.

    ``baosong init-db`` upgrades every location's heads together with the core's, so the plugin's tables
    are created on a new database and upgraded on an existing one, independently of the core. Give the
    first migration ``down_revision = None`` and ``branch_labels = ("<plugin>",)`` (its own branch);
    add ``depends_on = "9072698936cc"`` when a table refers to core tables (e.g. ``uploads.id``). Model
    the tables on ``core.db.db`` so ``tests/test_migrations.py`` checks the migrations against them.

    A plugin whose tables already exist in databases made before it had a branch (tables created by
    hand or by an older release) makes its first migration adopt them: create each table only if it is
    absent, so such a database upgrades intact and a new one gets the same schema.

    Example::

        @hookimpl
        def migrations_location():
            return str(Path(__file__).with_name("migrations"))
    """


@hookspec
def upload_actions(upload: Any) -> list[UploadAction]:
    """Actions a person may take on one upload, shown on its detail page (数据查询 › 详情).

    ``upload`` is the ``core.models.Upload`` row. Only the plugin owning ``upload.report_type`` is asked.
    Return the actions that make sense for this upload; one that does not apply *yet* is returned
    with ``unavailable`` set to say why (it is shown disabled). The admin checks ``role``, asks for
    ``confirm``, audits, and calls ``handler(upload_id, actor)`` in the request.

    Example::

        @hookimpl
        def upload_actions(upload):
            if upload.status != "succeeded":
                return [UploadAction("withdraw", "撤回", unavailable="尚未被平台接收")]
            return [UploadAction("withdraw", "撤回", handler=withdraw, confirm="确定撤回？",
                                 done="已提交撤回")]
    """


@hookspec(firstresult=True)
def test_connection(regulator: Regulator, settings: Settings) -> ProbeResult | None:
    """测试连接: check that the regulator is reachable with these settings, without sending data.

    Only the plugin that declared ``regulator`` is asked. Return a ``ProbeResult``: ``ok``, a Chinese
    ``message`` (never a secret), and what was learnt (URL, HTTP status, time, ``steps``). When the
    documents give no no-op call, say so with ``conclusive=False`` instead of pretending
    (``ProbeResult.local_checks_only(why, steps, passed)`` after checking settings and keys locally). Exceptions are
    shown as a failed probe.

    Example::

        @hookimpl
        def test_connection(regulator, settings):
            url = settings.get("url")
            if not url:
                return ProbeResult(False, "未配置接口地址", conclusive=False)
            answer = requests.head(url, timeout=5)
            return ProbeResult(answer.status_code < 500, f"HTTP {answer.status_code}", url=url,
                               status=answer.status_code)
    """


@hookspec
def register_dictionaries() -> list[CodeDictionary]:
    """Declare the code dictionaries this plugin offers: payload fields whose schema names a dictionary
    (``ReportType.dictionaries``) are validated against ``codes()``. A dictionary with a ``mapping``
    needs the hospital's local codes mapped to it; the admin's mapping page serves it (suggestions,
    Excel import/export, coverage), reading and saving through the plugin's ``LocalMapping``.

    Example::

        @hookimpl
        def register_dictionaries():
            return [CodeDictionary("CT08.00.002", "科室代码", codes=national_departments,
                                   mapping=LocalMapping(local_codes=his_departments,
                                                        mappings=stored_mappings, save=set_mapping))]
    """


@hookspec
def seed_demo_hospital(connection: Any, start: date, end: date) -> dict[str, int] | None:
    """Add this plugin's tables and rows to the demo hospital database (``baosong demo``), after the
    shared ones (patients, departments, visits...) are in. ``connection`` is an SQLAlchemy connection in
    a transaction on the demo HIS database; ``start``/``end`` bound the generated dates. Return
    {table: rows added}. Rows must be reproducible (seed ``random.Random`` with a constant).

    Example::

        @hookimpl
        def seed_demo_hospital(connection, start, end):
            connection.exec_driver_sql("CREATE TABLE IF NOT EXISTS weekly_extra (day TEXT, n INTEGER)")
            # sa.text with named parameters: the demo HIS may be SQLite or PostgreSQL
            connection.execute(sa.text("INSERT INTO weekly_extra VALUES (:day, :n)"),
                               {"day": start.isoformat(), "n": 1})
            return {"weekly_extra": 1}
    """


@hookspec(firstresult=True)
def regulator_status(regulator: Regulator, settings: Settings) -> RegulatorStatus | None:
    """Say whether uploads to ``regulator`` can be sent now (asked only of the plugin that declared it).
    The dashboard shows a closed one at the top and the task list marks its report types, so nobody
    waits for uploads that are refused. None: nothing to say.

    Example::

        @hookimpl
        def regulator_status(regulator, settings):
            if not settings.get("sign_verified"):
                return RegulatorStatus(False, "签名样例尚未验证，拒绝发送", endpoint="weekly.sign")
            return RegulatorStatus(True, "签名已验证")
    """


@hookspec
def register_audit_actions() -> dict[str, str]:
    """Chinese names of the audit actions the plugin records (````web.audit.record(...)````),
    so the audit log and its 操作 filter never show a raw identifier.

    Example::

        @hookimpl
        def register_audit_actions():
            return {"weekly.checked": "核对周报"}
    """


@hookspec
def register_commands(cli: Any) -> None:
    """Add ``baosong`` sub-commands to the ``click`` group ``cli`` (as datasette's hook of that name).

    Example::

        @hookimpl
        def register_commands(cli):
            @cli.command("weekly-stats")
            def weekly_stats():
                click.echo("...")
    """


@hookspec
def housekeeping() -> None:
    """Periodic upkeep, run about once a minute after the sweep by whichever worker ran the sweep
    (``core.operations.periodic``): resume work a killed process left half done, expire what is due.
    Keep it short and idempotent (two workers may run it in the same minute); an exception is logged
    and does not stop the other plugins' upkeep.

    Example::

        @hookimpl
        def housekeeping():
            resume_interrupted_exports()
    """

