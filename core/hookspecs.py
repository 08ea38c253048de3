"""The plugin contract. Every regulator is a plugin module implementing some of these hooks.

A plugin is a plain module (or object) with functions decorated by ``core.hookimpl`` and registered
through the ``baosong.plugins`` entry-point group::

    # pyproject.toml of a plugin package
    [project.entry-points."baosong.plugins"]
    weekly = "weekly_report.plugin"

The core asks only the plugin that declared a report type for that report type's hooks, so a plugin
never has to check whose upload it is handed. The upload pipeline (``core.pipeline``) calls, for each
attempt at one upload::

    build_payload -> (validate against the report type's field schema) -> sign -> post -> parse_response

and records everything in the upload ledger; plugins never write the ledger themselves.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pluggy

from core.hook_types import (
    OutboundRequest,
    Outcome,
    Payload,
    Regulator,
    ReportType,
    Response,
    Sandbox,
    Settings,
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
    regulator: use the regulator's idempotency means (keydata: dataFlag 2; Shangrao: the same msgid,
    which is ``upload.idempotency_key``). ``Payload.records`` are validated by the core against the
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
