"""The IHS wire protocol against the sandbox over real HTTP: headers and envelope, batch limits, the
sandbox's checks (headers, sign, rows, call order) and its faults, after which nothing is lost or
counted twice."""

from __future__ import annotations

import json

import pytest
import requests
from test_ihs_support import (
    REGULATOR,
    configure_sandbox,
    department_row,
    faults,
    hospital_row,
    plan_rows,
    records,
    upload,
)

from core import ledger, pipeline
from core.db import db
from core.models import UploadStatus
from core.settings import save_regulator_setting
from plugins.ihs_supervision import catalogue, protocol
from plugins.ihs_supervision import sandbox as ihs_sandbox


@pytest.fixture
def sandbox(app, serve):
    return configure_sandbox(serve, timeout="2")


def test_a_batch_goes_with_the_documented_headers_and_body(sandbox):
    from datetime import UTC, datetime

    from core import clock

    clock.freeze(datetime(2025, 2, 19, 2, 0, 5, tzinfo=UTC))
    upload_id = plan_rows("A1000", [hospital_row()])
    assert pipeline.attempt(upload_id, 0) == UploadStatus.SUCCEEDED

    [attempt] = upload(upload_id).attempt_list
    assert attempt.url == f"{sandbox.url}/ihs/api/base/hospital"
    assert {"service", "appid", "randomstr", "sign"} <= set(attempt.headers)
    assert attempt.headers["service"] == "A1000" and attempt.headers["appid"] == ihs_sandbox.DEMO_APPID
    assert len(attempt.headers["randomstr"]) == 32 and attempt.headers["sign"] != sandbox.state.log[0]["randomstr"]
    assert "*" in attempt.headers["sign"]  # the sign is masked in the ledger
    body = json.loads(attempt.wire_body)
    assert set(body) == {"uptime", "data"} and isinstance(body["data"], str)
    assert body["uptime"] == "2025-02-19 10:00:05"  # YYYY-MM-DD HH24:MI:SS, Asia/Shanghai
    assert json.loads(body["data"]) == [hospital_row()]
    assert records(sandbox.url, "A1000")["keys"] == ["H36110200001"]


def test_randomstr_is_fresh_for_every_request(sandbox):
    first = plan_rows("A1000", [hospital_row()], key="a")
    second = plan_rows("A1000", [hospital_row(hospId="H2")], key="b")
    pipeline.attempt(first, 0)
    pipeline.attempt(second, 0)
    assert len({b["randomstr"] for b in sandbox.state.log}) == 2


@pytest.mark.parametrize("rows, limit, expected", [
    (250, 100, [100, 100, 50]),
    (10, 3, [3, 3, 3, 1]),
])
def test_batches_are_cut_by_rows(rows, limit, expected):
    cut = protocol.cut_batches([department_row(f"{n:04d}") for n in range(rows)], limit, protocol.HARD_MAX_BYTES)
    assert [len(b) for b in cut.batches] == expected


def test_batches_are_cut_by_the_exact_body_size():
    rows = [department_row(f"{n:04d}", deptName="科" * 30) for n in range(40)]
    limit = protocol.body_bytes(rows[:7])
    cut = protocol.cut_batches(rows, 10000, limit)
    assert [len(b) for b in cut.batches][:5] == [7] * 5
    for batch in cut.batches:
        chosen = [rows[i] for i in batch]
        body = protocol.encode_body("2025-01-01 00:00:00", protocol.encode_data(chosen))
        assert len(body.encode()) == protocol.body_bytes(chosen) <= limit
    huge = department_row("X", deptName="x" * 500)
    assert protocol.cut_batches([huge], 10, 200).oversized[0][0] == 0


def test_a_batch_above_the_configured_rows_is_refused_before_sending(sandbox):
    upload_id = plan_rows("A1001", [department_row(f"{n:04d}") for n in range(5)])
    save_regulator_setting(REGULATOR, "batch_size", "3")
    db.session.commit()
    assert pipeline.attempt(upload_id, 0) == UploadStatus.REJECTED
    assert "超过每批上限 3 条" in upload(upload_id).last_message and sandbox.state.requests == 0


