"""The upload log's search by a whole identifier (ID number, phone, visit or message id): one seek in
``upload_search_keys`` (core/search_keys.py), kept by triggers on ``uploads``, back-filled by the
migration, rebuilt by ``baosong search-keys rebuild``; substrings keep the trigram index."""

from __future__ import annotations

import os
import random
from datetime import datetime, timedelta

import sqlalchemy as sa
from test_web_support import login

from core import search_keys
from core.db import db
from core.models import Upload, UploadSearchKey, UploadStatus

PATIENT = "36010219800101123X"  # an ID number with the check character X
OTHER = "360102198506157771"


def _upload(i: int, text: str, **values) -> Upload:
    return Upload(report_type="webtest.daily", business_key=f"bk-{i:05d}", status=UploadStatus.SUCCEEDED,
                  attempts=1, idempotency_key=f"msg-{i:05d}", search_text=text, rows=[],
                  created_at=datetime(2025, 3, 1, 2, 0) + timedelta(minutes=i), **values)


def _add(texts: list[str], start: int = 0) -> list[int]:
    uploads = [_upload(i, text) for i, text in enumerate(texts, start)]
    db.session.add_all(uploads)
    db.session.commit()
    return [u.id for u in uploads]


def _found(q: str) -> list[int]:
    from web.upload_query import UploadFilter, page

    return sorted(row.id for row in page(UploadFilter(q=q), size=500).rows)


def _stored() -> dict[int, set[str]]:
    found: dict[int, set[str]] = {}
    for key, upload_id in db.session.execute(sa.select(UploadSearchKey.key, UploadSearchKey.upload_id)):
        found.setdefault(upload_id, set()).add(key)
    return found


def _where(q: str) -> str:
    from web import search_index

    return str(search_index.condition(db.engine, q).compile(db.engine)).upper()


def test_the_rule_for_identifiers():
    assert search_keys.keys_of(f"keydata.dept_daily@20250101120000#5 {PATIENT.lower()} tel:13800138000 0310 "
                               "源上报123456789012 A1234567890B x_y") == {
        "20250101120000", PATIENT, "13800138000", "A1234567890B"}
    assert search_keys.query_key(f"  {PATIENT.lower()} ") == PATIENT
    for not_whole in ("0310", "ABCDEFGHIJKL", "3601-0219800101", "张三 360102", "1380013800"):
        assert search_keys.query_key(not_whole) is None


def test_the_triggers_store_the_same_keys_as_the_rule(app):
    """Whatever the text (punctuation, control characters, Chinese, quotes), the database's split (SQLite
    replace()+json_each, PostgreSQL regexp) gives the keys of ``keys_of``; updates and deletes follow."""
    rng = random.Random(17)
    alphabet = "0123456789" * 4 + "abcxyzXYZ" + " \t\n-_.:@#/|,;=\"'\\()[]{}*%&!?<>~^`$+\x01\x1f\x7f" + "张源号，。"
    texts = ["", "short 123", f"{PATIENT} {PATIENT.lower()} x{PATIENT}", 'q"uote\\d 12345678901"23456789012']
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 120))) for _ in range(150)]
    ids = _add(texts)
    expected = {i: search_keys.keys_of(t) for i, t in zip(ids, texts, strict=True) if search_keys.keys_of(t)}
    assert _stored() == expected
    uploads = db.session.execute(sa.select(Upload).where(Upload.id.in_(ids[:40]))).scalars().all()
    for upload in uploads:
        upload.search_text = (upload.search_text + " APP" + str(rng.getrandbits(40)).zfill(13))[-1000:]
    db.session.commit()
    db.session.execute(sa.update(Upload).where(Upload.id.in_(ids[40:60])).values(search_text="replaced 98765432109"))
    db.session.execute(sa.update(Upload).where(Upload.id.in_(ids[60:80])).values(status=UploadStatus.FAILED))
    db.session.execute(sa.delete(Upload).where(Upload.id.in_(ids[80:100])))
    db.session.commit()
    texts_now = dict(db.session.execute(sa.select(Upload.id, Upload.search_text)).all())
    assert _stored() == {i: search_keys.keys_of(t) for i, t in texts_now.items() if search_keys.keys_of(t)}


