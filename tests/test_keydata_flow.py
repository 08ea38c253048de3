"""The key-data plugin end to end: the demo hospital database, the sandbox regulator on a real HTTP
server, the ledger, the pipeline and (for the day-long run) a real RQ worker."""

from __future__ import annotations

import sqlite3
from datetime import date, datetime
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
import requests
import sqlalchemy as sa

from core import clock, ledger, pipeline
from core.db import db
from core.hook_types import UploadPlan
from core.models import Attempt, HeldBack, Upload, UploadStatus
from core.plugins import Registry, make_plugin_manager, registry, use_registry
from core.scheduler import backfill, run_slot
from core.settings import save_regulator_setting
from plugins.keydata import models, plugin, sandbox, spec
from plugins.keydata.demo_seed import DEMO_MAPPING

SHANGHAI = ZoneInfo("Asia/Shanghai")
HOURLY = "keydata.hospital_daily"
DEPT = "keydata.dept_daily"
MONTHLY = "keydata.monthly"


def at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=SHANGHAI)


@pytest.fixture(autouse=True)
def keydata_registry():
    """Only this plugin (the others are built by other people at the same time); installed before `app`."""
    use_registry(Registry(make_plugin_manager([plugin], entry_points_too=False)))
    yield
    use_registry(None)


@pytest.fixture(scope="module")
def his_url(tmp_path_factory):
    """The demo hospital, 2025-01-30 .. 2025-02-02 (a month end inside), read-only for every test."""
    from demo.hospital import generate

    path = tmp_path_factory.mktemp("his") / "his.db"
    generate(f"sqlite:///{path}", start=date(2025, 1, 30), end=date(2025, 2, 2))
    return path


@pytest.fixture
def keydata(app, his_url, serve, monkeypatch):
    """Settings from the sandbox's demo_config, the sandbox served, the demo mapping seeded."""
    monkeypatch.setenv("HIS_DATABASE_URL", f"sqlite:///{his_url}")
    sandbox_config: dict = {}
    regulator = sandbox.make_app(sandbox_config)  # reads its config per request: tests may change it
    url = serve(regulator)
    client, own = sandbox.demo_config(url)
    sandbox_config.update(own)
    settings = dict(client["keydata"])
    for key, value in settings.items():
        save_regulator_setting("keydata", key, value)
    db.session.commit()
    sandbox.seed()
    return SimpleNamespace(url=url, config=sandbox_config, settings=settings, his=his_url)


def setting(key: str, value: str) -> None:
    save_regulator_setting("keydata", key, value)
    db.session.commit()


def held(kd, **query) -> list[dict]:
    return requests.get(f"{kd.url}/_sandbox/records", params=query, timeout=5).json()["records"]


def faults(kd, **wanted) -> None:
    requests.post(f"{kd.url}/_sandbox/faults", json=wanted, timeout=5).raise_for_status()


def his(kd, sql: str, *params) -> int:
    with sqlite3.connect(kd.his) as conn:
        return conn.execute(sql, params).fetchone()[0]


def upload(upload_id: int) -> Upload:
    db.session.expire_all()
    return db.session.get(Upload, upload_id)


# --- hourly: statDate, figures, what the regulator holds ------------------------------------------

def test_an_hourly_slot_sends_its_stat_date_and_the_days_figures_so_far(keydata):
    [upload_id] = run_slot(HOURLY, at(2025, 1, 31, 8, 0), enqueue=False)
    assert pipeline.attempt(upload_id, 0) == UploadStatus.SUCCEEDED

    sent = upload(upload_id)
    assert (sent.period, sent.business_key) == ("2025/01/31 07:59:59", "2025/01/31 07:59:59")
    [record] = held(keydata, report="hospital_daily")
    clinic = his(keydata, "SELECT COUNT(*) FROM registrations WHERE visit_type='outpatient' AND status='valid' "
                          "AND reg_time BETWEEN '2025-01-31 00:00:00' AND '2025-01-31 07:59:59'")
    assert clinic > 0
    assert record["clinicPersonTimes"] == clinic
    assert record["statDate"] == "2025/01/31 07:59:59" and record["dataFlag"] == "1"
    assert record["orgCode"] == keydata.settings["org_code"] and "totalPersonTimes" not in record
    attempt = db.session.execute(sa.select(Attempt).filter_by(upload_id=upload_id)).scalar_one()
    assert keydata.settings["auth_code"] not in str(attempt.headers)  # masked in the ledger
    assert "clinicPersonTimes" in attempt.plaintext and "clinicPersonTimes" not in attempt.wire_body


