"""Read-only access to the hospital's own database (the HIS, ``HIS_DATABASE_URL``).

Plugins never open the hospital database themselves: they ask ``HospitalData.query(report_type, name,
**params)`` to run a named SQL statement.  The SQL comes from configuration (``queries`` given here, keyed
``"<report type name>:<query name>"``, e.g. edited in the admin) or else from the report type's defaults
(``report_type.queries[name]``), so a hospital whose HIS has other table names only changes configuration.

Read-only is enforced three times:

1. Each statement must be a single ``SELECT`` or ``WITH ... SELECT``: no second statement, no
   data-modifying or DDL keyword anywhere (``INSERT``, ``UPDATE`` incl. ``FOR UPDATE``, ``DELETE``,
   ``ATTACH``, ``PRAGMA``, ``SELECT ... INTO`` ...), else :class:`HisQueryError` naming the report type and
   query.  Comments and string literals are ignored by this check.
2. The connection itself cannot write: SQLite files are opened with ``mode=ro`` (URI), plus
   ``PRAGMA query_only``; PostgreSQL, MySQL/MariaDB and Oracle run every query in a ``SET TRANSACTION READ
   ONLY`` transaction that is rolled back afterwards.  (Other databases: give Baosong a read-only login.)
3. The transaction is always rolled back.

Parameters are bound (``:name`` in the SQL), never formatted into it.  Times: the hospital stores naive
local (Asia/Shanghai) wall-clock times.  ``datetime`` parameters are converted to that (an aware datetime is
first converted to Asia/Shanghai) and, for SQLite, passed as text ``'YYYY-MM-DD HH:MM:SS'`` (``date`` as
``'YYYY-MM-DD'``), the way the demo database (``demo.hospital``) stores them, so string comparison
orders correctly; for other databases they are passed as naive ``datetime``/``date`` objects.

Values come back as the driver returns them: SQLite gives times as text and NUMERIC as int/float,
PostgreSQL gives ``datetime`` and ``Decimal``.  Plugins format them for the regulator.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote
from zoneinfo import ZoneInfo

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import SQLAlchemyError

from core.errors import BaosongError

DEFAULT_TIMEZONE = "Asia/Shanghai"

# Keywords that have no business in a read-only query.  REPLACE is allowed only as the string function
# replace(...).  The list is deliberately broad; a false positive is a clear error, a false negative is
# still stopped by the read-only connection.
_FORBIDDEN = {
    "INSERT", "UPDATE", "DELETE", "MERGE", "UPSERT", "REPLACE", "INTO", "CREATE", "DROP", "ALTER", "TRUNCATE",
    "ATTACH", "DETACH", "PRAGMA", "VACUUM", "REINDEX", "GRANT", "REVOKE", "COPY", "CALL", "EXEC", "EXECUTE",
    "LOCK", "SET", "RESET", "BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "LOAD", "OUTFILE", "DUMPFILE",
    "LISTEN", "NOTIFY", "PREPARE", "DEALLOCATE",
}
_TOKEN = re.compile(
    r"""
    (?P<comment>--[^\n]*|/\*.*?\*/)
  | (?P<string>'(?:[^']|'')*'|\$(?P<tag>[A-Za-z_]*)\$.*?\$(?P=tag)\$)
  | (?P<quoted>"(?:[^"]|"")*"|`[^`]*`|\[[^\]]*\])
  | (?P<param>:[A-Za-z_]\w*)
  | (?P<word>[A-Za-z_][A-Za-z_0-9$]*)
  | (?P<semi>;)
  | (?P<other>\S)
    """,
    re.VERBOSE | re.DOTALL,
)


class HisQueryError(BaosongError):
    """A hospital-database query is missing, not read-only, or failed; the message names the report type
    and the query."""


class ReportTypeLike(Protocol):
    name: str
    queries: Mapping[str, str]


def check_read_only_sql(sql: str) -> str | None:
    """Why ``sql`` is not a single read-only SELECT, or None when it is."""
    words: list[str] = []
    following: list[str] = []  # the token after each word (to tell the replace() function from REPLACE)
    qualified: list[bool] = []  # the word follows a dot: a column name such as t.set
    statements_done = False
    tokens = [m for m in _TOKEN.finditer(sql) if m.lastgroup != "comment"]
    for i, m in enumerate(tokens):
        kind = m.lastgroup
        if kind == "semi":
            statements_done = True
            continue
        if statements_done:
            return "只允许一条语句 (only one statement is allowed)"
        if kind == "word":
            words.append(m.group().upper())
            following.append(tokens[i + 1].group() if i + 1 < len(tokens) else "")
            qualified.append(i > 0 and tokens[i - 1].group() == ".")
    if not words:
        return "查询为空 (the query is empty)"
    if words[0] not in ("SELECT", "WITH"):
        return f"只允许 SELECT/WITH 查询，不允许 {words[0]} (only SELECT or WITH ... SELECT is allowed)"
    for word, nxt, dotted in zip(words, following, qualified, strict=True):
        if dotted or (word == "REPLACE" and nxt == "("):
            continue
        if word in _FORBIDDEN:
            return f"查询中不允许 {word} (read-only: {word} is not allowed)"
    if "SELECT" not in words:
        return "WITH 之后必须是 SELECT (WITH must lead to a SELECT)"
    return None


def with_installed_driver(url: URL) -> URL:
    """``postgresql://`` means psycopg (3) to SQLAlchemy 2.1; use psycopg2 when only that is installed."""
    if url.drivername == "postgresql":
        if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
            return url.set(drivername="postgresql+psycopg2")
    return url


