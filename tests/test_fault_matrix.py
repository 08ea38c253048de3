"""Delivery that holds: every plugin against its sandbox under every reading the documents leave open
and every fault the network or the regulator can throw, asserted from the sandbox's own records —
every planned record stored exactly once, nothing stored twice, no upload final-rejected while the
sandbox holds its data, nothing stuck.

A fault strikes the first attempt (``count`` 1) or the first two (``count`` 2: the re-send is hit
too); the uploads are then driven to a final state with the pipeline, as the retries would."""

from __future__ import annotations

import itertools
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import requests
from conftest import configure_keydata_sandbox

from core import pipeline
from core.db import db
from core.models import Upload, UploadStatus
from core.plugins import Registry, make_plugin_manager, use_registry
from core.sandbox_faults import FAULTS
from core.scheduler import run_slot
from plugins.ihs_supervision import plugin as ihs_plugin
from plugins.keydata import plugin as keydata_plugin
from plugins.keydata import sandbox as keydata_sandbox
from plugins.shangrao_insurance import plugin as shangrao_plugin
from plugins.twopath import plugin as twopath_plugin
from plugins.twopath import sandbox as twopath_sandbox

SHANGHAI = ZoneInfo("Asia/Shanghai")
FINAL = (UploadStatus.SUCCEEDED, UploadStatus.REJECTED, UploadStatus.FAILED, UploadStatus.CANCELLED)


def drive(upload_id: int, attempts: int = 10) -> Upload:
    """Run attempts until the upload is final (what the automatic retries do, without the waits)."""
    for _ in range(attempts):
        db.session.expire_all()
        upload = db.session.get(Upload, upload_id)
        if upload.status in FINAL:
            return upload
        pipeline.attempt(upload_id, upload.attempts)
    db.session.expire_all()
    upload = db.session.get(Upload, upload_id)
    assert upload.status in FINAL, f"upload {upload_id} stuck in {upload.status}: {upload.last_message}"
    return upload


def manual_retry(upload_id: int) -> Upload:
    """What the admin's 重试 (and bulk retry) does: mark the final upload for another attempt, run it."""
    from core import ledger

    ledger.mark_for_manual_retry(db.session.get(Upload, upload_id))
    db.session.commit()
    return drive(upload_id)


def post(url: str, path: str, body: dict) -> dict:
    answer = requests.post(f"{url}/_sandbox/{path}", json=body, timeout=5)
    answer.raise_for_status()
    return answer.json()


def use_only(*plugins):
    use_registry(Registry(make_plugin_manager(list(plugins), entry_points_too=False)))


# --- keydata ----------------------------------------------------------------------------------------

KEYDATA_READINGS = [dict(update_absent=u, new_existing=n)
                    for u, n in itertools.product(("insert", "reject"), ("reject", "overwrite"))]


@pytest.fixture
def keydata(app, serve, his_url, monkeypatch):
    from types import SimpleNamespace

    use_only(keydata_plugin)
    monkeypatch.setenv("HIS_DATABASE_URL", his_url)
    url = configure_keydata_sandbox(serve, timeout="0.6")
    keydata_sandbox.seed()
    yield SimpleNamespace(url=url)
    use_registry(None)


def keydata_held(url: str) -> dict[str, dict]:
    found = requests.get(f"{url}/_sandbox/records", params={"report": "hospital_daily"}, timeout=5).json()
    return {r["statDate"]: r for r in found["records"]}


def keydata_inserts(url: str) -> dict[str, int]:
    history = requests.get(f"{url}/_sandbox/history", timeout=5).json()["history"]
    counts: dict[str, int] = {}
    for change in history:
        if change["action"] == "insert":
            counts[change["statDate"]] = counts.get(change["statDate"], 0) + 1
        elif change["action"] == "delete":
            counts[change["statDate"]] = counts.get(change["statDate"], 0) - 1
    return counts


def plan_keydata_hours(hours: range) -> list[int]:
    ids = []
    for hour in hours:
        ids += run_slot("keydata.hospital_daily", datetime(2025, 2, 10, hour, tzinfo=SHANGHAI), enqueue=False)
    return ids


