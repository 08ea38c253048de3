"""HospitalData: named, parameterised, read-only queries against the hospital database."""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import event

from core import hisdb
from core.hisdb import HisQueryError, HospitalData, check_read_only_sql
from demo.hospital import generate


@dataclass
class RT:
    name: str
    queries: dict[str, str] = field(default_factory=dict)


COUNT_SQL = ("SELECT COUNT(*) AS n FROM registrations WHERE visit_type = :visit_type AND status = 'valid' "
             "AND reg_time BETWEEN :start AND :end")
REPORT = RT("keydata.hospital_daily", {"clinic": COUNT_SQL, "patients": "SELECT COUNT(*) AS n FROM patients"})


@pytest.fixture(scope="module")
def his_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("his") / "his.db"
    generate(str(path), start=date(2025, 3, 3), end=date(2025, 3, 4))
    return path


@pytest.fixture()
def his(his_path: Path) -> HospitalData:
    data = HospitalData(f"sqlite:///{his_path}")
    yield data
    data.dispose()


def _count(path: Path, sql: str, *params: object) -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, params).fetchone()[0]
    finally:
        conn.close()


def test_query_with_datetime_params(his: HospitalData, his_path: Path) -> None:
    rows = his.query(REPORT, "clinic", visit_type="outpatient", start=datetime(2025, 3, 3),
                     end=datetime(2025, 3, 3, 23, 59, 59))
    expected = _count(his_path, "SELECT COUNT(*) FROM registrations WHERE visit_type='outpatient' AND status='valid' "
                                "AND reg_time BETWEEN '2025-03-03 00:00:00' AND '2025-03-03 23:59:59'")
    assert rows == [{"n": expected}] and expected > 100


def test_aware_datetimes_become_shanghai_wall_clock(his: HospitalData) -> None:
    naive = his.scalar(REPORT, "clinic", visit_type="emergency", start=datetime(2025, 3, 3, 8),
                       end=datetime(2025, 3, 3, 11, 59, 59, 999999))
    aware = his.scalar(REPORT, "clinic", visit_type="emergency", start=datetime(2025, 3, 3, 0, tzinfo=UTC),
                       end=datetime(2025, 3, 3, 3, 59, 59, tzinfo=UTC))
    assert naive == aware > 0
    assert his._param(date(2025, 3, 3)) == "2025-03-03"
    assert his._param(datetime(2025, 3, 3, 1, 2, 3, 456)) == "2025-03-03 01:02:03"


def test_rows_are_dicts_and_scalar(his: HospitalData) -> None:
    rt = RT("shangrao.fee_list_d", {"fees": "SELECT bkkp_sn, cnt, pric FROM insu_fee_items ORDER BY bkkp_sn LIMIT :n"})
    rows = his.query(rt, "fees", n=3)
    assert len(rows) == 3 and set(rows[0]) == {"bkkp_sn", "cnt", "pric"}
    assert his.scalar(REPORT, "patients") > 0
    assert his.scalar(RT("x", {"none": "SELECT 1 AS one WHERE 1 = 0"}), "none") is None


def test_override_wins_over_the_report_types_default(his_path: Path) -> None:
    data = HospitalData(str(his_path), {"keydata.hospital_daily:patients": "SELECT -1 AS n"})
    try:
        assert data.scalar(REPORT, "patients") == -1
        assert data.scalar(RT("other.type", {"patients": "SELECT 2 AS n"}), "patients") == 2
    finally:
        data.dispose()


def test_unknown_query_name_is_a_clear_error(his: HospitalData) -> None:
    with pytest.raises(HisQueryError) as err:
        his.query(REPORT, "nope")
    assert "keydata.hospital_daily" in str(err.value) and "nope" in str(err.value) and "clinic" in str(err.value)


@pytest.mark.parametrize("sql", [
    "UPDATE patients SET name = 'x'",
    "DELETE FROM patients",
    "ATTACH DATABASE '/tmp/evil.db' AS evil",
    "WITH x AS (SELECT 1) DELETE FROM patients",
    "SELECT 1; DELETE FROM patients",
    "INSERT INTO patients (patient_id) VALUES ('x')",
    "SELECT * INTO copy FROM patients",
    "PRAGMA query_only = OFF",
    "SELECT * FROM patients FOR UPDATE",
    "   ",
])
def test_refuses_anything_but_a_single_select(his: HospitalData, his_path: Path, sql: str) -> None:
    before = _count(his_path, "SELECT COUNT(*) FROM patients")
    with pytest.raises(HisQueryError) as err:
        his.query(RT("keydata.hospital_daily", {"evil": sql}), "evil")
    message = str(err.value)
    assert "keydata.hospital_daily" in message and "evil" in message
    assert _count(his_path, "SELECT COUNT(*) FROM patients") == before


