"""Sending Shangrao batches through the real pipeline to the real sandbox regulator over HTTP:
SM2 envelopes, the response codes, the 40005 re-send rule, masking of patient data."""

from __future__ import annotations

import json

import pytest
import requests
from test_shangrao_support import configure_sandbox, faults, fee_row, plan_batch, records, setl_row, upload

from core import pipeline
from core.crypto import generate_sm2_keypair
from core.models import UploadStatus
from core.plugins import registry
from plugins.shangrao_insurance import common

CODE = "H36110200001"


@pytest.fixture
def sandbox(app, serve):
    return configure_sandbox(serve)


def test_a_batch_is_encrypted_sent_and_kept_by_the_sandbox(sandbox):
    rows = [fee_row(n) for n in range(20)]
    upload_id = plan_batch("fee_list_d", rows, common.new_msgid(CODE))

    assert pipeline.attempt(upload_id, 0) == UploadStatus.SUCCEEDED

    done = upload(upload_id)
    assert done.last_code == "200"
    kept = records(sandbox.url, "fee_list_d", keys=1)
    assert kept["count"] == 20 and kept["keys"] == [r["BKKP_SN"] for r in rows]
    assert kept["msgids"] == [done.idempotency_key]
    [attempt] = done.attempt_list
    assert attempt.url == f"{sandbox.url}/metadata/receive/fee_list_d"
    envelope = json.loads(attempt.wire_body)
    assert set(envelope) == {"infno", "msgid", "fixmedins_code", "fixmedins_name", "data"}
    assert envelope["msgid"] == done.idempotency_key and envelope["fixmedins_code"] == CODE
    assert envelope["data"].startswith("04") and envelope["data"] == envelope["data"].lower()
    assert len(envelope["data"]) == common.ciphertext_chars(len(common.encode_rows(rows)), common.sm2_profile({}))


def test_patient_identifiers_are_masked_in_the_recorded_attempt(sandbox):
    upload_id = plan_batch("setl_d", [setl_row(1)], common.new_msgid(CODE))
    assert pipeline.attempt(upload_id, 0) == UploadStatus.SUCCEEDED
    [attempt] = upload(upload_id).attempt_list
    assert "张三" not in attempt.plaintext and "361102199001011234" not in attempt.plaintext
    assert "张三" not in attempt.wire_body  # encrypted on the wire
    shown = json.loads(attempt.plaintext)["data"][0]
    assert shown["PSN_NAME"] == "张*" and shown["CERTNO"].endswith("1234") and "*" in shown["CERTNO"]
    assert shown["SETL_ID"] == "ST00000001"  # not patient data: kept for the admin
    assert records(sandbox.url, "setl_d")["records"][0]["PSN_NAME"] == "张*"


def test_a_resend_after_an_unknown_outcome_reuses_the_msgid_and_40005_counts_as_received(sandbox):
    rows = [fee_row(n) for n in range(5)]
    upload_id = plan_batch("fee_list_d", rows, common.new_msgid(CODE))
    faults(sandbox.url, non_json=True)  # the sandbox keeps the rows but the answer is garbage

    assert pipeline.attempt(upload_id, 0) == UploadStatus.RETRY_WAIT
    assert upload(upload_id).delivery_uncertain
    faults(sandbox.url, reset=True)

    assert pipeline.attempt(upload_id, 1) == UploadStatus.SUCCEEDED

    done = upload(upload_id)
    first, second = done.attempt_list
    assert json.loads(first.wire_body)["msgid"] == json.loads(second.wire_body)["msgid"] == done.idempotency_key
    assert second.resend and second.code == "40005" and second.outcome == "success"
    assert json.loads(first.wire_body)["data"] != json.loads(second.wire_body)["data"]  # fresh SM2 randomness
    assert records(sandbox.url, "fee_list_d")["count"] == 5  # once, not twice


def test_a_fresh_upload_whose_msgid_was_already_used_is_resent_with_a_new_msgid(sandbox):
    msgid = common.new_msgid(CODE)
    first = plan_batch("fee_list_d", [fee_row(1)], msgid, key="b1")
    assert pipeline.attempt(first, 0) == UploadStatus.SUCCEEDED
    second = plan_batch("fee_list_d", [fee_row(2)], msgid, key="b2")

    # 40005 on a first attempt nothing of ours delivered: a collision, not "already received".
    assert pipeline.attempt(second, 0) == UploadStatus.SUCCEEDED

    done = upload(second)
    collided, resent = done.attempt_list
    assert collided.code == "40005" and json.loads(collided.wire_body)["msgid"] == msgid
    fresh = json.loads(resent.wire_body)["msgid"]
    assert fresh != msgid and done.result["shangrao_msgid"] == fresh and resent.code == "200"
    assert records(sandbox.url, "fee_list_d", keys=1)["keys"] == ["BK0000000001", "BK0000000002"]


@pytest.mark.parametrize("client_change, code", [
    ({"sm2_order": "C1C2C3"}, "40006"),
    ({"sm2_c1_prefix": "false"}, "40006"),
    ({"public_key": generate_sm2_keypair()[1]}, "40006"),
    ({"sm2_output": "base64"}, "40001"),
], ids=["wrong order", "no 04", "wrong key", "base64 to a hex server"])
def test_crypto_mismatches_are_answered_like_the_real_server_and_rejected(app, serve, client_change, code):
    sandbox = configure_sandbox(serve, **client_change)
    upload_id = plan_batch("fee_list_d", [fee_row(1)], common.new_msgid(CODE))

    assert pipeline.attempt(upload_id, 0) == UploadStatus.REJECTED

    rejected = upload(upload_id)
    assert rejected.last_code == code
    assert common.RESPONSE_CODES[code][1] in rejected.last_message  # the document's solution text
    assert records(sandbox.url, "fee_list_d")["count"] == 0