def assert_keydata_delivered_once(url: str, upload_ids: list[int]) -> None:
    held, inserts = keydata_held(url), keydata_inserts(url)
    for upload_id in upload_ids:
        upload = drive(upload_id)
        record = held.get(upload.period)
        assert record is not None, f"{upload.period} lost ({upload.status}: {upload.last_message})"
        assert {k: record[k] for k in upload.rows[0]} == upload.rows[0]  # our figures, not others
        assert inserts.get(upload.period) == 1, f"{upload.period} stored {inserts.get(upload.period)} times"
        assert upload.status == UploadStatus.SUCCEEDED, f"{upload.period} falsely {upload.status}: {upload.last_message}"
    assert len(held) == len(upload_ids)


@pytest.mark.slow
@pytest.mark.parametrize("count", [1, 2])
@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("reading", KEYDATA_READINGS, ids=lambda r: f"{r['update_absent']}-{r['new_existing']}")
def test_keydata_delivers_each_hour_once_whatever_the_reading_and_the_fault(keydata, reading, fault, count):
    post(keydata.url, "readings", reading)
    post(keydata.url, "faults", {"inject": [{"fault": fault, "count": count, "seconds": 1.0}]})
    upload_ids = plan_keydata_hours(range(9, 11))
    for upload_id in upload_ids:
        drive(upload_id)
    assert_keydata_delivered_once(keydata.url, upload_ids)


@pytest.mark.slow
@pytest.mark.parametrize("count", [1, 2])
@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("refusals", ["bare", "http_500"])
def test_keydata_delivers_each_hour_once_when_refusals_name_no_reason(keydata, refusals, fault, count):
    # The document defines no error codes or statuses: a platform may refuse an update of a record it does
    # not hold (or a new one it holds) with a bare "处理失败", or say "不存在" with an HTTP 500.
    post(keydata.url, "readings", {"update_absent": "reject", "new_existing": "reject", "refusals": refusals})
    post(keydata.url, "faults", {"inject": [{"fault": fault, "count": count, "seconds": 1.0}]})
    upload_ids = plan_keydata_hours(range(9, 11))
    for upload_id in upload_ids:
        drive(upload_id)
    assert_keydata_delivered_once(keydata.url, upload_ids)


@pytest.mark.parametrize("refusals,refused_status", [("bare", 400), ("http_500", 500)])
def test_a_500_with_nothing_stored_is_delivered_whatever_words_refuse_the_update(keydata, refusals,
                                                                                 refused_status):
    # The seen loss, with a platform that words its "not found" as a bare "处理失败" (before, the refused
    # dataFlag 2 was final) or says "不存在" with an HTTP 500 (before, read as a system error: dataFlag 2
    # again on every retry, and the hour ended failed, never delivered).
    post(keydata.url, "readings", {"update_absent": "reject", "refusals": refusals})
    post(keydata.url, "faults", {"inject": [{"fault": "error_before_store", "count": 1}]})
    [upload_id] = plan_keydata_hours(range(9, 10))
    upload = drive(upload_id)
    assert upload.status == UploadStatus.SUCCEEDED, upload.last_message
    flags = [(r["dataFlag"], r["code"]) for r in
             requests.get(f"{keydata.url}/_sandbox/requests", timeout=5).json()["requests"]]
    assert flags == [("2", refused_status), ("1", 200)]
    assert keydata_inserts(keydata.url) == {upload.period: 1}


def test_a_real_rejection_of_both_flags_is_final_and_a_retry_after_the_fix_delivers(keydata):
    post(keydata.url, "readings", {"update_absent": "reject", "refusals": "bare"})
    post(keydata.url, "faults", {"inject": [{"fault": "error_before_store", "count": 1}],
                                 "reject_field": "presCount", "count": 3})
    [upload_id] = plan_keydata_hours(range(9, 10))
    upload = drive(upload_id)
    assert upload.status == UploadStatus.REJECTED and "presCount" in upload.last_message
    assert [a.operation_sent for a in upload.attempt_list] == ["new", "update", "new"]
    post(keydata.url, "faults", {"reset": True})
    upload = manual_retry(upload_id)
    assert [a.operation_sent for a in upload.attempt_list][3:] == ["update", "new"]  # from the top again
    assert_keydata_delivered_once(keydata.url, [upload_id])


