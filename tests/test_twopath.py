"""twopath: envelope and msgid, gateway signatures (known answers), sign-in expiry, filing → status
sync, revoke rules, the query-first re-send, catalogue import — against the real sandbox over HTTP."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import requests
import sqlalchemy as sa
from openpyxl import Workbook

from core import pipeline
from core.db import db
from core.models import Upload, UploadStatus
from core.scheduler import run_slot
from core.settings import save_regulator_setting

SHANGHAI = ZoneInfo("Asia/Shanghai")


# --- fixtures -----------------------------------------------------------------------------------------

@pytest.fixture
def tp_registry():
    """Only this plugin (and the core defaults), so other plugins' state cannot affect these tests."""
    from core.plugins import Registry, make_plugin_manager, use_registry
    from plugins.twopath import plugin

    reg = Registry(make_plugin_manager([plugin], entry_points_too=False))
    use_registry(reg)
    yield reg
    use_registry(None)


class Platform:
    def __init__(self, url: str, config: dict):
        self.url, self.config = url, config

    def records(self) -> dict:
        return requests.get(f"{self.url}/_sandbox/records", timeout=5).json()

    def faults(self, **faults) -> None:
        requests.post(f"{self.url}/_sandbox/faults", json=faults, timeout=5).raise_for_status()

    def advance(self, seconds: float) -> None:
        requests.post(f"{self.url}/_sandbox/clock", json={"advance_seconds": seconds}, timeout=5).raise_for_status()

    def review(self, appno: str, decision: str) -> None:
        requests.post(f"{self.url}/_sandbox/review", json={"appno": appno, "decision": decision},
                      timeout=5).raise_for_status()


def _configure(client_settings: dict, **overrides) -> None:
    for key, value in {**client_settings, **overrides}.items():
        save_regulator_setting("twopath", key, value)
    db.session.commit()


@pytest.fixture
def platform(tp_registry, app, serve):
    from plugins.twopath import sandbox

    client_settings, config = sandbox.demo_config("")
    config.update(review_delay_seconds=60, sign_ttl_seconds=3600, reject_every=0)
    url = serve(sandbox.make_app(config))
    _configure(client_settings["twopath"], base_url=url)
    return Platform(url, config)


def person(i: int = 0) -> dict:
    from plugins.twopath.sandbox import demo_people

    return demo_people()[i]


def new_filing(kind: str = "twopath", i: int = 0, *, code: str = "XL01XC03", begndate: str = "2025-03-01"):
    from plugins.twopath import filings

    p = person(i)
    found = filings.lookup_person("02", p["certno"], actor="tester", opter="op1", opter_name="经办甲")
    values = {
        "psn_no": found["psn_no"], "psn_name": found["psn_name"], "certno": found["certno"], "psn_cert_type": "01",
        "insutype": found["insutype"], "insuplc_admdvs": found["insuplc_admdvs"], "card_no": p["card_no"],
        "appy_date": begndate, "begndate": begndate, "enddate": "2026-02-28", "cond_abst": '病理"确诊"\\HER2+',
        "hosp_ide_date": begndate, "item_code": code, "item_name": "曲妥珠单抗注射液",
    }
    filing = filings.create_filing(kind, values, actor="tester")
    filings.doctor_approve(filing, "D1001", "周医生", actor="doctor")
    return filing


def submit_now(filing) -> Upload:
    from plugins.twopath import filings

    upload_id = filings.submit(filing, actor="tester", opter="op1", opter_name="经办甲", enqueue=False)
    pipeline.attempt(upload_id, 0)
    db.session.expire_all()
    return db.session.get(Upload, upload_id)


def uploads(report_type: str) -> list[Upload]:
    return list(db.session.execute(sa.select(Upload).filter_by(report_type=report_type).order_by(Upload.id)).scalars())


# --- envelope, msgid, 1.4 ---------------------------------------------------------------------------------

