"""A trigram index for the upload log's free-text search (msgid, application number, ID/card number...).

``uploads.search_text LIKE '%…%'`` has to read every row: fine at 100,000 uploads, seconds at a million.
A trigram index answers the same substring question from an index, in both databases:

- SQLite: an FTS5 table with the ``trigram`` tokenizer over ``uploads.search_text`` (external content),
  kept in step by triggers on ``uploads`` — whoever writes the ledger, the index follows.
- PostgreSQL: the ``pg_trgm`` extension and a GIN index on ``search_text`` (``ILIKE`` then uses it).

``install()`` is idempotent and runs when the admin starts; if it cannot (no FTS5, no right to create the
extension), the search falls back to the plain scan. Substrings shorter than three characters cannot
use a trigram index and fall back too.

A whole identifier (an 18-digit ID number, a phone, visit or message id: ``core.search_keys.query_key``)
is looked up first in ``upload_search_keys``, a b-tree of the identifiers of every upload: one seek,
whatever the size of the ledger (digits are the commonest trigrams, so the trigram index intersects
long posting lists for them). It finds the uploads that have that identifier, not those where it is
part of a longer number; when no upload has it as a whole identifier (the admin typed part of one),
the substring search below answers as before.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from core import search_keys

log = logging.getLogger("baosong.web.search")
FTS_TABLE = "uploads_search_fts"
PG_INDEX = "ix_uploads_search_trgm"
_SQLITE_DDL = (
    f"CREATE VIRTUAL TABLE IF NOT EXISTS {FTS_TABLE} USING fts5(search_text, content='uploads', "
    "content_rowid='id', tokenize='trigram')",
    f"CREATE TRIGGER IF NOT EXISTS uploads_search_ai AFTER INSERT ON uploads BEGIN "
    f"INSERT INTO {FTS_TABLE}(rowid, search_text) VALUES (new.id, new.search_text); END",
    f"CREATE TRIGGER IF NOT EXISTS uploads_search_ad AFTER DELETE ON uploads BEGIN "
    f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, search_text) VALUES ('delete', old.id, old.search_text); END",
    f"CREATE TRIGGER IF NOT EXISTS uploads_search_au AFTER UPDATE OF search_text ON uploads BEGIN "
    f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, search_text) VALUES ('delete', old.id, old.search_text); "
    f"INSERT INTO {FTS_TABLE}(rowid, search_text) VALUES (new.id, new.search_text); END",
)
_installed: dict[str, bool] = {}


def _key(engine: Engine) -> str:
    return str(engine.url)


def install(engine: Engine) -> bool:
    """Create the index (and fill it from existing uploads) if missing. Returns whether it is usable."""
    try:
        if engine.dialect.name == "sqlite":
            ok = _install_sqlite(engine)
        elif engine.dialect.name == "postgresql":
            ok = _install_postgres(engine)
        else:
            ok = False
    except Exception as exc:  # no FTS5 / no privilege: the plain scan still works
        log.warning("free-text search index not installed: %s", exc)
        ok = False
    if ok is None:
        return False  # no uploads table yet: try again on the next search
    _installed[_key(engine)] = ok
    return ok


def _install_sqlite(engine: Engine) -> bool | None:
    with engine.begin() as conn:
        if not conn.execute(sa.text("SELECT 1 FROM sqlite_master WHERE name='uploads'")).first():
            return None
        search_keys.ensure(conn)
        triggers = {r[0] for r in conn.execute(sa.text(
            "SELECT name FROM sqlite_master WHERE type='trigger' AND tbl_name='uploads'"))}
        had_table = conn.execute(sa.text(f"SELECT 1 FROM sqlite_master WHERE name='{FTS_TABLE}'")).first()
        complete = had_table and {"uploads_search_ai", "uploads_search_ad", "uploads_search_au"} <= triggers
        for statement in _SQLITE_DDL:
            conn.execute(sa.text(statement))
        if not complete:  # new, or the uploads table was re-created: index what is there
            conn.execute(sa.text(f"INSERT INTO {FTS_TABLE}({FTS_TABLE}) VALUES ('rebuild')"))
    return True


def _install_postgres(engine: Engine) -> bool | None:
    with engine.begin() as conn:
        if not conn.execute(sa.text("SELECT to_regclass('uploads')")).scalar():
            return None
        search_keys.ensure(conn)
        has_index = conn.execute(sa.text(
            "SELECT 1 FROM pg_indexes WHERE indexname = :name AND schemaname = current_schema()"),
            {"name": PG_INDEX}).first()
        if has_index:
            return True
        conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
        # The operator class lives in the extension's schema, which may not be on the search path.
        schema = conn.execute(sa.text(
            "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
            "WHERE e.extname = 'pg_trgm'")).scalar()
        conn.execute(sa.text(f'CREATE INDEX IF NOT EXISTS {PG_INDEX} ON uploads USING gin '
                             f'(search_text "{schema}".gin_trgm_ops)'))
    return True


def _present(engine: Engine) -> bool:
    """Is the index there now (cheap catalogue lookup; the uploads table may have been re-created)?"""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            names = {r[0] for r in conn.execute(sa.text(
                "SELECT name FROM sqlite_master WHERE name IN "
                f"('{FTS_TABLE}', 'uploads_search_ai', 'uploads_search_ad', 'uploads_search_au')"))}
            return len(names) == 4
        if engine.dialect.name == "postgresql":
            return conn.execute(sa.text(
                "SELECT 1 FROM pg_indexes WHERE indexname = :name AND schemaname = current_schema()"),
                {"name": PG_INDEX}).first() is not None
    return False


def usable(engine: Engine) -> bool:
    key = _key(engine)
    if _installed.get(key) is False:
        return False  # could not be installed here: do not retry on every search
    try:
        if _present(engine):
            return True
    except Exception:
        return False
    return install(engine)


def _like_pattern(text: str) -> tuple[str, str | None]:
    if any(c in text for c in "\\%_"):
        return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%", "\\"
    return f"%{text}%", None


def condition(engine: Engine, text: str):
    """The WHERE clause for 'search_text contains ``text``' (case-insensitive), indexed when possible."""
    from core.models import Upload

    exact = _exact_condition(engine, text)
    if exact is not None:
        return exact
    pattern, escape = _like_pattern(text)
    if len(text) >= 3 and usable(engine):
        if engine.dialect.name == "sqlite":
            return _sqlite_condition(engine, text, pattern, escape)
        return Upload.search_text.ilike(pattern, escape=escape)
    return Upload.search_text.ilike(pattern, escape=escape)


MATCH_ID_CAP = 20_000  # up to this many matches the ids go to the query itself (see _sqlite_condition)


def _exact_condition(engine: Engine, text: str):
    """The uploads that have ``text`` as a whole identifier (one seek in upload_search_keys), or None
    when it is not an identifier, no upload has it, or the table is not there (not migrated yet)."""
    from core.models import Upload, UploadSearchKey

    key = search_keys.query_key(text)
    if key is None:
        return None
    query = sa.select(UploadSearchKey.upload_id).where(UploadSearchKey.key == key)
    try:
        with engine.connect() as conn:
            ids = [row[0] for row in conn.execute(query.limit(MATCH_ID_CAP + 1))]
    except sa.exc.DBAPIError as exc:
        log.warning("exact search keys not usable: %s", exc)
        return None
    if not ids:
        return None
    return Upload.id.in_(ids) if len(ids) <= MATCH_ID_CAP else Upload.id.in_(query)


def _sqlite_condition(engine: Engine, text: str, pattern: str, escape: str | None):
    """Ask the trigram table first, with a phrase MATCH (a substring, case-insensitive), and give the
    query the matching ids: SQLite then reads those rows by primary key and sorts them, instead of
    walking the whole log in page order and testing each row (a rare ID number costs the same at a
    million uploads as at ten thousand). Very common substrings keep the subquery."""
    from core.models import Upload

    phrase = '"' + text.replace('"', '""') + '"'
    query = sa.select(sa.column("rowid")).select_from(sa.table(FTS_TABLE)).where(
        sa.literal_column(FTS_TABLE).op("MATCH")(phrase))
    with engine.connect() as conn:
        ids = [row[0] for row in conn.execute(query.limit(MATCH_ID_CAP + 1))]
    if len(ids) <= MATCH_ID_CAP:
        return Upload.id.in_(ids) if ids else sa.false()
    matches = sa.select(sa.column("rowid")).select_from(sa.table(FTS_TABLE)).where(
        sa.column("search_text").like(pattern, escape=escape))
    return Upload.id.in_(matches)