def test_a_whole_id_number_finds_exactly_the_uploads_that_carry_it(app):
    from web import search_index

    search_index.install(db.engine)
    ids = _add([
        f"bk-0 msg-0 {PATIENT}",                      # 0: the patient
        f"bk-1 msg-1 certno={PATIENT.lower()}",       # 1: the patient, lower-case x, inside a key=value
        f"bk-2 msg-2 {OTHER}",                        # 2: another patient
        f"bk-3 msg-3 9{PATIENT}00",                   # 3: a longer number that contains the ID number
        f"bk-4 msg-4 {OTHER} {PATIENT} 13800138000",  # 4: both patients and a phone number
        "bk-5 msg-5 nothing to see",                  # 5
    ])
    patient = [ids[0], ids[1], ids[4]]
    assert _found(PATIENT) == patient
    assert _found(PATIENT.lower()) == patient
    assert _found(f"  {PATIENT.lower()}\t") == patient
    assert _found(OTHER) == [ids[2], ids[4]]
    assert _found(f"9{PATIENT}00") == [ids[3]]  # the longer number is an identifier of its own
    assert _found("13800138000") == [ids[4]]
    assert not any(word in _where(PATIENT) for word in ("LIKE", "MATCH", "FTS"))  # the ids of one seek
    # Part of an identifier is a substring search, as before: the longer number is found too.
    assert _found(PATIENT[:15]) == sorted(patient + [ids[3]])
    # An identifier no upload has as a whole: the substring search answers (it is inside the longer one).
    assert _found(f"{PATIENT}0") == [ids[3]]
    assert _found("36010219800101123") == sorted(patient + [ids[3]])
    user = login(app, "viewer")
    assert "共 <strong>3</strong> 条" in user.get(f"/uploads/?q={PATIENT.lower()}").get_data(as_text=True)
    assert "共 <strong>0</strong> 条" in user.get("/uploads/?q=999999999999999999").get_data(as_text=True)


def test_keys_added_by_an_attempt_are_found_and_a_deleted_upload_takes_its_keys(app):
    from core import ledger

    ids = _add([f"bk-0 msg-0 {OTHER}", "bk-1 msg-1"])
    upload = db.session.get(Upload, ids[1])
    upload.status = UploadStatus.SENDING
    ledger.finish(upload, "success", code="0", message="ok", retry_interval=1, retry_max=1,
                  search_keys=[PATIENT, "APPNO2025000123"])
    db.session.commit()
    assert _found(PATIENT) == [ids[1]] and _found("appno2025000123") == [ids[1]]
    db.session.delete(db.session.get(Upload, ids[1]))
    db.session.commit()
    assert _found(PATIENT) == [] and set(_stored()) == {ids[0]}


def test_retention_keeps_the_keys_with_the_upload_and_removing_uploads_removes_them(app):
    """Retention prunes attempt bodies and keeps uploads (their search text and keys stay searchable);
    whatever removes uploads (a bulk delete, a purge by SQL) removes their keys in the same statement."""
    from core import clock, retention
    from core.models import Attempt

    ids = _add([f"old {PATIENT}", f"old {OTHER}", f"new {PATIENT}"])
    old = clock.utc_naive(clock.now() - timedelta(days=400))
    for upload_id in ids:
        db.session.add(Attempt(upload_id=upload_id, number=1, started_at=old, plaintext=PATIENT, outcome="success"))
    db.session.commit()
    assert retention.prune(days=180)["attempts"] == 3
    assert _found(PATIENT) == [ids[0], ids[2]]
    db.session.execute(sa.delete(Attempt).where(Attempt.upload_id.in_(ids[:2])))
    db.session.execute(sa.delete(Upload).where(Upload.id.in_(ids[:2])))
    db.session.commit()
    assert _stored() == {ids[2]: {PATIENT}}
    assert _found(PATIENT) == [ids[2]] and _found(OTHER) == []