def test_the_midnight_run_sends_yesterday_whole_and_a_late_manual_run_floors_to_the_hour(keydata):
    clock.freeze(at(2025, 2, 2, 15, 0))  # "now" is irrelevant: the period comes from the slot
    [midnight] = run_slot(HOURLY, at(2025, 2, 1, 0, 0), enqueue=False)
    [manual] = run_slot(HOURLY, at(2025, 1, 31, 8, 30), "manual", enqueue=False)
    assert upload(midnight).period == "2025/01/31 23:59:59"
    assert upload(manual).period == "2025/01/31 07:59:59"
    whole_day = his(keydata, "SELECT COUNT(*) FROM prescriptions WHERE status='valid' "
                             "AND rx_time >= '2025-01-31 00:00:00' AND rx_time < '2025-02-01 00:00:00'")
    assert upload(midnight).rows[0]["presCount"] == whole_day


def test_total_person_times_is_collected_and_sent_when_switched_on(keydata):
    setting("send_total_person_times", "1")
    [upload_id] = run_slot(HOURLY, at(2025, 1, 31, 12, 0), enqueue=False)
    assert pipeline.attempt(upload_id, 0) == UploadStatus.SUCCEEDED
    [record] = held(keydata, report="hospital_daily")
    assert record["totalPersonTimes"] >= record["clinicPersonTimes"] + record["emerPersonTimes"] > 0


def test_a_hospitals_own_sql_replaces_a_default_query_without_code_changes(keydata):
    from core.models import ReportQuery

    db.session.add(ReportQuery(report_type=HOURLY, name="presCount",
                               sql="SELECT COUNT(*) * 0 + 42 AS value FROM registrations WHERE reg_time < :end"))
    db.session.commit()
    [upload_id] = run_slot(HOURLY, at(2025, 1, 31, 8, 0), enqueue=False)
    assert upload(upload_id).rows[0]["presCount"] == 42


# --- dataFlag: 1, re-send after an unknown outcome 2, manual correction 2, withdraw 3 -----------------

def test_data_flag_transitions_and_what_the_regulator_holds(keydata):
    setting("timeout", "0.5")
    faults(keydata, timeout_seconds=1.2, count=1)  # the regulator keeps the record, answers too late
    [upload_id] = run_slot(HOURLY, at(2025, 1, 31, 9, 0), enqueue=False)
    stat_date = "2025/01/31 08:59:59"

    assert pipeline.attempt(upload_id, 0) == UploadStatus.RETRY_WAIT
    assert upload(upload_id).delivery_uncertain
    [first] = held(keydata, statDate=stat_date)
    assert first["dataFlag"] == "1"

    # The automatic retry must not be a second "new" (the regulator would answer 重复): dataFlag 2.
    assert pipeline.attempt(upload_id, 1) == UploadStatus.SUCCEEDED
    [again] = held(keydata, statDate=stat_date)
    assert again["dataFlag"] == "2"
    [attempt_1, attempt_2] = upload(upload_id).attempt_list
    assert (attempt_1.resend, attempt_2.resend) == (False, True)

    # An admin re-sends corrected figures for the same statDate.
    update_id = plugin.resend_update(upload_id, "admin")
    update = upload(update_id)
    assert (update.business_key, update.operation, update.period) == (f"{stat_date}#update-1", "update", stat_date)
    assert update.created_by == "admin"
    assert pipeline.attempt(update_id, 0) == UploadStatus.SUCCEEDED
    [corrected] = held(keydata, statDate=stat_date)
    assert corrected["dataFlag"] == "2"
    assert upload(plugin.resend_update(upload_id, "admin")).business_key == f"{stat_date}#update-2"

    # Withdrawn: the regulator holds nothing for that statDate any more.
    withdraw_id = plugin.withdraw(update_id, "admin")
    withdrawal = upload(withdraw_id)
    assert (withdrawal.business_key, withdrawal.operation) == (f"{stat_date}#delete-1", "delete")
    assert pipeline.attempt(withdraw_id, 0) == UploadStatus.SUCCEEDED
    assert held(keydata, statDate=stat_date) == []
    flags = [r["dataFlag"] for r in requests.get(f"{keydata.url}/_sandbox/requests", timeout=5).json()["requests"]]
    assert flags == ["1", "2", "2", "3"]


