"""Exact identifiers of an upload, for the upload log's search by a whole ID number, phone number,
visit or application number, message id...: ``upload_search_keys(key, upload_id)``, a b-tree.

The trigram index of ``web/search_index.py`` answers "contains this substring", but an 18-digit number
is made of the commonest trigrams there are (digits), so it intersects posting lists that grow with
the history (97 ms at a million uploads on SQLite). A whole identifier is answered instead by one seek
in this table, whose cost does not depend on how many uploads there are.

The keys of an upload are the *identifiers* in its ``search_text`` (business key, message id and the
plugins' search keys): the text is split at ASCII spaces, control characters and punctuation, and a
piece of 11–64 ASCII letters and digits with at least one digit is a key, upper-cased (``x`` and ``X``
are the same ID number). ``query_key`` applies the same rule to what the admin typed.

The table is kept by triggers on ``uploads``, like the trigram index: whoever writes the ledger
(``core.ledger``, a bulk insert, a restore), the keys follow in the same transaction, and they go
with the upload when it is deleted. They are the same identifiers, in the same database and for the
same lifetime as ``uploads.search_text`` (which stores them as they were given, as does the trigram
index): no copy goes anywhere the identifiers are not already. Migration ``h9_search_keys`` creates
and back-fills the table; ``create_all`` (tests, a development copy) gets the triggers from the
metadata listener below; ``rebuild`` recomputes every key (``baosong search-keys rebuild``).
"""

from __future__ import annotations

import re

import sqlalchemy as sa

TABLE = "upload_search_keys"
MIN_LENGTH, MAX_LENGTH = 11, 64
# The separators: ASCII control characters, space and punctuation (everything ASCII but letters and digits).
_SEPARATOR_CODES = [*range(0x01, 0x30), *range(0x3A, 0x41), *range(0x5B, 0x61), *range(0x7B, 0x7F)]
_SPLIT = re.compile(r"[\x01-\x2F\x3A-\x40\x5B-\x60\x7B-\x7E]+")
_PG_SPLIT = r"[\x01-\x2F\x3A-\x40\x5B-\x60\x7B-\x7E]+"  # the same class, for PostgreSQL's regexp
_KEY = re.compile(rf"[0-9A-Za-z]{{{MIN_LENGTH},{MAX_LENGTH}}}")
_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
SQLITE_TRIGGERS = ("uploads_search_keys_ai", "uploads_search_keys_ad", "uploads_search_keys_au")
PG_TRIGGERS = ("uploads_search_keys_ai", "uploads_search_keys_ad", "uploads_search_keys_au",
               "uploads_search_keys_at")
BATCH = 20_000  # uploads per back-fill statement


def _is_key(piece: str) -> bool:
    return bool(_KEY.fullmatch(piece)) and any(c.isdigit() for c in piece)


def keys_of(search_text: str | None) -> set[str]:
    """The keys the triggers store for this ``search_text`` (the reference for the SQL below)."""
    return {piece.translate(_ASCII_UPPER) for piece in _SPLIT.split(search_text or "") if _is_key(piece)}


def query_key(text: str) -> str | None:
    """The key to look up when the admin typed one whole identifier, else None (a substring search)."""
    text = (text or "").strip()
    return text.translate(_ASCII_UPPER) if _is_key(text) else None


# --- SQLite -----------------------------------------------------------------------------------------

_SQLITE_CHUNK = 16  # replace() calls nested in one expression (SQLite's parser stack is ~100 deep)


def _sqlite_pieces(column: str, *, carry: str = "", source: str = "") -> str:
    """A FROM item ``a`` whose column ``x`` is a JSON array of the pieces of ``column`` (every separator
    becomes char(1), then '","'), in nested subqueries of a few replace() each; ``carry`` columns are passed along,
    ``source`` is the innermost FROM/WHERE."""
    codes = [code for code in _SEPARATOR_CODES if code != 1]  # each becomes char(1), a separator too
    chunks = [codes[i:i + _SQLITE_CHUNK] for i in range(0, len(codes), _SQLITE_CHUNK)]
    query = ""
    for number, part in enumerate(chunks):
        expr = column if number == 0 else "x"
        for code in part:
            expr = f"replace({expr}, char({code}), char(1))"
        if number == len(chunks) - 1:
            expr = f"'[\"' || replace({expr}, char(1), '\",\"') || '\"]'"
        inner = f" {source}" if number == 0 else f" FROM ({query})"
        query = f"SELECT {carry}{expr} AS x{inner}"
    return f"({query}) AS a"