@pytest.mark.slow
@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("delete_absent", ["reject", "ok"])
def test_a_withdrawal_under_faults_leaves_nothing_held_and_succeeds(keydata, fault, delete_absent):
    post(keydata.url, "readings", {"delete_absent": delete_absent})
    [upload_id] = plan_keydata_hours(range(9, 10))
    assert drive(upload_id).status == UploadStatus.SUCCEEDED
    post(keydata.url, "faults", {"inject": [{"fault": fault, "count": 1, "seconds": 1.0}]})
    withdrawal = drive(keydata_plugin.withdraw(upload_id, "admin"))
    assert keydata_held(keydata.url) == {}
    assert withdrawal.status == UploadStatus.SUCCEEDED, withdrawal.last_message


def test_seen_a_500_with_nothing_stored_is_delivered_when_an_update_does_not_insert(keydata):
    # Seen: the retry went out as dataFlag 2, the platform answered "not found", the upload was rejected
    # for good. Now "not found" for an update is followed by a dataFlag 1 in the same breath.
    post(keydata.url, "readings", {"update_absent": "reject"})
    post(keydata.url, "faults", {"inject": [{"fault": "error_before_store", "count": 1}]})
    [upload_id] = plan_keydata_hours(range(9, 10))
    upload = drive(upload_id)
    assert upload.status == UploadStatus.SUCCEEDED, upload.last_message
    flags = [r["dataFlag"] for r in requests.get(f"{keydata.url}/_sandbox/requests", timeout=5).json()["requests"]]
    assert flags == ["2", "1"]  # the 500 left no record of the request; then update, then new
    assert [a.outcome for a in upload.attempt_list][-2:] == ["retry", "success"]
    assert keydata_inserts(keydata.url) == {upload.period: 1}


def test_seen_a_dropped_connection_after_storing_is_not_a_false_duplicate_rejection(keydata):
    # Seen: RemoteDisconnected after the platform stored the record was taken for "never sent"; the retry
    # went out as new (dataFlag 1), was answered "duplicate" and the upload ended rejected.
    post(keydata.url, "faults", {"inject": [{"fault": "drop_after_store", "count": 1}]})
    [upload_id] = plan_keydata_hours(range(9, 10))
    upload = drive(upload_id)
    assert upload.status == UploadStatus.SUCCEEDED, upload.last_message
    assert upload.attempt_list[0].delivery == "maybe_delivered"
    assert keydata_inserts(keydata.url) == {upload.period: 1}


def test_a_correction_of_a_record_the_platform_no_longer_holds_goes_through_the_strategy(keydata):
    # 更正重报 sends dataFlag 2; a platform whose update does not insert answers "not found": a new follows.
    post(keydata.url, "readings", {"update_absent": "reject"})
    [upload_id] = plan_keydata_hours(range(9, 10))
    assert drive(upload_id).status == UploadStatus.SUCCEEDED
    assert drive(keydata_plugin.withdraw(upload_id, "admin")).status == UploadStatus.SUCCEEDED
    correction = drive(keydata_plugin.resend_update(upload_id, "admin"))
    assert correction.status == UploadStatus.SUCCEEDED, correction.last_message
    assert [a.operation_sent for a in correction.attempt_list] == ["update", "new"]
    assert list(keydata_held(keydata.url)) == [correction.period]


def test_a_rejected_keydata_upload_is_delivered_by_a_manual_retry_once_the_cause_is_gone(keydata):
    post(keydata.url, "readings", {"update_absent": "reject"})
    post(keydata.url, "faults", {"inject": [{"fault": "error_after_store", "count": 1}],
                                 "reject_field": "presCount", "count": 3})
    [upload_id] = plan_keydata_hours(range(9, 10))
    upload = drive(upload_id)
    assert upload.status == UploadStatus.REJECTED and "presCount" in upload.last_message
    post(keydata.url, "faults", {"reset": True})
    assert manual_retry(upload_id).status == UploadStatus.SUCCEEDED
    assert_keydata_delivered_once(keydata.url, [upload_id])