def test_msgid_is_institution_time_and_four_digit_sequence():
    from plugins.twopath.protocol import make_msgid, msgid_problem

    moment = datetime(2025, 2, 17, 8, 5, 9)
    msgid = make_msgid("H36010200001", moment, 7)
    assert msgid == "H36010200001" + "20250217080509" + "0007"
    assert len(msgid) == 30 and msgid_problem(msgid, "H36010200001") is None
    assert msgid_problem(msgid, "H36010200002") == "msgid 前 12 位应为定点医药机构编号"
    assert msgid_problem("H36010200001202502300805090007", "H36010200001")  # 30 February
    assert msgid_problem(msgid[:-1], "H36010200001") == "msgid 应为 30 位"
    with pytest.raises(ValueError):
        make_msgid("H3601", moment, 1)


def test_input_follows_the_rules_of_1_4():
    from plugins.twopath.protocol import build_input, parse_infcode, records_from_input, validate_input

    node = build_input("2511", {"PSN_NO": "P1", "psn_name": 'a"b\\c', "certno": "3601", "psn_cert_type": "01",
                                "appy_date": "2025-03-01", "begndate": "2025-03-01", "enddate": "2026-02-28",
                                "appy_type": "32", "twopathdruglist": [{"med_list_codg": "X", "med_list_name": "药"}],
                                "twopathfixmedins": [{"fixmedins_code": "H1", "fixmedins_name": "院",
                                                      "poolarea_no": "360100"}]})
    data = node["data"]
    assert data["psn_no"] == "P1"  # node names lower case
    assert data["gend"] == "" and data["agnter_name"] == ""  # empty strings sent as ""
    assert "appy_lmt" not in data  # its element structure is not documented: not sent
    assert set(node) == {"data", "twopathdruglist", "twopathfixmedins"}
    assert validate_input("2511", node) == []
    text = json.dumps(node, ensure_ascii=False)
    assert r'a\"b\\c' in text and json.loads(text)["data"]["psn_name"] == 'a"b\\c'  # escaping round-trips
    assert [str(p) for p in validate_input("2511", {**node, "data": {**data, "appy_type": "31"}})][0].startswith(
        "第1条 appy_type")
    revoke = build_input("2512", {"two_path_reg_sn_list": ["A1", "A2"]})
    assert revoke == {"data": {"two_path_reg_sn_list": ["A1", "A2"]}}
    assert records_from_input("2512", revoke) == [{"two_path_reg_sn_list": "A1"}, {"two_path_reg_sn_list": "A2"}]
    assert [parse_infcode(v) for v in (0, "0", -1, "-1", "1", " 0 ", "x", None, True)] == \
        [0, 0, -1, -1, 1, 0, None, None, None]


# --- gateway signatures: known answers computed independently -------------------------------------------

def test_csb_signature_known_answer():
    from plugins.twopath.protocol import csb_headers

    headers = csb_headers("2511", "ak-test", "sk-secret", "1.0.0", 1739750400123)
    text = "_api_access_key=ak-test&_api_name=hsa-fsi-2511&_api_timestamp=1739750400123&_api_version=1.0.0"
    expected = base64.b64encode(hmac.new(b"sk-secret", text.encode(), hashlib.sha1).digest()).decode()
    assert headers["_api_signature"] == expected
    assert headers["_api_name"] == "hsa-fsi-2511" and headers["_api_timestamp"] == "1739750400123"


def test_tif_signature_known_answer():
    from plugins.twopath.protocol import tif_headers

    headers = tif_headers("paas-1", "tok-xyz", 1739750400, "n0nce")
    expected = hashlib.sha256(b"1739750400" + b"tok-xyz" + b"n0nce" + b"1739750400").hexdigest()
    assert headers == {"x-tif-paasid": "paas-1", "x-tif-timestamp": "1739750400", "x-tif-nonce": "n0nce",
                       "x-tif-signature": expected}