def _sqlite_select_keys(column: str, upload_id: str, *, carry: str = "", source: str = "") -> str:
    """SELECT (key, upload_id) of every key of ``column``."""
    return (f"SELECT DISTINCT upper(p.value), {upload_id} FROM {_sqlite_pieces(column, carry=carry, source=source)}, "
            "json_each(CASE WHEN json_valid(a.x) THEN a.x ELSE '[]' END) AS p "
            f"WHERE length(p.value) BETWEEN {MIN_LENGTH} AND {MAX_LENGTH} "
            "AND p.value NOT GLOB '*[^0-9A-Za-z]*' AND p.value GLOB '*[0-9]*'")


def _sqlite_old_keys() -> str:
    return (f"SELECT upper(p.value) FROM {_sqlite_pieces('old.search_text')}, "
            "json_each(CASE WHEN json_valid(a.x) THEN a.x ELSE '[]' END) AS p")


def sqlite_ddl() -> list[str]:
    delete_old = (f"DELETE FROM {TABLE} WHERE upload_id = old.id AND key IN ({_sqlite_old_keys()});")
    insert_new = f"INSERT OR IGNORE INTO {TABLE} (key, upload_id) {_sqlite_select_keys('new.search_text', 'new.id')};"
    return [
        f"CREATE TRIGGER IF NOT EXISTS uploads_search_keys_ai AFTER INSERT ON uploads BEGIN {insert_new} END",
        f"CREATE TRIGGER IF NOT EXISTS uploads_search_keys_ad AFTER DELETE ON uploads BEGIN {delete_old} END",
        "CREATE TRIGGER IF NOT EXISTS uploads_search_keys_au AFTER UPDATE OF search_text ON uploads "
        f"WHEN old.search_text IS NOT new.search_text BEGIN {delete_old} {insert_new} END",
    ]


# --- PostgreSQL -------------------------------------------------------------------------------------

def postgres_ddl() -> list[str]:
    keys_of_sql = (
        "CREATE OR REPLACE FUNCTION upload_search_keys_of(t text) RETURNS SETOF text LANGUAGE sql IMMUTABLE "
        "AS $fn$ SELECT DISTINCT upper(p) FROM regexp_split_to_table(t, "
        f"'{_PG_SPLIT}') AS p WHERE p ~ '^[0-9A-Za-z]{{{MIN_LENGTH},{MAX_LENGTH}}}$' AND p ~ '[0-9]' $fn$")
    rows_sql = (
        "CREATE OR REPLACE FUNCTION uploads_search_keys_rows() RETURNS trigger LANGUAGE plpgsql AS $fn$ BEGIN "
        "IF TG_OP = 'INSERT' THEN "
        f"INSERT INTO {TABLE} (key, upload_id) SELECT k, n.id FROM new_uploads AS n, "
        "LATERAL upload_search_keys_of(n.search_text) AS k ON CONFLICT DO NOTHING; "
        "ELSIF TG_OP = 'DELETE' THEN "
        f"DELETE FROM {TABLE} AS s USING old_uploads AS o, LATERAL upload_search_keys_of(o.search_text) AS k "
        "WHERE s.upload_id = o.id AND s.key = k; "
        "ELSIF TG_OP = 'TRUNCATE' THEN "
        f"DELETE FROM {TABLE}; "
        "END IF; RETURN NULL; END $fn$")
    row_sql = (
        "CREATE OR REPLACE FUNCTION uploads_search_keys_row() RETURNS trigger LANGUAGE plpgsql AS $fn$ BEGIN "
        f"DELETE FROM {TABLE} WHERE upload_id = OLD.id AND key IN (SELECT upload_search_keys_of(OLD.search_text)); "
        f"INSERT INTO {TABLE} (key, upload_id) SELECT k, NEW.id FROM upload_search_keys_of(NEW.search_text) AS k "
        "ON CONFLICT DO NOTHING; RETURN NULL; END $fn$")
    drops = [f"DROP TRIGGER IF EXISTS {name} ON uploads" for name in PG_TRIGGERS]
    return [keys_of_sql, rows_sql, row_sql, *drops,
            # Statement triggers with transition tables: a bulk insert of 10,000 uploads is one INSERT here.
            "CREATE TRIGGER uploads_search_keys_ai AFTER INSERT ON uploads REFERENCING NEW TABLE AS new_uploads "
            "FOR EACH STATEMENT EXECUTE FUNCTION uploads_search_keys_rows()",
            "CREATE TRIGGER uploads_search_keys_ad AFTER DELETE ON uploads REFERENCING OLD TABLE AS old_uploads "
            "FOR EACH STATEMENT EXECUTE FUNCTION uploads_search_keys_rows()",
            "CREATE TRIGGER uploads_search_keys_at AFTER TRUNCATE ON uploads "
            "FOR EACH STATEMENT EXECUTE FUNCTION uploads_search_keys_rows()",
            "CREATE TRIGGER uploads_search_keys_au AFTER UPDATE OF search_text ON uploads FOR EACH ROW "
            "WHEN (OLD.search_text IS DISTINCT FROM NEW.search_text) EXECUTE FUNCTION uploads_search_keys_row()"]