def _read_only_url(url: str | URL) -> URL:
    """The URL to connect with; SQLite files become ``file:PATH?mode=ro`` URIs."""
    u = make_url(url) if isinstance(url, str) and "://" in url else (
        url if isinstance(url, URL) else make_url(f"sqlite:///{Path(url).resolve()}"))
    if u.get_backend_name() != "sqlite":
        return with_installed_driver(u)
    database = u.database or ""
    if database in ("", ":memory:") or database.startswith("file::memory:") or "mode=memory" in database:
        raise HisQueryError("医院数据库不能是内存 SQLite 数据库 (an in-memory SQLite database cannot be read-only)")
    query = {k: v for k, v in u.query.items() if k not in ("mode", "uri", "immutable")}
    if database.startswith("file:"):
        # Already a URI: keep its path, drop any mode in it.
        path_part = database[5:].split("?", 1)[0]
    else:
        path_part = quote(str(Path(database).resolve()), safe="/:")
    query.update({"mode": "ro", "uri": "true"})
    return u.set(database=f"file:{path_part}", query=query)


_engines: dict[tuple[int, str, tuple], Engine] = {}


def _shared_engine(url: URL, options: tuple) -> Engine:
    """One engine (connection pool) per process and hospital URL: every planning run builds a new
    HospitalData, and a pool each time would leak connections."""
    import os

    key = (os.getpid(), url.render_as_string(hide_password=False), options)
    if key not in _engines:
        engine = create_engine(url, **{"pool_pre_ping": True, **dict(options)})
        if engine.dialect.name == "sqlite":
            @event.listens_for(engine, "connect")
            def _query_only(dbapi_conn: Any, _record: Any) -> None:
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA query_only = ON")
                cur.close()
        _engines[key] = engine
    return _engines[key]


class HospitalData:
    """Read-only access to the hospital's database (HIS_DATABASE_URL)."""

    def __init__(self, url: str | URL, queries: Mapping[str, str] | None = None, *,
                 timezone: str = DEFAULT_TIMEZONE, engine_options: Mapping[str, Any] | None = None):
        self.url = _read_only_url(url)
        self.queries: dict[str, str] = dict(queries or {})
        self.timezone = ZoneInfo(timezone)
        self._engine_options = dict(engine_options or {})
        self._engine: Engine | None = None

    # -- engine
    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = _shared_engine(self.url, tuple(sorted(self._engine_options.items())))
        return self._engine

    @property
    def dialect(self) -> str:
        return self.url.get_backend_name()

    def dispose(self) -> None:
        """Forget this source's engine (the process keeps its pool for the next source)."""
        self._engine = None

    # -- queries
    def sql_for(self, report_type: ReportTypeLike, name: str) -> str:
        """The SQL configured for (report type, name): the override, else the report type's default."""
        key = f"{report_type.name}:{name}"
        sql = self.queries.get(key)
        if sql is None:
            sql = (getattr(report_type, "queries", None) or {}).get(name)
        if sql is None or not sql.strip():
            known = sorted(set(getattr(report_type, "queries", None) or {})
                           | {k.split(":", 1)[1] for k in self.queries if k.startswith(f"{report_type.name}:")})
            raise HisQueryError(
                f"报送类型 {report_type.name} 没有配置名为 {name} 的医院数据查询"
                f" (no query {name!r} for report type {report_type.name}; configured: {', '.join(known) or 'none'})")
        return sql

    def query(self, report_type: ReportTypeLike, name: str, /, **params: Any) -> list[dict[str, Any]]:
        """Run the SQL configured for (report_type.name, name) — from self.queries override (key
        f"{report_type.name}:{name}") or else report_type.queries[name] — with bound :params; return rows
        as dicts."""
        sql = self.sql_for(report_type, name)
        where = f"报送类型 {report_type.name} 的查询 {name}"
        problem = check_read_only_sql(sql)
        if problem:
            raise HisQueryError(f"{where} 不是只读查询: {problem}")
        bound = {k: self._param(v) for k, v in params.items()}
        try:
            with self.engine.connect() as conn:
                try:
                    self._begin_read_only(conn)
                    result = conn.execute(text(sql), bound)
                    rows = [dict(row._mapping) for row in result]
                finally:
                    conn.rollback()
        except SQLAlchemyError as exc:
            detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            raise HisQueryError(f"{where} 执行失败：{detail}") from exc
        return rows

    def scalar(self, report_type: ReportTypeLike, name: str, /, **params: Any) -> Any:
        """The first column of the first row (None when there are no rows)."""
        rows = self.query(report_type, name, **params)
        if not rows:
            return None
        return next(iter(rows[0].values()), None)

    def _begin_read_only(self, conn: Connection) -> None:
        dialect = conn.dialect.name
        if dialect in ("postgresql", "mysql", "mariadb", "oracle"):
            conn.exec_driver_sql("SET TRANSACTION READ ONLY")

    def _param(self, value: Any) -> Any:
        if isinstance(value, datetime):
            if value.tzinfo is not None:
                value = value.astimezone(self.timezone).replace(tzinfo=None)
            value = value.replace(microsecond=0)
            return value.strftime("%Y-%m-%d %H:%M:%S") if self.dialect == "sqlite" else value
        if isinstance(value, date):
            return value.isoformat() if self.dialect == "sqlite" else value
        return value