def test_tif_gateway_is_selectable_and_a_wrong_secret_is_refused(tp_registry, app, serve):
    from plugins.twopath import filings, sandbox

    client_settings, config = sandbox.demo_config("")
    config.update(gateway="tif", tif_paasid="hosp-1", tif_token="token-abc")
    url = serve(sandbox.make_app(config))
    _configure(client_settings["twopath"], base_url=url, gateway="tif", tif_paasid="hosp-1", tif_token="token-abc",
               url_template="{base}/api/{infno}")
    assert filings.lookup_person("02", person()["certno"], actor="t")["psn_no"] == person()["psn_no"]

    _configure({}, tif_token="wrong-token")
    with pytest.raises(filings.FilingError, match="网关拒绝"):
        filings.lookup_person("02", person()["certno"], actor="t")
    failed = uploads("twopath.1101")[-1]  # signed in already: the lookup itself was refused
    assert failed.status == UploadStatus.REJECTED and failed.last_code == "401"


# --- sign-in ---------------------------------------------------------------------------------------------------

def test_sign_no_is_cached_per_operator_and_renewed_when_the_platform_says_it_expired(platform):
    from plugins.twopath import filings
    from plugins.twopath.models import SignIn

    filings.lookup_person("02", person(0)["certno"], actor="t", opter="op1", opter_name="甲")
    filings.lookup_person("02", person(1)["certno"], actor="t", opter="op1", opter_name="甲")
    assert len(uploads("twopath.9001")) == 1  # cached
    filings.lookup_person("02", person(1)["certno"], actor="t", opter="op2", opter_name="乙")
    assert len(uploads("twopath.9001")) == 2  # per operator
    first = db.session.get(SignIn, "op1").sign_no

    platform.advance(3601)  # past the sandbox's sign_ttl_seconds
    found = filings.lookup_person("02", person(2)["certno"], actor="t", opter="op1", opter_name="甲")

    assert found["psn_no"] == person(2)["psn_no"]
    db.session.expire_all()
    row = db.session.get(SignIn, "op1")
    assert row.sign_no != first and row.renewals == 1 and row.invalidated_at is None
    lookup = db.session.get(Upload, found["upload_id"])
    assert [a.code for a in lookup.attempt_list] == ["SIGN_EXPIRED", "0"]
    assert "签到已过期" in lookup.attempt_list[0].response_body
    assert len(uploads("twopath.9001")) == 3


def test_the_sandbox_refuses_calls_without_a_sign_in_and_duplicate_msgids(platform):
    envelope = {"infno": "1101", "msgid": "H36010200001202502170805090001", "mdtrtarea_admvs": "360100",
                "insuplc_admdvs": "", "recer_sys_code": "JXYB", "dev_no": "", "dev_safe_info": "", "cainfo": "",
                "signtype": "", "infver": "V1.0", "opter_type": "1", "opter": "x", "opter_name": "x",
                "inf_time": "2025-02-17 08:05:09", "fixmedins_code": "H36010200001", "fixmedins_name": "院",
                "sign_no": "", "input": {"data": {}}}
    platform.config["gateway"] = "none"  # this test talks to the envelope checks directly
    answer = requests.post(f"{platform.url}/CSB/hsa-fsi-1101", json=envelope, timeout=5).json()
    assert answer["infcode"] == "-1" and "签到" in answer["err_msg"]
    again = requests.post(f"{platform.url}/CSB/hsa-fsi-1101", json=envelope, timeout=5).json()
    assert "重复" in again["err_msg"]
    bad = requests.post(f"{platform.url}/CSB/hsa-fsi-1101", json={**envelope, "msgid": "short"}, timeout=5).json()
    assert "msgid" in bad["err_msg"]


# --- filing, sync, revoke -----------------------------------------------------------------------------------