def postgres_drop_ddl() -> list[str]:
    return [*(f"DROP TRIGGER IF EXISTS {name} ON uploads" for name in PG_TRIGGERS),
            "DROP FUNCTION IF EXISTS uploads_search_keys_row()", "DROP FUNCTION IF EXISTS uploads_search_keys_rows()",
            "DROP FUNCTION IF EXISTS upload_search_keys_of(text)"]


# --- installing and rebuilding ----------------------------------------------------------------------

def has_tables(conn) -> bool:
    names = set(sa.inspect(conn).get_table_names())
    return {"uploads", TABLE} <= names


def triggers_present(conn) -> bool:
    if conn.dialect.name == "sqlite":
        names = {r[0] for r in conn.execute(sa.text(
            "SELECT name FROM sqlite_master WHERE type='trigger' AND tbl_name='uploads'"))}
        return set(SQLITE_TRIGGERS) <= names
    if conn.dialect.name == "postgresql":
        names = {r[0] for r in conn.execute(sa.text(
            "SELECT t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "WHERE c.oid = to_regclass('uploads')"))}
        return set(PG_TRIGGERS) <= names
    return False


def install_triggers(conn) -> None:
    """Create (or re-create) the triggers that keep the keys; idempotent."""
    if conn.dialect.name == "sqlite":
        statements = sqlite_ddl()
    elif conn.dialect.name == "postgresql":
        statements = postgres_ddl()
    else:
        return
    for statement in statements:
        conn.exec_driver_sql(statement)


def backfill(conn, *, batch: int | None = None, commit=None) -> int:
    """Add the keys of every upload, ``batch`` uploads per statement (by id range); keys already there
    are kept. ``commit``: called after each batch (a rebuild outside a migration commits as it goes)."""
    batch = batch or BATCH
    top = conn.execute(sa.text("SELECT max(id) FROM uploads")).scalar() or 0
    if conn.dialect.name == "sqlite":
        statement = (f"INSERT OR IGNORE INTO {TABLE} (key, upload_id) " + _sqlite_select_keys(
            "search_text", "a.id", carry="id, ", source="FROM uploads WHERE id > :low AND id <= :high"))
    else:
        statement = (f"INSERT INTO {TABLE} (key, upload_id) SELECT k, u.id FROM uploads AS u, "
                     "LATERAL upload_search_keys_of(u.search_text) AS k WHERE u.id > :low AND u.id <= :high "
                     "ON CONFLICT DO NOTHING")
    added = 0
    for low in range(0, top, batch):
        added += conn.execute(sa.text(statement), {"low": low, "high": low + batch}).rowcount or 0
        if commit:
            commit()
    return added


def rebuild(conn, *, commit=None) -> int:
    """Every key recomputed from ``uploads.search_text`` (after a restore, or code that bypassed the
    triggers): triggers re-created, table emptied, back-filled. Returns the number of keys."""
    install_triggers(conn)
    conn.execute(sa.text(f"DELETE FROM {TABLE}"))
    if commit:
        commit()
    return backfill(conn, commit=commit)


def ensure(conn) -> bool | None:
    """The triggers are there (rebuilding the keys if they were not). None: no tables (not migrated)."""
    if not has_tables(conn):
        return None
    if triggers_present(conn):
        return True
    rebuild(conn)
    return True


def _after_create(metadata, connection, tables=(), **_kw) -> None:
    """``create_all``: the triggers (and, if either table is new, keys that match the uploads)."""
    created = {t.name for t in tables}
    if not ({"uploads", TABLE} & created) or not has_tables(connection):
        return
    rebuild(connection)


def listen(metadata) -> None:
    sa.event.listen(metadata, "after_create", _after_create)
