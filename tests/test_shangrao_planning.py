"""Planning Shangrao batches from the demo hospital database: incremental extraction with a
(timestamp, id) watermark, field validation with hold-back, batch cutting, planned-through vs
accepted-through."""

from __future__ import annotations

import json
import shutil
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from test_shangrao_support import configure_sandbox, faults, records, upload

from core import ledger, pipeline
from core.db import db
from core.models import HeldBack, Upload, UploadStatus
from core.plugins import registry
from core.scheduler import run_slot
from core.settings import regulator_settings, save_regulator_setting
from demo.hospital import generate
from plugins.shangrao_insurance import common, extraction, queries

SHANGHAI = ZoneInfo("Asia/Shanghai")
DAY = date(2025, 3, 3)
AFTER_DAY = datetime(2025, 3, 5, 0, 0, tzinfo=SHANGHAI)


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory):
    path = tmp_path_factory.mktemp("shangrao-hospital") / "hospital.db"
    generate(f"sqlite:///{path}", start=DAY, end=DAY, now=datetime(2025, 3, 4, 0, 0))
    return path


@pytest.fixture
def hospital(demo_db, tmp_path, monkeypatch):
    """A private copy of the demo hospital for one test (tests change rows in it)."""
    path = tmp_path / "hospital.db"
    shutil.copy(demo_db, path)
    url = f"sqlite:///{path}"
    monkeypatch.setenv("HIS_DATABASE_URL", url)
    engine = sa.create_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture
def sandbox(app, serve):
    return configure_sandbox(serve)


def source_keys(engine, service: str, until: str = "2099-01-01 00:00:00") -> list[str]:
    """What the default query selects, straight from the hospital database, in watermark order."""
    sql = queries.DEFAULT_QUERIES[service]
    with engine.connect() as conn:
        rows = conn.execute(sa.text(sql), {"after_ts": extraction.START_TS, "after_id": None, "until": until,
                                           "limit": 10**9}).mappings().all()
    return [row["_wm_id"] for row in rows]


def planned(service: str) -> list[Upload]:
    db.session.expire_all()
    return list(db.session.execute(sa.select(Upload).where(Upload.report_type == f"shangrao.{service}")
                                   .order_by(Upload.id)).scalars())


def planned_keys(service: str) -> list[str]:
    key = common.KEY_FIELDS[service]
    return [row[key] for u in planned(service) for row in u.rows]


def setting(key: str, value: str) -> None:
    save_regulator_setting("shangrao_insurance", key, value)
    db.session.commit()


def test_a_slot_plans_every_changed_row_once_in_watermark_order(hospital, sandbox):
    ids = run_slot("shangrao.setl_d", AFTER_DAY, enqueue=False)

    expected = source_keys(hospital, "setl_d")
    assert len(expected) > 50
    assert planned_keys("setl_d") == expected
    uploads = planned("setl_d")
    assert [u.id for u in uploads] == ids
    assert all(u.idempotency_key.startswith("H36110200001") and len(u.idempotency_key) == 36 for u in uploads)
    assert len({u.idempotency_key for u in uploads}) == len(uploads)
    mark = extraction.Position.parse(ledger.watermark("shangrao.setl_d.planned"))
    assert mark.key == expected[-1]
    # Nothing changed: the next slot plans nothing.
    assert run_slot("shangrao.setl_d", AFTER_DAY.replace(minute=10), enqueue=False) == []


def test_a_row_changed_in_the_hospital_is_planned_again_and_nothing_else(hospital, sandbox):
    run_slot("shangrao.setl_d", AFTER_DAY, enqueue=False)
    before = len(planned_keys("setl_d"))
    target = source_keys(hospital, "setl_d")[3]
    with hospital.begin() as conn:
        conn.execute(sa.text("UPDATE insu_settlements SET psn_pay = psn_pay + 1, acct_pay = 0, "
                             "updated_at = '2025-03-05 00:05:00' WHERE setl_id = :id"), {"id": target})

    run_slot("shangrao.setl_d", AFTER_DAY.replace(minute=10), enqueue=False)

    keys = planned_keys("setl_d")
    assert len(keys) == before + 1 and keys[-1] == target


