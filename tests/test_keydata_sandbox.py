"""The key-data sandbox regulator on its own, over real HTTP: authCode, decryption, field validation with
the shared schemas, statDate rules, departName against departNo, held records and faults."""

from __future__ import annotations

import time

import pytest
import requests

from plugins.keydata import sandbox, spec

DAILY = {"orgCode": "ORG", "statDate": "2025/02/17 07:59:59", "dataFlag": "1", "clinicPersonTimes": 1,
         "emerPersonTimes": 2, "feverPersonTimes": 3, "clinicMediFreq": 4, "presCount": 5, "enterPersonTimes": 6,
         "outPersonTimes": 7}
DEPT = {"orgCode": "ORG", "statDate": "2025/02/24 07:59:59", "departNoExp": "001", "departNameExp": "测试",
        "departNo": "A01", "departName": "预防保健科", "dataFlag": "1", "personTimes": 100}
MONTH = {"orgCode": "ORG", "statDate": "2025/01/31 23:59:59", "dataFlag": "1", "surgTotalNum": 10,
         "downPersonTimes": 1, "upPersonTimes": 1, "downPriPersonTimes": 1, "upPriPersonTimes": 1, "nursbedNum": 1}


@pytest.fixture
def regulator(serve):
    client, config = sandbox.demo_config("http://unused")
    config["org_code"] = "ORG"
    url = serve(sandbox.make_app(config))
    settings = client["keydata"]

    def send(kind: str, document: dict, *, auth: str | None = None, key: str | None = None):
        body = spec.encrypt_body(spec.encode_document(document), key or settings["sm4_key"],
                                 spec.sm4_profile(settings), "raw", "data")
        answer = requests.post(f"{url}/{kind}", data=body.encode(), timeout=5,
                               headers={"authCode": settings["auth_code"] if auth is None else auth})
        return answer.json()

    def records(**query) -> list[dict]:
        return requests.get(f"{url}/_sandbox/records", params=query, timeout=5).json()["records"]

    def fault(**wanted) -> dict:
        return requests.post(f"{url}/_sandbox/faults", json=wanted, timeout=5).json()

    send.url, send.records, send.fault = url, records, fault
    return send


def test_the_documents_examples_are_accepted_and_held(regulator):
    assert regulator("hospital_daily", {**DAILY, "totalPersonTimes": 1}) == {"code": 200, "message": "success"}
    assert regulator("dept_daily", DEPT)["code"] == 200
    assert regulator("monthly", MONTH)["code"] == 200
    assert [r["report"] for r in regulator.records()] == ["dept_daily", "hospital_daily", "monthly"]


def test_auth_code_and_decryption_are_checked(regulator):
    assert regulator("hospital_daily", DAILY, auth="wrong") == {"code": 401, "message": "authCode 无效：接口权限码错误或缺失"}
    answer = regulator("hospital_daily", DAILY, key="00" * 16)
    assert answer["code"] == 400 and answer["message"].startswith("解密失败")
    assert regulator("hospital_daily", {**DAILY, "orgCode": "OTHER"})["code"] == 403
    assert regulator.records() == []


@pytest.mark.parametrize(("kind", "document", "reason"), [
    ("hospital_daily", {**DAILY, "statDate": "2025/02/17 07:30:00"}, "小时的最后一秒"),
    ("hospital_daily", {**DAILY, "statDate": "2025-02-17 07:59:59"}, "不符合格式"),
    ("hospital_daily", {**DAILY, "presCount": "5"}, "presCount"),
    ("hospital_daily", {**DAILY, "dataFlag": 1}, "dataFlag"),
    ("hospital_daily", {**DAILY, "dataFlag": "4"}, "不在代码表中"),
    ("hospital_daily", {k: v for k, v in DAILY.items() if k != "outPersonTimes"}, "outPersonTimes: 必填字段缺失"),
    ("hospital_daily", {**DAILY, "extra": 1}, "字段不在接口字段表中"),
    ("monthly", {**MONTH, "statDate": "2025/01/30 23:59:59"}, "月的最后一秒"),
    ("monthly", {**MONTH, "statDate": "2024/02/29 23:59:59", "surgGrade3Num": 1}, "surgGrade3Num"),
    ("dept_daily", {**DEPT, "departNo": "A99"}, "不在代码字典 CT08.00.002 中"),
    ("dept_daily", {**DEPT, "departName": "内科"}, "与科室编码 A01 的含义“预防保健科”不符"),
])
def test_fields_are_validated_like_the_platform(regulator, kind, document, reason):
    answer = regulator(kind, document)
    assert answer["code"] == 400
    assert reason in answer["message"]
    assert regulator.records() == []


def test_new_update_delete_and_duplicates(regulator):
    assert regulator("hospital_daily", DAILY)["code"] == 200
    duplicate = regulator("hospital_daily", {**DAILY, "presCount": 9})
    assert duplicate["code"] == 409 and "数据重复" in duplicate["message"]
    assert regulator("hospital_daily", {**DAILY, "dataFlag": "2", "presCount": 9})["code"] == 200
    [record] = regulator.records(statDate=DAILY["statDate"])
    assert (record["presCount"], record["dataFlag"]) == (9, "2")
    assert regulator("hospital_daily", {**DAILY, "dataFlag": "3"})["code"] == 200
    assert regulator.records() == []
    assert regulator("hospital_daily", {**DAILY, "dataFlag": "3"})["code"] == 404

    # per department: another department at the same statDate is not a duplicate
    assert regulator("dept_daily", DEPT)["code"] == 200
    assert regulator("dept_daily", {**DEPT, "departNoExp": "002"})["code"] == 200
    assert regulator("dept_daily", DEPT)["code"] == 409
    assert len(regulator.records(report="dept_daily")) == 2


def test_faults_can_be_injected_counted_and_reset(regulator):
    assert regulator.fault(error_rate=1.0, status=502, count=1)["faults"]["count"] == 1
    answer = requests.post(f"{regulator.url}/hospital_daily", data="x", timeout=5)
    assert answer.status_code == 502
    assert regulator("hospital_daily", DAILY)["code"] == 200  # the one faulty answer is used up

    regulator.fault(non_json=True)
    answer = requests.post(f"{regulator.url}/hospital_daily", data="x", timeout=5)
    assert answer.status_code == 200 and answer.text.startswith("<html>")
    regulator.fault(reset=True, slow_seconds=0.3)
    began = time.monotonic()
    assert regulator("hospital_daily", {**DAILY, "dataFlag": "2"})["code"] == 200
    assert time.monotonic() - began >= 0.3
    assert regulator.fault(reset=True)["faults"] == {}
    assert requests.post(f"{regulator.url}/_sandbox/faults", json={"bogus": 1}, timeout=5).status_code == 400


def test_a_sandbox_without_keys_says_so(serve):
    url = serve(sandbox.make_app({}))
    answer = requests.post(f"{url}/hospital_daily", data="x", timeout=5).json()
    assert answer["code"] == 500 and "沙箱未配置" in answer["message"]