def test_settings_above_the_documents_hard_limits_are_refused(sandbox):
    save_regulator_setting(REGULATOR, "batch_size", "10001")
    db.session.commit()
    upload_id = plan_rows("A1000", [hospital_row()])
    assert pipeline.attempt(upload_id, 0) == UploadStatus.REJECTED
    assert "10000" in upload(upload_id).last_message


def _post(url: str, path: str, headers: dict, body: str):
    return requests.post(url + path, data=body.encode(), headers=headers, timeout=5).json()


def _signed(sandbox, code: str, rows, **header_changes):
    interface = catalogue.by_code(code)
    data = protocol.encode_data(rows)
    uptime = "2025-02-19 10:00:00"
    headers = {"service": code, "appid": ihs_sandbox.DEMO_APPID, "randomstr": "r" * 32}
    headers["sign"] = ihs_sandbox.DEMO_RECIPE.sign(
        protocol.sign_values(code, headers["appid"], headers["randomstr"], uptime, data), sandbox.config["key"])
    headers.update(header_changes)
    return interface.path, headers, protocol.encode_body(uptime, data)


def test_the_sandbox_checks_headers_sign_rows_limits_and_call_order(sandbox):
    url = sandbox.url
    path, headers, body = _signed(sandbox, "A1000", [hospital_row()])
    assert _post(url, path, {**headers, "sign": ""}, body)["code"] == "PARAM_ERROR"
    assert _post(url, path, {**headers, "randomstr": "r" * 33}, body)["code"] == "PARAM_ERROR"
    assert _post(url, path, {**headers, "service": "A1001"}, body)["code"] == "SERVICE_ERROR"
    assert _post(url, path, {**headers, "appid": "other"}, body)["code"] == "APPID_ERROR"
    assert _post(url, path, {**headers, "sign": "0" * 64}, body)["code"] == "SIGN_ERROR"
    bad = _post(url, *_signed(sandbox, "A1000", [hospital_row(hospLevel=34)]))
    assert bad["code"] == "PARAM_ERROR" and "hospLevel" in bad["message"] and "第1条" in bad["message"]
    too_many = _post(url, *_signed(sandbox, "A1001", [department_row(f"{n:05d}") for n in range(10001)]))
    assert too_many["code"] == "DATA_LIMIT"
    oversized = requests.post(url + "/ihs/api/base/department", data=b" " * (protocol.HARD_MAX_BYTES + 1),
                              headers=headers | {"service": "A1001"}, timeout=30).json()
    assert oversized["code"] == "DATA_LIMIT" and "30MB" in oversized["message"]
    # A department before the hospital it belongs to: refused with the call-order code.
    early = _post(url, *_signed(sandbox, "A1001", [department_row()]))
    assert early["code"] == "DEPENDENCY_MISSING" and "医疗机构" in early["message"]
    assert _post(url, *_signed(sandbox, "A1000", [hospital_row()]))["code"] == "0"
    assert _post(url, *_signed(sandbox, "A1001", [department_row()]))["code"] == "0"
    assert records(url, "A1001")["keys"] == ["0101"]


def test_an_order_for_a_doctor_the_sandbox_never_received_is_refused(sandbox):
    url = sandbox.url
    _post(url, *_signed(sandbox, "A1000", [hospital_row()]))
    _post(url, *_signed(sandbox, "A1001", [department_row()]))
    order = {"flowNo": "F1", "orderId": "O1", "createTime": "2025-02-19 09:00:00", "deptCode": "0101",
             "deptName": "心内科", "docCode": "D404", "docName": "王医生", "channelType": 1, "payType": 1,
             "name": "张三", "age": 35.5, "sex": 1, "birthday": "1990-01-01", "mobile": "13900000000",
             "cardType": 1, "cardNo": "C1", "amount": 1000, "status": "已完成"}
    answer = _post(url, *_signed(sandbox, "A2000", [order]))
    assert answer["code"] == "DEPENDENCY_MISSING" and "D404" in answer["message"]
    assert records(url, "A2000")["count"] == 0