def test_only_rows_up_to_the_slot_time_are_planned(hospital, sandbox):
    slot = datetime(2025, 3, 3, 12, 0, tzinfo=SHANGHAI)
    run_slot("shangrao.mdtrt_d", slot, enqueue=False)
    assert planned_keys("mdtrt_d") == source_keys(hospital, "mdtrt_d", until="2025-03-03 12:00:00")
    run_slot("shangrao.mdtrt_d", AFTER_DAY, enqueue=False)
    assert planned_keys("mdtrt_d") == source_keys(hospital, "mdtrt_d")


def test_the_first_run_starts_after_the_configured_go_live_time(hospital, sandbox):
    setting("initial_since", "2025-03-03 12:00:00")
    run_slot("shangrao.mdtrt_d", AFTER_DAY, enqueue=False)
    everything = source_keys(hospital, "mdtrt_d")
    before = source_keys(hospital, "mdtrt_d", until="2025-03-03 12:00:00")
    assert before and planned_keys("mdtrt_d") == everything[len(before):]


def test_rows_with_equal_timestamps_are_never_skipped_across_runs(hospital, sandbox):
    # Many rows share one timestamp and each run stops in the middle of them.
    with hospital.begin() as conn:
        conn.execute(sa.text("UPDATE insu_settlements SET updated_at = '2025-03-03 10:00:00' "
                             "WHERE updated_at BETWEEN '2025-03-03 08:00:00' AND '2025-03-03 12:00:00'"))
    setting("max_rows_per_run", "7")
    expected = source_keys(hospital, "setl_d")
    slot = AFTER_DAY
    for minute in range(0, 10 * (len(expected) // 7 + 2), 10):
        run_slot("shangrao.setl_d", slot.replace(hour=minute // 60, minute=minute % 60), enqueue=False)
    assert planned_keys("setl_d") == expected


def test_invalid_rows_are_held_back_with_field_and_reason_and_the_others_go_on(hospital, sandbox):
    keys = source_keys(hospital, "fee_list_d")
    bad = {keys[0]: "cnt = 1.23456", keys[1]: "pric = 0.1234567", keys[2]: "det_item_fee_sumamt = 12.345",
           keys[3]: "fee_ocur_time = '2025/03/03 10:00:00'", keys[4]: "rx_drord_no = '" + "R" * 31 + "'",
           keys[5]: "det_item_fee_sumamt = 12345678901234567"}
    with hospital.begin() as conn:
        for key, change in bad.items():
            conn.execute(sa.text(f"UPDATE insu_fee_items SET {change} WHERE bkkp_sn = :id"), {"id": key})

    run_slot("shangrao.fee_list_d", AFTER_DAY, enqueue=False)

    assert planned_keys("fee_list_d") == [k for k in keys if k not in bad]
    held = {h.record_key: h for h in db.session.execute(sa.select(HeldBack)).scalars()}
    assert set(held) == set(bad)
    reasons = {key: (h.field, h.reason) for key, h in held.items()}
    assert reasons[keys[0]] == ("CNT", "1.23456 小数部分 5 位，超过 decimal(16,4) 允许的 4 位")
    assert reasons[keys[1]][0] == "PRIC" and "decimal(16,6)" in reasons[keys[1]][1]
    assert reasons[keys[2]][0] == "DET_ITEM_FEE_SUMAMT" and "decimal(16,2)" in reasons[keys[2]][1]
    assert reasons[keys[3]] == ("FEE_OCUR_TIME", '"2025/03/03 10:00:00" 不符合格式 yyyy-MM-dd HH:mm:ss')
    assert reasons[keys[4]] == ("RX_DRORD_NO", "长度 31 超过最大长度 30")
    assert reasons[keys[5]][0] == "DET_ITEM_FEE_SUMAMT" and "整数部分" in reasons[keys[5]][1]
    # The watermark passed them: they come back only when the hospital changes them.
    assert run_slot("shangrao.fee_list_d", AFTER_DAY.replace(minute=10), enqueue=False) == []


def test_when_every_row_read_is_held_back_the_problems_are_kept_and_the_watermark_moves(hospital, sandbox):
    with hospital.begin() as conn:
        conn.execute(sa.text("UPDATE insu_settlements SET age = 1234.5"))
    expected = source_keys(hospital, "setl_d")

    assert run_slot("shangrao.setl_d", AFTER_DAY, enqueue=False) == []

    assert planned("setl_d") == []
    held = list(db.session.execute(sa.select(HeldBack)).scalars())
    assert sorted(h.record_key for h in held) == sorted(expected)
    assert {(h.field, h.reason) for h in held} == {("AGE", "1234.5 整数部分 4 位，超过 decimal(4,1) 允许的 3 位")}
    assert extraction.Position.parse(ledger.watermark("shangrao.setl_d.planned")).key == expected[-1]
    assert run_slot("shangrao.setl_d", AFTER_DAY.replace(minute=10), enqueue=False) == []
    assert db.session.scalar(sa.select(sa.func.count(HeldBack.id))) == len(expected)


def test_settlement_and_visit_fields_are_checked_by_type(hospital, sandbox):
    setl = source_keys(hospital, "setl_d")
    visits = source_keys(hospital, "mdtrt_d")
    with hospital.begin() as conn:
        conn.execute(sa.text("UPDATE insu_settlements SET pool_prop_selfpay = 12.5 WHERE setl_id = :id"),
                     {"id": setl[0]})
        conn.execute(sa.text("UPDATE insu_settlements SET age = 123.45 WHERE setl_id = :id"), {"id": setl[1]})
        conn.execute(sa.text("UPDATE patients SET birth_date = '1990-2-30' WHERE patient_id = "
                             "(SELECT patient_id FROM insu_settlements WHERE setl_id = :id)"), {"id": setl[2]})
        conn.execute(sa.text("UPDATE insu_visits SET insutype = NULL WHERE mdtrt_id = :id"), {"id": visits[0]})
        conn.execute(sa.text("UPDATE insu_visits SET hosp_lv = '1234567' WHERE mdtrt_id = :id"), {"id": visits[1]})

    run_slot("shangrao.setl_d", AFTER_DAY, enqueue=False)
    run_slot("shangrao.mdtrt_d", AFTER_DAY, enqueue=False)

    held = {(h.report_type, h.record_key): (h.field, h.reason) for h in db.session.execute(sa.select(HeldBack))
            .scalars()}
    assert held[("shangrao.setl_d", setl[0])] == ("POOL_PROP_SELFPAY", "12.5 整数部分 2 位，超过 decimal(5,4) 允许的 1 位")
    assert held[("shangrao.setl_d", setl[1])][0] == "AGE" and "decimal(4,1)" in held[("shangrao.setl_d", setl[1])][1]
    field, reason = held[("shangrao.setl_d", setl[2])]
    assert field == "BRDY" and "1990" not in reason  # a patient field: its value is never quoted
    assert held[("shangrao.mdtrt_d", visits[0])] == ("INSUTYPE", "必填字段缺失")
    assert held[("shangrao.mdtrt_d", visits[1])] == ("HOSP_LV", "长度 7 超过最大长度 6")


def test_code_values_are_checked_when_the_code_dictionaries_are_supplied(hospital, sandbox, tmp_path):
    path = tmp_path / "dictionaries.json"
    path.write_text(json.dumps({"PAY_LOC": {"2": "本地", "3": "省内异地"}}), "utf-8")  # no 4 (跨省异地)
    setting("dictionaries_path", str(path))
    run_slot("shangrao.fee_list_d", AFTER_DAY, enqueue=False)
    held = list(db.session.execute(sa.select(HeldBack)).scalars())
    assert held and all(h.field == "PAY_LOC" and "不在代码字典 PAY_LOC 中" in h.reason for h in held)


def test_a_smaller_max_data_chars_cuts_smaller_batches_and_holds_back_a_row_too_big_alone(hospital, app, serve):
    sandbox = configure_sandbox(serve, max_data_chars="10000")
    strict = registry().sandboxes["shangrao"].make_app({**sandbox.config, "max_data_chars": 10000})
    setting("base_url", serve(strict))  # the regulator enforces the same smaller limit
    keys = source_keys(hospital, "mdtrt_d")
    huge = keys[10]
    with hospital.begin() as conn:  # valid (1000 characters each) but 6,000 bytes more than a usual visit
        conn.execute(sa.text("UPDATE insu_visits SET main_cond_dscr = :text, memo = :text WHERE mdtrt_id = :id"),
                     {"text": "病" * 1000, "id": huge})

    run_slot("shangrao.mdtrt_d", AFTER_DAY, enqueue=False)

    uploads = planned("mdtrt_d")
    assert [r["MDTRT_ID"] for u in uploads for r in u.rows] == [k for k in keys if k != huge]
    assert max(len(u.rows) for u in uploads) >= 2  # several rows per batch, fewer than with 50,000
    [held] = db.session.execute(sa.select(HeldBack)).scalars()
    assert held.record_key == huge and held.field is None and "超过上限 10000 字符" in held.reason
    profile = common.sm2_profile(regulator_settings("shangrao_insurance"))
    for item, following in zip(uploads, uploads[1:], strict=False):
        size = common.ciphertext_chars(len(common.encode_rows(item.rows)), profile)
        assert size <= 10000
        assert common.ciphertext_chars(len(common.encode_rows(item.rows + following.rows[:1])), profile) > 10000
    for item in uploads[:5]:  # the real ciphertext agrees, and the regulator accepts it
        assert pipeline.attempt(item.id, 0) == UploadStatus.SUCCEEDED
        [attempt] = upload(item.id).attempt_list
        assert len(json.loads(attempt.wire_body)["data"]) <= 10000


def test_planned_through_runs_ahead_and_accepted_through_stops_at_a_rejected_batch(hospital, sandbox):
    setting("max_data_chars", "15000")
    run_slot("shangrao.setl_d", AFTER_DAY, enqueue=False)
    uploads = planned("setl_d")
    assert len(uploads) >= 4
    settings = regulator_settings("shangrao_insurance")
    assert extraction.accepted_through("setl_d", settings) is None

    assert pipeline.attempt(uploads[0].id, 0) == UploadStatus.SUCCEEDED
    faults(sandbox.url, reject_field="SETL_ID")
    assert pipeline.attempt(uploads[1].id, 0) == UploadStatus.REJECTED
    faults(sandbox.url, reset=True)
    for item in uploads[2:]:
        assert pipeline.attempt(item.id, 0) == UploadStatus.SUCCEEDED

    first_end = extraction.batch_end(uploads[0].business_key)
    assert extraction.accepted_through("setl_d", settings) == first_end
    view = extraction.progress("setl_d", settings)
    assert view["accepted_through"] == first_end.ts and view["rejected_batches"] == 1
    assert view["planned_through"] == extraction.batch_end(uploads[-1].business_key).ts
    # The rejected batch's rows are not lost: they are in the upload, and were not received.
    rejected = upload(uploads[1].id)
    received = set(records(sandbox.url, "setl_d", keys=1)["keys"])
    assert rejected.rows and not {r["SETL_ID"] for r in rejected.rows} & received

    ledger.mark_for_manual_retry(rejected)
    db.session.commit()
    assert pipeline.attempt(rejected.id, 1) == UploadStatus.SUCCEEDED
    assert extraction.accepted_through("setl_d", settings) == extraction.batch_end(uploads[-1].business_key)
    assert sorted(records(sandbox.url, "setl_d", keys=1)["keys"]) == sorted(source_keys(hospital, "setl_d"))


def test_planning_the_same_rows_again_gives_the_same_batches_and_records_nothing_new(hospital, sandbox):
    report_type = registry().report_type("shangrao.setl_d")
    settings = regulator_settings("shangrao_insurance")
    from core.scheduler import hospital_data

    first = extraction.plan(report_type, AFTER_DAY, hospital_data(), settings)
    again = extraction.plan(report_type, AFTER_DAY, hospital_data(), settings)
    assert [p.business_key for p in first] == [p.business_key for p in again]
    assert len(ledger.record_plans(report_type, first)) == len(first)
    assert ledger.record_plans(report_type, again) == []  # a duplicate planning run adds nothing


def test_planning_refuses_until_the_settings_are_complete(hospital, app):
    from core.models import Slot

    with pytest.raises(Exception, match="infno_fee_list_d"):
        run_slot("shangrao.fee_list_d", AFTER_DAY, enqueue=False)
    [slot] = db.session.execute(sa.select(Slot)).scalars()
    assert slot.status == "error" and "上饶医保监管设置不完整" in slot.message
    assert ledger.watermark("shangrao.fee_list_d.planned") == ""