def test_a_second_upload_of_a_held_stat_date_updates_it_instead_of_ending_as_a_duplicate(keydata):
    [upload_id] = run_slot(HOURLY, at(2025, 1, 31, 10, 0), enqueue=False)
    assert pipeline.attempt(upload_id, 0) == UploadStatus.SUCCEEDED
    # Another upload of the same statDate (a re-planned slot): its first, certain "new" finds the record
    # held; the platform's 重复 is followed at once by an update with this upload's figures.
    [again] = ledger.record_plans(registry().report_type(HOURLY), [UploadPlan(
        business_key="2025/01/31 09:59:59#again", period="2025/01/31 09:59:59", rows=upload(upload_id).rows)])
    assert pipeline.attempt(again, 0) == UploadStatus.SUCCEEDED
    first, second = upload(again).attempt_list
    assert (first.operation_sent, first.code, first.outcome) == ("new", "409", "retry")
    assert (second.operation_sent, second.outcome) == ("update", "success")
    assert len(held(keydata, statDate="2025/01/31 09:59:59")) == 1


# --- SM4 profiles and wrong keys --------------------------------------------------------------------

@pytest.mark.parametrize("profile", [
    {"sm4_mode": "CBC", "sm4_key_format": "hex", "sm4_output": "base64", "body_wrapping": "json_field",
     "wrap_field": "encryptData"},
    {"sm4_mode": "ECB", "sm4_padding": "zero", "sm4_output": "HEX", "body_wrapping": "raw"},
])
def test_a_configured_profile_is_used_end_to_end(keydata, profile):
    keydata.config.update(profile)
    for key, value in profile.items():
        setting(key, value)
    [upload_id] = run_slot(HOURLY, at(2025, 1, 31, 11, 0), enqueue=False)
    assert pipeline.attempt(upload_id, 0) == UploadStatus.SUCCEEDED
    assert len(held(keydata, statDate="2025/01/31 10:59:59")) == 1
    wire = upload(upload_id).attempt_list[0].wire_body
    assert ("encryptData" in wire) == (profile["body_wrapping"] == "json_field")


def test_a_wrong_key_or_profile_is_recorded_as_a_rejection_with_the_regulators_message(keydata):
    setting("sm4_key", "00112233445566778899aabbccddeeff")
    [upload_id] = run_slot(HOURLY, at(2025, 1, 31, 12, 0), enqueue=False)
    assert pipeline.attempt(upload_id, 0) == UploadStatus.REJECTED
    rejected = upload(upload_id)
    assert rejected.last_code == "400" and rejected.last_message.startswith("解密失败")
    assert rejected.next_retry_at is None

    setting("sm4_key", keydata.settings["sm4_key"])
    setting("body_wrapping", "json_field")  # the regulator expects the raw ciphertext
    [other] = run_slot(HOURLY, at(2025, 1, 31, 13, 0), enqueue=False)
    assert pipeline.attempt(other, 0) == UploadStatus.REJECTED
    assert upload(other).last_message.startswith("解密失败")

    setting("body_wrapping", "raw")
    setting("auth_code", "not-the-code")
    [third] = run_slot(HOURLY, at(2025, 1, 31, 14, 0), enqueue=False)
    assert pipeline.attempt(third, 0) == UploadStatus.REJECTED
    assert upload(third).last_code == "401"
    assert held(keydata) == []


# --- regulator failures: rejections, retries ----------------------------------------------------------

def test_a_field_rejected_by_the_regulator_is_recorded_with_its_message(keydata):
    faults(keydata, reject_field="presCount")
    [upload_id] = run_slot(HOURLY, at(2025, 1, 31, 15, 0), enqueue=False)
    assert pipeline.attempt(upload_id, 0) == UploadStatus.REJECTED
    assert "presCount 字段值不合法" in upload(upload_id).last_message


@pytest.mark.parametrize("fault", [{"error_rate": 1.0, "status": 503}, {"non_json": True}])
def test_server_errors_and_non_json_answers_are_retried(keydata, fault):
    faults(keydata, **fault, count=1)
    [upload_id] = run_slot(HOURLY, at(2025, 1, 31, 16, 0), enqueue=False)
    assert pipeline.attempt(upload_id, 0) == UploadStatus.RETRY_WAIT
    assert pipeline.attempt(upload_id, 1) == UploadStatus.SUCCEEDED
    [record] = held(keydata, statDate="2025/01/31 15:59:59")
    assert record["dataFlag"] == "2"  # the first answer said nothing certain: re-sent as an update