# --- Shangrao ---------------------------------------------------------------------------------------

SHANGRAO_READINGS = [dict(msgid_taken=t, repeat_msgid=r)
                     for t, r in itertools.product(("on_accept", "on_receipt"), ("40005", "200"))]
CODE = "H36110200001"


@pytest.fixture
def shangrao(app, serve):
    from test_shangrao_support import configure_sandbox

    use_only(shangrao_plugin)
    yield configure_sandbox(serve, timeout="1")
    use_registry(None)


def shangrao_keys(url: str) -> list[str]:
    from test_shangrao_support import records

    return records(url, "fee_list_d", keys=1)["keys"]


def plan_shangrao(batches: int, rows: int = 3) -> list[int]:
    from test_shangrao_support import fee_row, plan_batch

    from plugins.shangrao_insurance import common

    return [plan_batch("fee_list_d", [fee_row(b * 100 + n) for n in range(rows)], common.new_msgid(CODE),
                       key=f"b{b}") for b in range(batches)]


def assert_shangrao_delivered_once(url: str, upload_ids: list[int]) -> None:
    keys = shangrao_keys(url)
    assert len(keys) == len(set(keys)), "a row was stored twice"
    for upload_id in upload_ids:
        upload = drive(upload_id)
        for row in upload.rows:
            assert row["BKKP_SN"] in keys, f"batch {upload_id} lost ({upload.status}: {upload.last_message})"
        assert upload.status == UploadStatus.SUCCEEDED, f"batch {upload_id} falsely {upload.status}: {upload.last_message}"
    assert len(keys) == sum(len(drive(i).rows) for i in upload_ids)


@pytest.mark.slow
@pytest.mark.parametrize("count", [1, 2])
@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("reading", SHANGRAO_READINGS, ids=lambda r: f"{r['msgid_taken']}-{r['repeat_msgid']}")
def test_shangrao_delivers_each_batch_once_whatever_the_reading_and_the_fault(shangrao, reading, fault, count):
    post(shangrao.url, "readings", reading)
    post(shangrao.url, "faults", {"inject": [{"fault": fault, "count": count, "seconds": 1.5}]})
    upload_ids = plan_shangrao(2)
    for upload_id in upload_ids:
        drive(upload_id)
    assert_shangrao_delivered_once(shangrao.url, upload_ids)


def test_seen_a_dropped_connection_after_storing_is_not_a_false_40005_rejection(shangrao):
    post(shangrao.url, "faults", {"inject": [{"fault": "drop_after_store", "count": 1}]})
    [upload_id] = plan_shangrao(1)
    upload = drive(upload_id)
    assert upload.status == UploadStatus.SUCCEEDED, upload.last_message
    assert [a.code for a in upload.attempt_list] == [None, "40005"]
    assert_shangrao_delivered_once(shangrao.url, [upload_id])


@pytest.mark.parametrize("msgid_taken", ["on_accept", "on_receipt"])
def test_a_refused_batch_is_delivered_after_the_fix_whether_or_not_its_msgid_was_taken(shangrao, msgid_taken):
    post(shangrao.url, "readings", {"msgid_taken": msgid_taken})
    post(shangrao.url, "faults", {"reject_field": "CNT"})
    [upload_id] = plan_shangrao(1)
    assert drive(upload_id).status == UploadStatus.REJECTED
    post(shangrao.url, "faults", {"reset": True})
    upload = manual_retry(upload_id)  # the person's retry after the fix
    assert upload.status == UploadStatus.SUCCEEDED, upload.last_message
    if msgid_taken == "on_receipt":  # 40005 for a msgid nothing of ours delivered: a new msgid
        assert [a.code for a in upload.attempt_list] == ["40003", "40005", "200"]
        assert upload.result["shangrao_msgid"] != upload.idempotency_key
    assert_shangrao_delivered_once(shangrao.url, [upload_id])


# --- two-channel ------------------------------------------------------------------------------------

