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
    """A kind of upload a plugin owns, named ``<plugin>.<report>`` (e.g. ``myplugin.daily``)."""

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
    # The report type whose upload reverses (冲销/撤回) an accepted upload of this one: the same name when
    # the plugin sends the reversal itself for ``operation == "delete"``. None: no reversal interface.
    # ``core.ordering.reverse_and_resend`` uses it (reverse first, then re-send, in that order).
    reversal: str | None = None
    # A slot (aware, in ``timezone``) that carries another period's final figures and so is never dropped
    # by a "latest" catch-up (e.g. a 00:00 run that sends the previous day's full-day figures).
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
    # Prerequisites as (report_type, business_key): this upload waits (UploadStatus.WAITING) until each
    # of them succeeded and is never sent before (core.ordering). They may be planned later or earlier,
    # in this slot's plans (listed before it) or another slot's.
    depends_on: list[tuple[str, str]] = field(default_factory=list)


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
    # regulator's insert/update flag); recorded on the attempt (AttemptRecord.operation_sent). None: the upload's.
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
    # {"flag_next": 1}); read back as UploadContext.result.
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


# --- the plugin boundary: admin pages, upload actions, connection probes, code dictionaries ---------------

ROLE_VIEWER, ROLE_OPERATOR, ROLE_ADMIN = "viewer", "operator", "admin"


@dataclass(frozen=True)
class NavEntry:
    """A navigation link to one of a plugin's admin pages (``endpoint`` of its blueprint)."""

    label: str
    endpoint: str
    role: str | None = None  # minimum role to see the entry (None: every signed-in user)


@dataclass(frozen=True)
class RegulatorStatus:
    """Whether a plugin can send to a regulator right now, beyond its settings being filled in (e.g. a
    known-answer gate on an assumed sign algorithm). Shown on the dashboard and the task list; ``endpoint``
    is the admin page where a person fixes it."""

    ok: bool
    message: str
    endpoint: str | None = None


@dataclass(frozen=True)
class AdminPages:
    """A plugin's admin pages: a Flask blueprint and its navigation entries. CSRF applies to them unchanged.

    ``permissions`` states who may use them, as the admin's own permission table does: endpoint or
    ``"<blueprint>.*"`` -> (least role to read, least role to change), roles ``"viewer"``, ``"operator"``,
    ``"admin"``. Without an entry for the blueprint, viewers read and operators change; a view's
    ``web.auth.require_role`` can only make a route stricter."""

    blueprint: Any  # flask.Blueprint
    nav: tuple[NavEntry, ...] = ()
    permissions: dict[str, tuple[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class UploadAction:
    """Something a person may do to one upload from its detail page (re-send, withdraw, revoke...).

    ``handler(upload_id, actor)`` does it inside the admin's request (an application context) and returns
    the id of the upload it created (the page goes there) or None; it raises ``core.errors.BaosongError``
    (or ``ValueError``) with a reason in Chinese to refuse, and commits its own work. The admin audits
    every action and re-asks the hook before running one, so availability is checked again on POST.
    ``url`` instead of a handler makes the action a link (e.g. to the plugin's own page for the upload).
    """

    name: str  # unique within the plugin, in the URL: /uploads/<id>/actions/<name>
    label: str
    handler: Callable[[int, str], int | None] | None = None
    confirm: str = ""  # asked before running (data-confirm); empty: no question
    role: str = ROLE_OPERATOR  # minimum role
    unavailable: str = ""  # non-empty: shown disabled with this reason (e.g. "尚未被平台接收")
    url: str | None = None
    done: str = ""  # flashed after the handler returned


@dataclass(frozen=True)
class ProbeStep:
    """One check of a connection probe (DNS, TCP, TLS, an authenticated no-op call...)."""

    name: str
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class ProbeResult:
    """What ``test_connection`` found. ``message`` is shown as is (Chinese, no secrets)."""

    ok: bool
    message: str
    url: str | None = None
    status: int | None = None  # the HTTP status the regulator answered with, if any
    elapsed_ms: int | None = None
    steps: tuple[ProbeStep, ...] = ()
    # False: the probe could not reach the point where it learns anything (settings missing, no
    # documented no-op call); the admin shows it as "未检测" rather than as a failure.
    conclusive: bool = True

    @classmethod
    def local_checks_only(cls, why: str, steps: list[ProbeStep], passed: bool) -> ProbeResult:
        """For a regulator whose documents define no harmless call: nothing was sent; ``why`` says so and
        ``steps`` are the checks made here (settings, keys)."""
        steps = [*steps, ProbeStep("协议级测试", False, "文档未定义无副作用的测试接口，未发送")]
        local = "本地检查通过" if passed else "本地检查未通过（见检查项）"
        return cls(False, f"{why}。{local}", steps=tuple(steps), conclusive=False)


@dataclass(frozen=True)
class LocalCode:
    """A code the hospital uses locally (a HIS department, a local drug code...)."""

    code: str
    name: str
    active: bool = True


@dataclass(frozen=True)
class MappedCode:
    """One stored local->national mapping (national_code None: known but not mapped yet)."""

    local_code: str
    local_name: str
    national_code: str | None
    updated_by: str | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class LocalMapping:
    """How a dictionary's local->national mapping is read and kept (in the plugin's own table).

    ``local_codes()`` lists the hospital's codes now (it may raise when the HIS is down: the mapping page
    still shows the stored mappings); ``mappings()`` returns the stored ones by local code;
    ``save(local_code, local_name, national_code_or_None, actor)`` stores one (validating the national
    code; the caller commits). For the coverage meter, optional: ``held()`` counts the held-back records
    waiting on each local code, ``in_use()`` the local codes in the current data (e.g. today's visits).
    The labels name the two sides on the page and in the Excel template ("院内科室" -> 院内科室代码).
    """

    local_codes: Callable[[], list[LocalCode]]
    mappings: Callable[[], dict[str, MappedCode]]
    save: Callable[[str, str, str | None, str], Any]
    held: Callable[[], dict[str, int]] | None = None
    in_use: Callable[[], set[str]] | None = None
    local_label: str = "院内"
    national_label: str = "国家"
    used_by: str = ""  # what the mapping is for, shown on the page (e.g. "科室就诊日报使用")
    # Report types that hold records back while a local code is unmapped: saving a mapping re-plans
    # their held-back slots, so the records are sent without anyone asking (core.scheduler).
    held_by: tuple[str, ...] = ()


@dataclass(frozen=True)
class CodeDictionary:
    """A code dictionary a plugin offers (department, drug, disease...): ``codes()`` -> {code: meaning} is
    what payload fields naming it in a schema are validated against; ``entries()`` (optional) gives
    [{"code", "name", "parent"}] for better suggestions. With ``mapping`` the admin's mapping page
    (配置管理 › 代码对照) maps local codes to it: suggestions, Excel import/export, coverage."""

    name: str  # e.g. "CT08.00.002"; unique across plugins
    title: str
    codes: Callable[[], dict[str, str]]
    entries: Callable[[], list[dict[str, Any]]] | None = None
    mapping: LocalMapping | None = None

    @property
    def needs_mapping(self) -> bool:
        return self.mapping is not None