# --- departments: mapping, hold-back --------------------------------------------------------------

def test_mapped_departments_are_sent_with_national_codes_and_unmapped_ones_are_held_back(keydata):
    ids = run_slot(DEPT, at(2025, 1, 31, 10, 0), enqueue=False)
    visited = {code: n for code, n in sqlite3.connect(keydata.his).execute(
        "SELECT dept_code, COUNT(*) FROM registrations WHERE status='valid' AND visit_type<>'checkup' "
        "AND reg_time >= '2025-01-31 00:00:00' AND reg_time < '2025-01-31 10:00:00' GROUP BY dept_code")}
    mapped = {c for c in visited if c in DEMO_MAPPING}
    unmapped = set(visited) - mapped
    assert mapped and unmapped
    assert len(ids) == len(mapped)
    for upload_id in ids:
        assert pipeline.attempt(upload_id, 0) == UploadStatus.SUCCEEDED

    national = spec.dictionary_file_codes()
    records = held(keydata, report="dept_daily", statDate="2025/01/31 09:59:59")
    assert {r["departNoExp"] for r in records} == mapped
    for record in records:
        assert record["departNo"] == DEMO_MAPPING[record["departNoExp"]]
        assert record["departName"] == national[record["departNo"]]
        assert record["personTimes"] == visited[record["departNoExp"]]
    held_back = db.session.execute(sa.select(HeldBack).filter_by(report_type=DEPT)).scalars().all()
    assert {h.record_key for h in held_back} == unmapped
    assert all("尚未对照" in h.reason and h.field == "departNo" for h in held_back)

    # Mapped later: the next hour sends it.
    code = sorted(unmapped)[0]
    models.set_mapping(code, "x", "A03.07", "admin")
    db.session.commit()
    later = run_slot(DEPT, at(2025, 1, 31, 11, 0), enqueue=False)
    assert code in {upload(i).department for i in later}


def test_a_mapping_to_an_unknown_code_is_refused(app):
    from core.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="A99"):
        models.set_mapping("0105", "内分泌代谢科", "A99", "admin")


def test_department_resend_keeps_the_department_and_its_stat_date(keydata):
    ids = run_slot(DEPT, at(2025, 1, 31, 12, 0), enqueue=False)
    first = upload(ids[0])
    assert pipeline.attempt(first.id, 0) == UploadStatus.SUCCEEDED
    update_id = plugin.resend_update(first.id, "admin")
    update = upload(update_id)
    assert update.business_key == f"2025/01/31 11:59:59#{first.department}#update-1"
    assert update.department == first.department and update.rows == first.rows
    assert pipeline.attempt(update_id, 0) == UploadStatus.SUCCEEDED
    [record] = held(keydata, report="dept_daily", departNoExp=first.department)
    assert record["dataFlag"] == "2"


# --- the dictionary in the database -----------------------------------------------------------------

def test_the_dictionary_is_loaded_once_and_registered_with_the_core(keydata):
    models.ensure_setup()
    models.ensure_setup()
    count = db.session.scalar(sa.select(sa.func.count()).select_from(models.KeydataNationalDepartment))
    assert count == len(spec.dictionary_entries()) == 222
    assert pipeline.dictionary_codes("CT08.00.002") == spec.dictionary_file_codes()
    a0304 = db.session.get(models.KeydataNationalDepartment, "A03.04")
    assert (a0304.name, a0304.parent) == ("心血管内科专业", "A03")
    mapped = models.mappings()
    assert 0.6 <= sum(1 for m in mapped.values() if m.national_code) / 35 <= 0.7


# --- monthly ------------------------------------------------------------------------------------------

