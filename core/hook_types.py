"""The values that flow between the core and plugins through the hooks in ``core.hookspecs``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

CatchUp = Literal["all", "latest"]
OutcomeKind = Literal["success", "retry", "reject"]

# How far a request got (``Response.transport``, ``Attempt.delivery``). Only NOT_SENT is safe to resend
# as new: after MAYBE the regulator may hold the data although no answer came back.
TRANSPORT_ANSWERED = "answered"  # an HTTP status came back
TRANSPORT_NOT_SENT = "not_sent"  # DNS failure, connection refused, connect timeout, TLS handshake failure
TRANSPORT_MAYBE = "maybe_delivered"  # read timeout, reset/disconnect after sending, truncated/garbled answer
DELIVERY_UNKNOWN = "unknown"  # Attempt.delivery only: the worker died mid-attempt
DELIVERY_LABELS = {
    TRANSPORT_NOT_SENT: "未发出",
    TRANSPORT_MAYBE: "可能已送达",
    TRANSPORT_ANSWERED: "已应答",
    DELIVERY_UNKNOWN: "未知",
}


@dataclass(frozen=True)
class SettingField:
    """One per-regulator setting the admin edits (URL, institution code, key, crypto profile...)."""

    key: str
    label: str
    secret: bool = False
    default: str = ""
    help: str = ""
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class Regulator:
    """A regulator a plugin talks to; its settings are stored per regulator in the database."""

    name: str
    title: str
    settings: tuple[SettingField, ...] = ()
    # Response code -> explanation/solution shown in the admin next to a failure.
    codes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ReportType:
    """A kind of upload a plugin owns, e.g. ``keydata.hospital_daily``."""

    name: str
    title: str
    regulator: str
    cron: str | None = None  # default schedule; None means event-driven (created by people)
    catch_up: CatchUp = "latest"  # after downtime: run every missed slot, or only the latest
    schema: Any = None  # a core.schema.Schema the payload records are validated against
    dictionaries: tuple[str, ...] = ()  # code dictionaries (e.g. "CT08.00.002") the schema refers to
    queries: dict[str, str] = field(default_factory=dict)  # default SQL, overridable as configuration
    timezone: str = "Asia/Shanghai"
    available: bool = True  # False: the documents do not define it; the UI says so and it refuses to send
    unavailable_reason: str = ""
    # A slot (aware, in ``timezone``) that carries another period's final figures and so is never dropped
    # by a "latest" catch-up (e.g. keydata's 00:00 run: the previous day's full-day figures).
    must_run_slot: Callable[[datetime], bool] | None = None


@dataclass
class Problem:
    """Why one record (or one field of it) cannot be sent."""

    field: str | None
    reason: str
    record_index: int | None = None
    record_key: str | None = None

    def __str__(self) -> str:
        where = f"第{self.record_index + 1}条 " if self.record_index is not None else ""
        name = f"{self.field}: " if self.field else ""
        return f"{where}{name}{self.reason}"


@dataclass
class UploadPlan:
    """One upload a due slot (or a person) creates; written to the ledger before anything is sent."""

    business_key: str  # unique per report type: planning the same key twice creates nothing new
    period: str  # the period label the regulator sees, e.g. statDate "2025/02/17 07:59:59"
    # Collected data, frozen in the ledger so a retry sends the same thing. None: nothing to send, the
    # plan only records its held-back records (e.g. no department of the period is mapped yet).
    rows: list[dict[str, Any]] | None
    department: str | None = None
    idempotency_key: str | None = None  # e.g. a msgid; the core makes a random one when None
    operation: Literal["new", "update", "delete"] = "new"
    mapping_version: int | None = None
    # (watermark name, value): advanced in the same transaction that records the upload.
    watermark: tuple[str, str] | None = None
    held_back: list[Problem] = field(default_factory=list)  # records kept out of this upload, with reasons
    search_keys: list[str] = field(default_factory=list)  # extra keys the upload log can be searched by
    parent_id: int | None = None  # the upload this one follows up (a re-send with corrections, a withdrawal)


@dataclass
class Settings:
    """A regulator's settings as a plugin sees them (secrets decrypted, never to be logged)."""

    regulator: str
    values: dict[str, str]
    secret_keys: frozenset[str] = frozenset()

    def get(self, key: str, default: str = "") -> str:
        value = self.values.get(key)
        return default if value in (None, "") else value

    def __getitem__(self, key: str) -> str:
        return self.values[key]

    def secrets(self) -> list[str]:
        return [v for k, v in self.values.items() if k in self.secret_keys and v]