@pytest.fixture
def platform(app, serve):
    from test_twopath import _configure

    use_only(twopath_plugin)
    client_settings, config = twopath_sandbox.demo_config("")
    config.update(review_delay_seconds=600, sign_ttl_seconds=3600, reject_every=0)
    url = serve(twopath_sandbox.make_app(config))
    _configure(client_settings["twopath"], base_url=url, timeout_seconds="1")
    yield url
    use_registry(None)


def filings_held(url: str) -> list[dict]:
    return [f for f in requests.get(f"{url}/_sandbox/records", timeout=5).json()["filings"] if f["status"] != "revoked"]


@pytest.mark.slow
@pytest.mark.parametrize("count", [1, 2])
@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("duplicate_filing", ["refuse", "accept"])
def test_a_filing_is_filed_once_whatever_the_reading_and_the_fault(platform, duplicate_filing, fault, count):
    from test_twopath import new_filing

    from plugins.twopath import filings
    from plugins.twopath.models import Filing, FilingStatus

    post(platform, "readings", {"duplicate_filing": duplicate_filing})
    chosen = [new_filing("twopath", 0), new_filing("chronic", 1, code="M03900")]
    post(platform, "faults", {"inject": [{"fault": fault, "count": count, "path": "2511", "seconds": 1.5},
                                         {"fault": fault, "count": count, "path": "2503", "seconds": 1.5}]})
    for filing in chosen:
        upload = drive(filings.submit(filing, actor="tester", opter="op1", opter_name="经办甲", enqueue=False))
        assert upload.status == UploadStatus.SUCCEEDED, upload.last_message
    held = filings_held(platform)
    assert sorted(f["kind"] for f in held) == ["chronic", "twopath"]  # each filed once, none lost
    for filing in chosen:
        filing = db.session.get(Filing, filing.id)
        assert filing.status == FilingStatus.PENDING_REVIEW
        assert filing.appy_no in {f["appno"] for f in held}


def test_seen_a_2511_is_not_filed_twice_after_a_dropped_connection(platform):
    from test_twopath import new_filing

    from plugins.twopath import filings

    post(platform, "readings", {"duplicate_filing": "accept"})
    post(platform, "faults", {"inject": [{"fault": "drop_after_store", "count": 1, "path": "2511"}]})
    filing = new_filing("twopath", 0)
    upload = drive(filings.submit(filing, actor="tester", opter="op1", opter_name="经办甲", enqueue=False))
    assert upload.status == UploadStatus.SUCCEEDED, upload.last_message
    assert len(filings_held(platform)) == 1
    calls = requests.get(f"{platform}/_sandbox/records", timeout=5).json()["calls"]
    assert calls["2511"] == 1 and calls["5311"] == 1  # asked, found, not filed again



@pytest.mark.parametrize("query_fault", ["error_before_store", "drop_after_store", "truncated_after_store"])
def test_a_query_before_refiling_that_fails_is_retried_never_followed_by_a_blind_filing(platform, query_fault):
    from test_twopath import new_filing

    from plugins.twopath import filings

    post(platform, "readings", {"duplicate_filing": "accept"})
    post(platform, "faults", {"inject": [{"fault": "drop_after_store", "count": 1, "path": "2511"},
                                         {"fault": query_fault, "count": 2, "path": "5311"}]})
    filing = new_filing("twopath", 0)
    upload = drive(filings.submit(filing, actor="tester", opter="op1", opter_name="经办甲", enqueue=False))
    assert upload.status == UploadStatus.SUCCEEDED, upload.last_message
    assert len(filings_held(platform)) == 1
    calls = requests.get(f"{platform}/_sandbox/records", timeout=5).json()["calls"]
    assert calls["2511"] == 1  # the queries failed twice, then found it: not filed again
    queries = db.session.query(Upload).filter_by(report_type="twopath.5311").order_by(Upload.id).all()
    assert [q.status == UploadStatus.SUCCEEDED for q in queries] == [False, False, True]