def test_the_monthly_run_sends_last_month_with_the_hospitals_level(keydata):
    [upload_id] = run_slot(MONTHLY, at(2025, 2, 1, 0, 0), enqueue=False)
    assert pipeline.attempt(upload_id, 0) == UploadStatus.SUCCEEDED
    [record] = held(keydata, report="monthly")
    assert record["statDate"] == "2025/01/31 23:59:59"
    assert "surgGrade4Prop" in record and "surgGrade3Prop" not in record  # demo settings: tertiary
    total = his(keydata, "SELECT COUNT(DISTINCT s.adm_id) FROM surgeries s JOIN discharges d ON d.adm_id=s.adm_id "
                         "WHERE d.discharge_time >= '2025-01-01 00:00:00' AND d.discharge_time < '2025-02-01 00:00:00'")
    assert record["surgTotalNum"] == total
    if total:
        assert record["surgGrade4Prop"] == round(record["surgGrade4Num"] / total, 4)
    nursing = his(keydata, "SELECT COUNT(*) FROM beds WHERE bed_type='nursing' AND opened_on <= '2025-01-31' "
                           "AND (closed_on IS NULL OR closed_on > '2025-01-31')")
    assert record["nursbedNum"] == nursing > 0


def test_a_monthly_report_without_a_hospital_level_is_refused_before_sending(keydata):
    setting("hospital_level", "")
    [upload_id] = run_slot(MONTHLY, at(2025, 2, 1, 0, 0), enqueue=False)
    assert pipeline.attempt(upload_id, 0) == UploadStatus.REJECTED
    assert "医院等级" in upload(upload_id).last_message
    assert upload(upload_id).attempt_list[0].url is None  # nothing was sent
    assert held(keydata) == []


# --- a whole day, the month end, by back-fill and a real worker -------------------------------------

@pytest.mark.slow
def test_a_day_of_hourly_runs_and_the_month_end_report_by_backfill(keydata, work):
    clock.freeze(at(2025, 2, 20, 9, 0))
    assert backfill(HOURLY, at(2025, 1, 31, 1, 0), at(2025, 2, 1, 0, 0)) == 24
    assert backfill(MONTHLY, at(2025, 1, 15), at(2025, 2, 10)) == 1
    assert backfill(HOURLY, at(2025, 1, 31, 1, 0), at(2025, 2, 1, 0, 0)) == 0  # already planned
    work()

    uploads = db.session.execute(sa.select(Upload)).scalars().all()
    assert len(uploads) == 25 and all(u.status == UploadStatus.SUCCEEDED for u in uploads)
    expected = {f"2025/01/31 {h:02d}:59:59" for h in range(24)}
    daily = held(keydata, report="hospital_daily")
    assert {r["statDate"] for r in daily} == expected and len(daily) == 24
    assert all(r["dataFlag"] == "1" for r in daily)
    by_date = {u.period: u.rows[0] for u in uploads if u.report_type == HOURLY}
    for record in daily:
        assert {k: record[k] for k in spec.HOSPITAL_DAILY_FIELDS} == by_date[record["statDate"]]
    # cumulative from 00:00: never decreasing through the day, the last one is the whole day
    clinic = [r["clinicPersonTimes"] for r in sorted(daily, key=lambda r: r["statDate"])]
    assert clinic == sorted(clinic)
    assert clinic[-1] == his(keydata, "SELECT COUNT(*) FROM registrations WHERE visit_type='outpatient' "
                                      "AND status='valid' AND reg_time LIKE '2025-01-31%'")
    [monthly] = held(keydata, report="monthly")
    assert monthly["statDate"] == "2025/01/31 23:59:59"


# --- `baosong sandbox`: every sandbox under one server ------------------------------------------------

def test_the_combined_sandbox_server_serves_keydata(app, his_url, serve, monkeypatch):
    from core.sandbox import combined_app

    monkeypatch.setenv("HIS_DATABASE_URL", f"sqlite:///{his_url}")
    configs: dict = {"keydata": {}}
    url = serve(combined_app(configs))
    client, own = sandbox.demo_config(f"{url}/keydata")
    configs["keydata"].update(own)  # the sandbox reads its config per request
    for key, value in client["keydata"].items():
        save_regulator_setting("keydata", key, value)
    db.session.commit()

    assert requests.get(url, timeout=5).json() == {"sandboxes": ["/keydata"]}
    [upload_id] = run_slot(HOURLY, at(2025, 1, 31, 8, 0), enqueue=False)
    assert pipeline.attempt(upload_id, 0) == UploadStatus.SUCCEEDED
    records = requests.get(f"{url}/keydata/_sandbox/records", timeout=5).json()["records"]
    assert [r["statDate"] for r in records] == ["2025/01/31 07:59:59"]