@dataclass(frozen=True)
class AttemptRecord:
    """One earlier attempt of an upload as the ledger knows it (``UploadContext.history``).

    ``delivery`` is an ``Attempt.delivery`` value (None: the attempt stopped before sending);
    ``operation_sent`` what the plugin said it sent (``OutboundRequest.operation``, e.g. "new"/"update").
    """

    number: int
    delivery: str | None
    outcome: str | None
    code: str | None
    resend: bool
    operation_sent: str | None


@dataclass
class UploadContext:
    """What a plugin sees of one attempt at one upload."""

    id: int
    report_type: ReportType
    business_key: str
    period: str
    department: str | None
    rows: list[dict[str, Any]]
    idempotency_key: str
    operation: str
    attempt_no: int
    # True when an earlier attempt may have reached the regulator (timeout, crash, unknown answer) or
    # an admin asked for a re-send: the plugin must use the regulator's own idempotency means
    # (same msgid, dataFlag=2, query-before-resubmit) so nothing is counted twice.
    resend: bool
    settings: Settings
    mapping_version: int | None = None
    created_at: datetime | None = None
    # Merged ``Outcome.result`` of every earlier attempt (whatever its kind): a plugin's strategy state.
    result: dict[str, Any] = field(default_factory=dict)
    history: tuple[AttemptRecord, ...] = ()  # earlier attempts, oldest first (not the current one)
    # Some earlier attempt may have reached the regulator (ledger knowledge; a manual or bulk retry never
    # clears it). ``resend`` is this or an update.
    delivery_uncertain: bool = False


@dataclass
class Payload:
    """Plaintext to send: ``records`` are validated against the report type's schema; ``document``
    is what gets encrypted/signed (a record, the list of records, or an envelope around them)."""

    records: list[dict[str, Any]]
    document: Any


@dataclass
class OutboundRequest:
    url: str
    body: bytes | str
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "POST"
    timeout: float = 30.0
    plaintext: str = ""  # the payload before encryption, recorded in the ledger
    secret_headers: frozenset[str] = frozenset()  # header names masked in the ledger
    # What this request does at the regulator, as the plugin's strategy chose it (e.g. "new"/"update" for a
    # keydata dataFlag 1/2); recorded on the attempt (AttemptRecord.operation_sent). None: the upload's.
    operation: str | None = None


@dataclass
class Response:
    status: int | None
    body: str
    headers: dict[str, str] = field(default_factory=dict)
    error: str | None = None  # transport error (connection refused, timeout); status is None then
    # TRANSPORT_ANSWERED / TRANSPORT_NOT_SENT / TRANSPORT_MAYBE. Left empty: "answered" when a status
    # came back, else "maybe_delivered" (a transport that cannot tell is never taken as "not sent").
    transport: str = ""

    def __post_init__(self) -> None:
        if not self.transport:
            self.transport = TRANSPORT_ANSWERED if self.status is not None else TRANSPORT_MAYBE


@dataclass
class Outcome:
    """How a plugin classifies a regulator's answer."""

    kind: OutcomeKind
    code: str | None = None
    message: str = ""
    # Merged into the upload's result whatever the kind (e.g. {"appy_no": "..."}, or strategy state such as
    # {"keydata_flag_next": 1}); read back as UploadContext.result.
    result: dict[str, Any] = field(default_factory=dict)
    search_keys: list[str] = field(default_factory=list)
    # Ask for another attempt right away (e.g. an update answered "not found" -> send it as new): recorded as
    # its own attempt, not counted against the automatic-retry budget; the pipeline bounds follow-ups in a
    # row (core.pipeline.MAX_FOLLOW_UPS), after which ``kind`` applies.
    follow_up: bool = False


@dataclass(frozen=True)
class Sandbox:
    """A plugin's stand-in regulator: a real HTTP app that decrypts, verifies and validates like the
    regulator, answers with its codes and can be told to fail.

    ``make_app(config)`` returns a WSGI app; ``demo_config(base_url)`` returns the settings Baosong
    needs per regulator to talk to it and the sandbox's own config (its keys), made fresh for a demo;
    ``seed()`` (optional) adds demo data once settings are stored, inside an app context.
    """

    name: str
    title: str
    make_app: Callable[[dict], Any]
    demo_config: Callable[[str], tuple[dict[str, dict[str, str]], dict]]
    seed: Callable[[], None] | None = None