def test_unknown_codes_are_rejected_and_system_error_is_retried(sandbox):
    faults(sandbox.url, code="SYSTEM_ERROR")
    upload_id = plan_rows("A1000", [hospital_row()])
    assert pipeline.attempt(upload_id, 0) == UploadStatus.RETRY_WAIT
    faults(sandbox.url, code="SOMETHING_ELSE")
    assert pipeline.attempt(upload_id, 1) == UploadStatus.REJECTED
    assert "2.8" in upload(upload_id).last_message


FAULTS = [
    pytest.param({"error_rate": 1, "status": 500}, False, id="500"),
    pytest.param({"slow_seconds": 4}, True, id="slow answer after storing"),
    pytest.param({"lost_after_store": True}, True, id="answer lost after storing"),
    pytest.param({"truncated": True}, True, id="truncated answer"),
    pytest.param({"drop_after_read": True}, False, id="dropped after reading"),
]


@pytest.mark.parametrize("duplicate", ["overwrite", "refuse"])
@pytest.mark.parametrize("fault, stored", FAULTS)
def test_after_a_fault_the_resend_loses_and_doubles_nothing(sandbox, fault, stored, duplicate):
    _post(sandbox.url, *_signed(sandbox, "A1000", [hospital_row()]))
    faults(sandbox.url, duplicate=duplicate, **fault)
    rows = [department_row(f"{n:04d}") for n in range(3)]
    upload_id = plan_rows("A1001", rows)

    assert pipeline.attempt(upload_id, 0) == UploadStatus.RETRY_WAIT
    assert records(sandbox.url, "A1001")["count"] == (3 if stored else 0)
    faults(sandbox.url, reset=True)
    item = upload(upload_id)
    ledger.mark_for_manual_retry(item)
    db.session.commit()

    assert pipeline.attempt(upload_id, item.attempts) == UploadStatus.SUCCEEDED
    kept = records(sandbox.url, "A1001")
    assert kept["keys"] == ["0000", "0001", "0002"]  # each once
    if stored and duplicate == "refuse":
        assert upload(upload_id).last_code == "DATA_EXISTS"  # our own earlier batch: counted as received


def test_a_fresh_batch_answered_duplicate_is_not_taken_for_ours(sandbox):
    faults(sandbox.url, duplicate="refuse")
    _post(sandbox.url, *_signed(sandbox, "A1000", [hospital_row()]))
    first = plan_rows("A1001", [department_row()], key="a")
    assert pipeline.attempt(first, 0) == UploadStatus.SUCCEEDED
    other = plan_rows("A1001", [department_row()], key="b")
    assert pipeline.attempt(other, 0) == UploadStatus.REJECTED
    assert upload(other).last_code == "DATA_EXISTS"


def test_a_large_attachment_goes_as_a_multipart_form_with_an_empty_data(sandbox):
    _post(sandbox.url, *_signed(sandbox, "A1000", [hospital_row()]))
    content = bytes(range(256)) * 40
    upload_id = plan_rows("A0001", [{"attaService": "01", "attaId": "ATT1", "fileType": "pdf",
                                     "fileUpload": content.hex(), "_after": ["hospital:H36110200001"]}])
    from plugins.ihs_supervision.models import Entity

    db.session.add(Entity(step="hospital", entity_key="H36110200001", report_type="ihs.A1000", business_key="A1000:x"))
    db.session.commit()
    hosp = plan_rows("A1000", [hospital_row()], key="x")
    assert pipeline.attempt(upload_id, 0) == UploadStatus.RETRY_WAIT  # the hospital upload has not succeeded
    assert "等待前置上报" in upload(upload_id).last_message
    assert pipeline.attempt(hosp, 0) == UploadStatus.SUCCEEDED
    assert pipeline.attempt(upload_id, 1) == UploadStatus.SUCCEEDED, upload(upload_id).last_message

    [*_, attempt] = upload(upload_id).attempt_list
    assert attempt.headers["Content-Type"].startswith("multipart/form-data; boundary=")
    kept = records(sandbox.url, "A0001")["records"][0]
    assert bytes.fromhex(kept["fileUpload"]) == content and kept["data"] == "" and kept["attaId"] == "ATT1"
    assert "字节" in attempt.plaintext and content.hex()[:100] not in attempt.plaintext