@pytest.mark.parametrize("fault", ["drop_after_store", "error_after_store", "truncated_after_store"])
@pytest.mark.parametrize(("kind", "code", "path"), [("twopath", "XL01XC03", "2512"), ("chronic", "M03900", "2504")])
def test_a_revoke_whose_answer_was_lost_is_not_taken_for_a_refusal(platform, kind, code, path, fault):
    from test_twopath import new_filing

    from plugins.twopath import filings
    from plugins.twopath.models import Filing, FilingStatus

    filing = new_filing(kind, 0 if kind == "twopath" else 1, code=code)
    assert drive(filings.submit(filing, actor="tester", opter="op1", opter_name="经办甲", enqueue=False)).status \
        == UploadStatus.SUCCEEDED
    post(platform, "faults", {"inject": [{"fault": fault, "count": 1, "path": path}]})
    upload = drive(filings.revoke(db.session.get(Filing, filing.id), actor="tester", enqueue=False))
    # The re-sent revoke is refused (already revoked); the query shows the filing gone: it was revoked.
    assert upload.status == UploadStatus.SUCCEEDED, upload.last_message
    assert filings_held(platform) == []
    assert db.session.get(Filing, filing.id).status == FilingStatus.REVOKED


def test_a_revoke_refused_for_a_reviewed_filing_stays_a_refusal(platform):
    from test_twopath import new_filing

    from plugins.twopath import filings
    from plugins.twopath.models import Filing

    filing = new_filing("twopath", 0)
    drive(filings.submit(filing, actor="tester", opter="op1", opter_name="经办甲", enqueue=False))
    filing = db.session.get(Filing, filing.id)
    post(platform, "review", {"appno": filing.appy_no, "decision": "approved"})
    post(platform, "faults", {"inject": [{"fault": "error_after_store", "count": 1, "path": "2512"}]})
    upload = drive(filings.revoke(filing, actor="tester", enqueue=False))
    assert upload.status == UploadStatus.REJECTED and "已审核" in upload.last_message  # still listed: refused


# --- internet-hospital supervision ------------------------------------------------------------------

@pytest.fixture
def ihs(app, serve):
    from test_ihs_support import configure_sandbox, hospital_row, plan_rows

    use_only(ihs_plugin)
    sandbox = configure_sandbox(serve, timeout="1")
    assert drive(plan_rows("A1000", [hospital_row()], key="hospital")).status == UploadStatus.SUCCEEDED
    yield sandbox
    use_registry(None)


def plan_ihs_departments(batches: int, rows: int = 3) -> list[int]:
    from test_ihs_support import department_row, plan_rows

    return [plan_rows("A1001", [department_row(f"{b}{n:03d}", deptName=f"科室{b}{n}") for n in range(rows)],
                      key=f"b{b}") for b in range(batches)]


def assert_ihs_delivered_once(url: str, upload_ids: list[int], duplicate: str) -> None:
    from test_ihs_support import records

    held = records(url, "A1001", limit=1000)
    assert len(held["keys"]) == len(set(held["keys"])), "a row was stored twice"
    by_key = {r["deptCode"]: r for r in held["records"]}
    planned = 0
    for upload_id in upload_ids:
        upload = drive(upload_id)
        for row in upload.rows:
            planned += 1
            assert by_key.get(row["deptCode"]) == row, f"batch {upload_id} lost ({upload.status}: {upload.last_message})"
        assert upload.status == UploadStatus.SUCCEEDED, f"batch {upload_id} falsely {upload.status}: {upload.last_message}"
    assert held["count"] == planned
    if duplicate == "refuse":  # a platform that refuses repeats accepted each row exactly once
        assert held["received"] == planned


@pytest.mark.slow
@pytest.mark.parametrize("count", [1, 2])
@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("duplicate", ["refuse", "overwrite"])
def test_ihs_delivers_each_row_once_whatever_the_reading_and_the_fault(ihs, duplicate, fault, count):
    post(ihs.url, "faults", {"duplicate": duplicate, "inject": [{"fault": fault, "count": count, "seconds": 1.5}]})
    upload_ids = plan_ihs_departments(2)
    for upload_id in upload_ids:
        drive(upload_id)
    assert post(ihs.url, "faults", {})["struck"] == {fault: count}  # the shared rules struck as asked
    assert_ihs_delivered_once(ihs.url, upload_ids, duplicate)