def test_read_only_check_ignores_strings_comments_and_functions() -> None:
    assert check_read_only_sql("SELECT replace(name, 'a', 'b') AS n FROM patients") is None
    assert check_read_only_sql("/* delete */ SELECT 'update; drop' AS x -- insert\n FROM t;") is None
    assert check_read_only_sql("WITH a AS (SELECT 1 AS x) SELECT x FROM a") is None
    assert check_read_only_sql("SELECT t.set FROM t") is None
    assert check_read_only_sql("select 1 from t where updated_at > :since") is None
    assert check_read_only_sql("WITH a AS (SELECT 1) REPLACE INTO t VALUES (1)") is not None


def test_cannot_write_even_through_a_select_function(his: HospitalData, his_path: Path) -> None:
    """A SELECT passes the statement check; the function it calls tries to write: the connection refuses."""
    attempts: list[str] = []

    @event.listens_for(his.engine, "connect")
    def _register(dbapi_conn, _record) -> None:  # noqa: ANN001
        def evil() -> int:
            attempts.append("delete")
            dbapi_conn.execute("DELETE FROM patients")
            return 1

        dbapi_conn.create_function("evil", 0, evil)

    his.engine.dispose()  # the pool is shared per process: new connections get the function
    before = _count(his_path, "SELECT COUNT(*) FROM patients")
    with pytest.raises(HisQueryError) as err:
        his.query(RT("keydata.hospital_daily", {"trick": "SELECT evil() AS x"}), "trick")
    assert "trick" in str(err.value)
    assert attempts == ["delete"]
    assert _count(his_path, "SELECT COUNT(*) FROM patients") == before


def test_connection_is_read_only_without_the_statement_check(his: HospitalData, his_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hisdb, "check_read_only_sql", lambda sql: None)
    before = _count(his_path, "SELECT COUNT(*) FROM patients")
    with pytest.raises(HisQueryError, match="readonly|read-only|read only"):
        his.query(RT("keydata.hospital_daily", {"evil": "DELETE FROM patients"}), "evil")
    assert "mode=ro" in str(his.url)
    assert _count(his_path, "SELECT COUNT(*) FROM patients") == before


def test_database_errors_name_the_query(his: HospitalData) -> None:
    with pytest.raises(HisQueryError, match="keydata.hospital_daily.*broken"):
        his.query(RT("keydata.hospital_daily", {"broken": "SELECT no_such_column FROM patients"}), "broken")
    with pytest.raises(HisQueryError, match="clinic"):
        his.query(REPORT, "clinic", visit_type="outpatient")  # :start/:end missing


def test_url_forms(his_path: Path, tmp_path: Path) -> None:
    spaced = tmp_path / "院内 数据" / "his db.sqlite"
    spaced.parent.mkdir()
    spaced.write_bytes(his_path.read_bytes())
    for url in (str(spaced), f"sqlite:///{spaced}", f"sqlite:///file:{spaced}?mode=rw&uri=true"):
        data = HospitalData(url)
        try:
            assert "mode=ro" in str(data.url)
            assert data.scalar(REPORT, "patients") > 0
        finally:
            data.dispose()
    with pytest.raises(HisQueryError):
        HospitalData("sqlite://")
    missing = HospitalData(str(tmp_path / "missing.db"))
    with pytest.raises(HisQueryError):
        missing.scalar(REPORT, "patients")
    assert not (tmp_path / "missing.db").exists()


@pytest.mark.postgres
def test_postgres_runs_read_only_transactions() -> None:
    """Against TEST_DATABASE_URL, in a scratch schema (never touching Baosong's own tables)."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    base = os.environ["TEST_DATABASE_URL"]
    schema = "baosong_his_test"
    admin = create_engine(hisdb.with_installed_driver(make_url(base)))
    with admin.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    day = date.today() - timedelta(days=30)
    evil = RT("t", {"w": "WITH d AS (DELETE FROM patients RETURNING 1) SELECT COUNT(*) AS n FROM d"})
    try:
        generate(url.render_as_string(hide_password=False), start=day, end=day)
        data = HospitalData(url)
        try:
            before = data.scalar(REPORT, "patients")
            assert before > 0
            start = datetime.combine(day, datetime.min.time())
            assert data.scalar(REPORT, "clinic", visit_type="outpatient", start=start,
                               end=start + timedelta(days=1, seconds=-1)) > 0
            with pytest.raises(HisQueryError, match="DELETE"):
                data.query(evil, "w")
            original = hisdb.check_read_only_sql
            hisdb.check_read_only_sql = lambda sql: None
            try:
                with pytest.raises(HisQueryError, match="read-only"):
                    data.query(evil, "w")
            finally:
                hisdb.check_read_only_sql = original
            assert data.scalar(REPORT, "patients") == before
        finally:
            data.dispose()
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.dispose()