def test_apply_then_status_sync_finds_approval_and_rejection(platform):
    from plugins.twopath import filings
    from plugins.twopath.models import Filing, FilingStatus

    platform.config["reject_every"] = 2  # the second filing the sandbox receives is rejected
    first, second = new_filing("twopath", 0), new_filing("chronic", 1, code="M03901")
    for filing in (first, second):
        upload = submit_now(filing)
        assert upload.status == UploadStatus.SUCCEEDED
    db.session.expire_all()
    first, second = db.session.get(Filing, first.id), db.session.get(Filing, second.id)
    stored = {f["appno"]: f for f in platform.records()["filings"]}
    assert first.status == FilingStatus.PENDING_REVIEW and first.appy_no in stored
    assert second.appy_no in stored and stored[second.appy_no]["kind"] == "chronic"

    slot = datetime(2025, 3, 1, 10, 0, tzinfo=SHANGHAI)
    ids = run_slot("twopath.sync", slot, enqueue=False)
    assert len(ids) == 2  # one 5311 and one 5301
    for upload_id in ids:
        assert pipeline.attempt(upload_id, 0) == UploadStatus.SUCCEEDED
    assert filings.sync_changes(ids) == {}  # not reviewed yet
    assert db.session.get(Filing, first.id).status == FilingStatus.PENDING_REVIEW

    platform.advance(61)  # past review_delay_seconds
    ids = run_slot("twopath.sync", slot.replace(minute=30), enqueue=False)
    for upload_id in ids:
        pipeline.attempt(upload_id, 0)
    db.session.expire_all()
    assert db.session.get(Filing, first.id).status == FilingStatus.APPROVED
    assert db.session.get(Filing, second.id).status == FilingStatus.REJECTED
    assert sum(filings.sync_changes(ids).values()) == 2
    assert [e.source for e in db.session.get(Filing, first.id).events][-1] == "sync"
    assert run_slot("twopath.sync", slot.replace(hour=11), enqueue=False) == []  # nothing left to ask


def test_revoke_only_unreviewed_filings(platform):
    from plugins.twopath import filings
    from plugins.twopath.models import Filing, FilingStatus

    unreviewed, reviewed = new_filing("twopath", 0), new_filing("chronic", 1, code="M03901")
    submit_now(unreviewed)
    submit_now(reviewed)
    platform.review(reviewed.appy_no, "approved")  # the platform reviewed it; we have not synced yet

    for filing in (unreviewed, reviewed):
        upload_id = filings.revoke(filing, actor="tester", reason="患者放弃", enqueue=False)
        pipeline.attempt(upload_id, 0)
    db.session.expire_all()
    unreviewed, reviewed = db.session.get(Filing, unreviewed.id), db.session.get(Filing, reviewed.id)
    assert unreviewed.status == FilingStatus.REVOKED
    assert reviewed.status == FilingStatus.PENDING_REVIEW and "撤销被拒" in reviewed.message
    states = {f["appno"]: f["status"] for f in platform.records()["filings"]}
    assert states == {unreviewed.appy_no: "revoked", reviewed.appy_no: "approved"}
    assert uploads("twopath.2504")[0].status == UploadStatus.REJECTED

    reviewed.status = FilingStatus.APPROVED
    db.session.commit()
    with pytest.raises(filings.FilingError, match="只能撤销待医保审核"):
        filings.revoke(reviewed, actor="tester")


def test_a_retried_filing_after_an_unknown_outcome_queries_first_and_never_files_twice(platform):
    from plugins.twopath.models import Filing, FilingStatus

    filing = new_filing("twopath", 0)
    platform.faults(lose_response=True)  # the platform stores it, the answer is lost
    upload = submit_now(filing)
    assert upload.status == UploadStatus.RETRY_WAIT and upload.delivery_uncertain
    assert len(platform.records()["filings"]) == 1
    platform.faults(reset=True)

    assert pipeline.attempt(upload.id, upload.attempts) == UploadStatus.SUCCEEDED

    db.session.expire_all()
    records = platform.records()
    assert records["calls"]["2511"] == 1 and len(records["filings"]) == 1  # never a second filing
    assert records["calls"]["5311"] == 1
    upload = db.session.get(Upload, upload.id)
    second = upload.attempt_list[-1]
    assert second.resend and second.code == "QUERY_FIRST" and second.http_status is None
    assert "未发送" in second.url and second.wire_body is None  # answered by the query, nothing sent
    filing = db.session.get(Filing, filing.id)
    assert filing.status == FilingStatus.PENDING_REVIEW
    assert filing.appy_no == records["filings"][0]["appno"]