def test_a_server_expecting_no_04_refuses_an_extra_04(app, serve):
    sandbox = configure_sandbox(serve)  # the client sends 04; a second sandbox expects none
    config = {**sandbox.config, "sm2": {**sandbox.config["sm2"], "c1_prefix": False}}
    other = registry().sandboxes["shangrao"].make_app(config)
    url = serve(other)
    configure_sandbox_settings_url(url)
    upload_id = plan_batch("fee_list_d", [fee_row(1)], common.new_msgid(CODE))
    assert pipeline.attempt(upload_id, 0) == UploadStatus.REJECTED
    assert upload(upload_id).last_code == "40006"


def configure_sandbox_settings_url(url: str) -> None:
    from core.db import db
    from core.settings import save_regulator_setting

    save_regulator_setting("shangrao_insurance", "base_url", url)
    db.session.commit()


def test_another_institution_is_refused_with_40002(app, serve):
    configure_sandbox(serve, fixmedins_code="H36110299999")
    upload_id = plan_batch("fee_list_d", [fee_row(1)], common.new_msgid("H36110299999"))
    assert pipeline.attempt(upload_id, 0) == UploadStatus.REJECTED
    assert upload(upload_id).last_code == "40002"


def test_a_msgid_without_the_institution_prefix_is_refused_before_sending(sandbox):
    upload_id = plan_batch("fee_list_d", [fee_row(1)], "X" * 36)
    assert pipeline.attempt(upload_id, 0) == UploadStatus.REJECTED
    [attempt] = upload(upload_id).attempt_list
    assert attempt.wire_body is None and "msgid" in attempt.message


def test_the_sandbox_checks_service_code_msgid_and_fields(sandbox):
    body = {"infno": "FL01", "msgid": common.new_msgid(CODE), "fixmedins_code": CODE,
            "fixmedins_name": "上饶市信江人民医院", "data": "00"}
    answer = requests.post(f"{sandbox.url}/metadata/receive/drug_list_d", json=body, timeout=5).json()
    assert answer["code"] == 40004
    answer = requests.post(f"{sandbox.url}/metadata/receive/fee_list_d", json={**body, "msgid": CODE + "x"},
                           timeout=5).json()
    assert answer["code"] == 40003 and "msgid" in answer["msg"]
    answer = requests.post(f"{sandbox.url}/metadata/receive/fee_list_d", data="{not json", timeout=5).json()
    assert answer["code"] == 40001
    answer = requests.post(f"{sandbox.url}/metadata/receive/fee_list_d", json={**body, "data": "a" * 50002},
                           timeout=5).json()
    assert answer["code"] == 40003 and "data" in answer["msg"]


def test_the_sandbox_rejects_a_batch_with_an_invalid_field_naming_row_and_field(sandbox):
    # Bypass our own validation by sending with the sandbox told to refuse a field.
    faults(sandbox.url, reject_field="CNT")
    upload_id = plan_batch("fee_list_d", [fee_row(1), fee_row(2)], common.new_msgid(CODE))
    assert pipeline.attempt(upload_id, 0) == UploadStatus.REJECTED
    rejected = upload(upload_id)
    assert rejected.last_code == "40003" and "CNT" in rejected.last_message and "第1条" in rejected.last_message
    # The rows stay in the rejected upload; after the cause is fixed a person retries with the same msgid.
    faults(sandbox.url, reset=True)
    from core import ledger
    from core.db import db

    ledger.mark_for_manual_retry(rejected)
    db.session.commit()
    assert pipeline.attempt(upload_id, 1) == UploadStatus.SUCCEEDED
    assert records(sandbox.url, "fee_list_d")["count"] == 2


@pytest.mark.parametrize("fault, expected", [
    ({"code": 40000}, "40000"),
    ({"code": 50000}, "50000"),
    ({"error_rate": 1.0, "status": 502}, None),
])
def test_transient_answers_are_retried(sandbox, fault, expected):
    faults(sandbox.url, **fault)
    upload_id = plan_batch("fee_list_d", [fee_row(1)], common.new_msgid(CODE))
    assert pipeline.attempt(upload_id, 0) == UploadStatus.RETRY_WAIT
    if expected:
        assert upload(upload_id).last_code == expected


def test_a_batch_too_big_for_a_setting_changed_after_planning_is_refused_before_sending(sandbox):
    from core.db import db
    from core.settings import save_regulator_setting

    upload_id = plan_batch("fee_list_d", [fee_row(n) for n in range(10)], common.new_msgid(CODE))
    save_regulator_setting("shangrao_insurance", "max_data_chars", "2000")
    db.session.commit()
    assert pipeline.attempt(upload_id, 0) == UploadStatus.REJECTED
    assert "超过上限 2000" in upload(upload_id).last_message
    assert sandbox.state.requests == 0


def test_the_regulator_declares_every_response_code_with_its_solution(app):
    regulator = registry().regulators["shangrao_insurance"]
    assert set(regulator.codes) == {"200", "40000", "40001", "40002", "40003", "40004", "40005", "40006", "50000"}
    assert regulator.codes["40006"] == "解密失败：检查签名是否依据签名规范"
    names = {rt.name: rt for rt in registry().report_types.values() if rt.regulator == "shangrao_insurance"}
    assert set(names) == {"shangrao.fee_list_d", "shangrao.setl_d", "shangrao.mdtrt_d"}
    for report_type in names.values():
        assert report_type.cron == "*/10 * * * *" and report_type.catch_up == "latest"
    assert names["shangrao.mdtrt_d"].schema.patient_fields() >= {"PSN_NAME", "CERTNO", "TEL", "ADDR"}