def test_rebuild_recomputes_the_keys_from_the_ledger(app):
    from click.testing import CliRunner

    from core.cli import main
    from web import search_index

    ids = _add([f"a {PATIENT}", f"b {OTHER}"])
    expected = _stored()
    db.session.rollback()
    with db.engine.begin() as conn:  # keys lost or wrong (a restore of the uploads alone, hand edits)
        conn.execute(sa.text("DELETE FROM upload_search_keys"))
        conn.execute(sa.text(f"INSERT INTO upload_search_keys (key, upload_id) VALUES ('99999999999', {ids[0]})"))
    result = CliRunner().invoke(main, ["search-keys", "rebuild"])
    assert result.exit_code == 0, result.output
    assert "2 个" in result.output
    db.session.expire_all()
    assert _stored() == expected
    db.session.rollback()  # (PostgreSQL: DROP TRIGGER waits for readers of uploads)
    with db.engine.begin() as conn:  # triggers gone (a tool re-created the table): the admin's start re-installs
        for name in search_keys.PG_TRIGGERS if db.engine.dialect.name == "postgresql" else search_keys.SQLITE_TRIGGERS:
            conn.execute(sa.text(f"DROP TRIGGER IF EXISTS {name}" + (
                " ON uploads" if db.engine.dialect.name == "postgresql" else "")))
        conn.execute(sa.text("DELETE FROM upload_search_keys"))
        assert not search_keys.triggers_present(conn)
    search_index.install(db.engine)
    with db.engine.connect() as conn:
        assert search_keys.triggers_present(conn)
    assert _stored() == expected
    _add([f"c {PATIENT}"], start=2)
    assert len(_found(PATIENT)) == 2


def test_the_migration_back_fills_the_keys_of_existing_uploads(tmp_path, redis_conn, monkeypatch):
    from flask_migrate import upgrade

    from core.app import MIGRATIONS, create_app
    from core.bootstrap import init_db
    from web import create_app as create_admin

    url = os.environ.get("TEST_DATABASE_URL") or f"sqlite:///{tmp_path / 'before-keys.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    app = create_app()
    with app.app_context():
        if url.startswith("postgresql"):
            db.drop_all()
            with db.engine.begin() as conn:
                conn.execute(sa.text("DROP TABLE IF EXISTS alembic_version"))
        upgrade(directory=MIGRATIONS, revision="h1_delivery")
        with db.engine.begin() as conn:
            assert "upload_search_keys" not in sa.inspect(conn).get_table_names()
            for i, text in enumerate([f"k0 {PATIENT.lower()}", f"k1 {OTHER}", f"k2 x{PATIENT}", f"k3 {PATIENT}"]):
                conn.execute(sa.text(
                    "INSERT INTO uploads (id, report_type, business_key, period, operation, status, attempts, "
                    "auto_retries, delivery_uncertain, idempotency_key, rows, result, search_text, created_at, "
                    "updated_at) VALUES (:id, 'keydata.hospital_daily', :key, '2025/02/17 07:59:59', 'new', "
                    "'succeeded', 1, 0, false, :key, '[]', '{}', :text, '2025-02-17 00:00:00', '2025-02-17 00:00:00')"),
                    {"id": i + 1, "key": f"k{i}", "text": text})
        monkeypatch.setattr(search_keys, "BATCH", 2)  # several batches
    init_db(app)
    with app.app_context():
        with db.engine.connect() as conn:
            assert search_keys.triggers_present(conn)
            assert set(conn.execute(sa.text("SELECT key, upload_id FROM upload_search_keys")).all()) == {
                (PATIENT, 1), (OTHER, 2), ("X" + PATIENT, 3), (PATIENT, 4)}
        db.session.remove()
    admin = create_admin()
    with admin.app_context():
        assert _found(PATIENT) == [1, 4]
        db.session.add(_upload(9, f"after {PATIENT}", id=9))
        db.session.commit()
        assert _found(PATIENT) == [1, 4, 9]
        db.session.remove()
    init_db(app)  # running it again changes nothing
    with app.app_context():
        assert db.session.execute(sa.select(sa.func.count()).select_from(UploadSearchKey)).scalar() == 5
        db.session.remove()
        db.engine.dispose()