def test_a_retried_filing_that_never_arrived_is_sent_after_the_query(platform):
    from plugins.twopath.models import Filing

    filing = new_filing("chronic", 3, code="M03900")
    platform.faults(error_rate=1, status=502)  # refused before the platform looked at it
    upload = submit_now(filing)
    assert upload.status == UploadStatus.RETRY_WAIT and upload.delivery_uncertain
    platform.faults(reset=True)

    assert pipeline.attempt(upload.id, upload.attempts) == UploadStatus.SUCCEEDED
    records = platform.records()
    assert records["calls"]["5301"] == 1 and records["calls"]["2503"] == 1 and len(records["filings"]) == 1
    db.session.expire_all()
    assert db.session.get(Filing, filing.id).appy_no == records["filings"][0]["appno"]


def test_a_platform_rejection_of_a_filing_is_shown_on_it(platform):
    from plugins.twopath.models import Filing, FilingStatus

    filing = new_filing("twopath", 0)
    platform.faults(reject_field="cond_abst")
    upload = submit_now(filing)
    assert upload.status == UploadStatus.REJECTED
    db.session.expire_all()
    filing = db.session.get(Filing, filing.id)
    assert filing.status == FilingStatus.SUBMIT_REJECTED and "cond_abst" in filing.message


def test_a_queued_filing_is_sent_by_a_real_worker(platform, work):
    from plugins.twopath import filings
    from plugins.twopath.models import Filing, FilingStatus

    filing = new_filing("twopath", 4)
    filings.submit(filing, actor="tester")
    work()
    assert db.session.get(Filing, filing.id).status == FilingStatus.PENDING_REVIEW


# --- catalogue import / export ---------------------------------------------------------------------------------

def _workbook(rows: list[list]) -> bytes:
    book = Workbook()
    for row in rows:
        book.active.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def test_catalogue_import_with_a_bad_row_applies_nothing_and_names_row_and_column(tp_registry, app):
    from plugins.twopath import catalogue
    from plugins.twopath.models import Drug

    bad = _workbook([["中心药品项目编码", "中心药品项目名称", "启用"],
                     ["XL01XC03", "曲妥珠单抗注射液", "是"],
                     ["X" * 31, "阿法替尼片", "是"],
                     ["XL01XC03", "", "也许"]])
    applied, errors = catalogue.import_workbook("drugs", bad)
    assert applied == 0
    assert [str(e) for e in errors] == [
        "第 3 行「中心药品项目编码」：长度 31 超过 30",
        "第 4 行「中心药品项目编码」：与第 2 行重复",
        "第 4 行「中心药品项目名称」：不能为空",
        "第 4 行「启用」：应为“是”或“否”",
    ]
    assert db.session.scalar(sa.select(sa.func.count(Drug.id))) == 0

    good = _workbook([["中心药品项目名称", "中心药品项目编码"], ["曲妥珠单抗注射液", "XL01XC03"], [None, None],
                      ["阿法替尼片", "XL01XE13"]])
    assert catalogue.import_workbook("drugs", good) == (2, [])
    again = catalogue.import_workbook("drugs", catalogue.export_workbook("drugs"))
    assert again == (2, []) and db.session.scalar(sa.select(sa.func.count(Drug.id))) == 2
    assert catalogue.import_workbook("drugs", b"not a workbook")[1][0].column == "文件"


@pytest.mark.slow  # a real RQ worker sends five filings
def test_the_demo_seed_creates_filings_in_several_states_that_the_worker_sends(platform, work):
    from plugins.twopath import sandbox
    from plugins.twopath.models import Drug, Filing, FilingStatus

    sandbox.seed()
    states = [f.status for f in db.session.execute(sa.select(Filing).order_by(Filing.id)).scalars()]
    assert states[:3] == [FilingStatus.DRAFT, FilingStatus.DRAFT, FilingStatus.DOCTOR_APPROVED]
    assert states[3:] == [FilingStatus.SUBMITTING] * 5
    assert db.session.scalar(sa.select(sa.func.count(Drug.id))) == len(sandbox.DEMO_DRUGS)

    work()

    states = [f.status for f in db.session.execute(sa.select(Filing).order_by(Filing.id)).scalars()]
    assert states[3:] == [FilingStatus.PENDING_REVIEW] * 5
    assert len(platform.records()["filings"]) == 5
