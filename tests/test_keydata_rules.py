"""Key-data rules that need no database: statDate arithmetic, dataFlag, SM4 known answers, the shipped
CT08.00.002 dictionary against the document, monthly field selection and answer classification."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from gmssl import sm4 as gmssl_sm4

from core.crypto import SM4Profile
from core.errors import ConfigurationError, RejectUpload
from core.hook_types import Response, Settings, UploadContext
from plugins.keydata import plugin, spec

SPECS = Path(__file__).resolve().parents[2] / "shared" / "specs"  # as tests/conftest.py's SPECS

SHANGHAI = ZoneInfo("Asia/Shanghai")
KEY = "0123456789abcdeffedcba9876543210"  # GB/T 32907 example key


def at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=SHANGHAI)


# --- statDate -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("slot", "stat_date", "start", "end"), [
    (at(2025, 2, 17, 8, 0), "2025/02/17 07:59:59", "2025-02-17 00:00", "2025-02-17 08:00"),  # the document's example
    (at(2025, 2, 24, 8, 0), "2025/02/24 07:59:59", "2025-02-24 00:00", "2025-02-24 08:00"),
    (at(2025, 2, 17, 1, 0), "2025/02/17 00:59:59", "2025-02-17 00:00", "2025-02-17 01:00"),
    # the 00:00 run sends the whole previous day
    (at(2025, 2, 17, 0, 0), "2025/02/16 23:59:59", "2025-02-16 00:00", "2025-02-17 00:00"),
    (at(2025, 3, 1, 0, 0), "2025/02/28 23:59:59", "2025-02-28 00:00", "2025-03-01 00:00"),
    (at(2024, 3, 1, 0, 0), "2024/02/29 23:59:59", "2024-02-29 00:00", "2024-03-01 00:00"),
    (at(2025, 1, 1, 0, 0), "2024/12/31 23:59:59", "2024-12-31 00:00", "2025-01-01 00:00"),
    # a manual run floors to the hour
    (at(2025, 2, 17, 8, 30), "2025/02/17 07:59:59", "2025-02-17 00:00", "2025-02-17 08:00"),
    (at(2025, 2, 17, 23, 59), "2025/02/17 22:59:59", "2025-02-17 00:00", "2025-02-17 23:00"),
])
def test_hourly_stat_date_is_the_last_second_before_the_slot_hour(slot, stat_date, start, end):
    period = spec.hourly_period(slot)
    assert period.stat_date_text == stat_date
    assert (f"{period.start:%Y-%m-%d %H:%M}", f"{period.end:%Y-%m-%d %H:%M}") == (start, end)
    assert spec.is_period_end(spec.HOSPITAL_DAILY, period.stat_date)


@pytest.mark.parametrize(("slot", "stat_date", "start"), [
    (at(2025, 2, 1, 0, 0), "2025/01/31 23:59:59", "2025-01-01"),  # the document's example
    (at(2025, 2, 3, 10, 15), "2025/01/31 23:59:59", "2025-01-01"),  # a late manual run: still last month
    (at(2024, 3, 1, 0, 0), "2024/02/29 23:59:59", "2024-02-01"),  # leap year
    (at(2025, 3, 1, 0, 0), "2025/02/28 23:59:59", "2025-02-01"),
    (at(2025, 5, 1, 0, 0), "2025/04/30 23:59:59", "2025-04-01"),
    (at(2025, 1, 1, 0, 0), "2024/12/31 23:59:59", "2024-12-01"),
])
def test_monthly_stat_date_is_the_last_second_of_last_month(slot, stat_date, start):
    period = spec.monthly_period(slot)
    assert period.stat_date_text == stat_date
    assert f"{period.start:%Y-%m-%d %H:%M:%S}" == f"{start} 00:00:00"
    assert period.end == slot.replace(tzinfo=None, day=1, hour=0, minute=0)
    assert spec.is_period_end(spec.MONTHLY, period.stat_date)


def test_a_stat_date_gives_back_its_period_for_a_resend():
    assert spec.period_of_stat_date(spec.HOSPITAL_DAILY, "2025/02/16 23:59:59") == spec.hourly_period(at(2025, 2, 17))
    assert spec.period_of_stat_date(spec.MONTHLY, "2024/02/29 23:59:59") == spec.monthly_period(at(2024, 3, 1))


@pytest.mark.parametrize(("kind", "text", "ok"), [
    (spec.HOSPITAL_DAILY, "2025/02/17 07:59:59", True),
    (spec.HOSPITAL_DAILY, "2025/02/17 07:59:58", False),
    (spec.HOSPITAL_DAILY, "2025/02/17 08:00:00", False),
    (spec.MONTHLY, "2025/01/31 23:59:59", True),
    (spec.MONTHLY, "2024/02/29 23:59:59", True),
    (spec.MONTHLY, "2025/01/30 23:59:59", False),
    (spec.MONTHLY, "2025/01/31 22:59:59", False),
])
def test_period_end_check(kind, text, ok):
    assert spec.is_period_end(kind, spec.parse_stat_date(text)) is ok


# --- dataFlag -----------------------------------------------------------------------------------

def context(kind: str, rows: list[dict], *, operation: str = "new", resend: bool = False,
            **settings: str) -> UploadContext:
    values = {"org_code": "ORG1", **settings}
    return UploadContext(
        id=1, report_type=plugin.report_types()[spec.KINDS.index(kind)], business_key="k",
        period="2025/01/31 23:59:59", department=None, rows=rows, idempotency_key="i", operation=operation,
        attempt_no=1, resend=resend, settings=Settings("keydata", values),
    )


DAILY_ROW = {name: i for i, name in enumerate(spec.HOSPITAL_DAILY_FIELDS, start=1)}


@pytest.mark.parametrize(("operation", "resend", "flag"), [
    ("new", False, "1"), ("new", True, "2"), ("update", True, "2"), ("update", False, "2"),
    ("delete", False, "3"), ("delete", True, "3"),
])
def test_data_flag(operation, resend, flag):
    payload = plugin.build_payload(context(spec.HOSPITAL_DAILY, [DAILY_ROW], operation=operation, resend=resend))
    assert payload.document["dataFlag"] == flag
    assert payload.document["statDate"] == "2025/01/31 23:59:59"


def test_total_person_times_only_when_switched_on():
    row = {**DAILY_ROW, "totalPersonTimes": 99}
    off = plugin.build_payload(context(spec.HOSPITAL_DAILY, [row])).document
    on = plugin.build_payload(context(spec.HOSPITAL_DAILY, [row], send_total_person_times="1")).document
    assert "totalPersonTimes" not in off
    assert on["totalPersonTimes"] == 99
    assert spec.schema(spec.HOSPITAL_DAILY).validate(on) == []


def test_a_missing_org_code_refuses_to_send():
    with pytest.raises(ConfigurationError, match="orgCode"):
        plugin.build_payload(context(spec.HOSPITAL_DAILY, [DAILY_ROW], org_code=""))


# --- monthly fields: hospital level, withheld items, proportions ------------------------------------

MONTH_ROW = {"keyDiseaseCount": 12, "aveCmi": 0.9876, "surgGrande3Num": 7, "surgTotalNum": 40, "surgGrade4Num": 9,
             "downPersonTimes": 1, "upPersonTimes": 2, "downPriPersonTimes": 3, "upPriPersonTimes": 4,
             "nursbedNum": 20, "psybedNum": 18}


def test_tertiary_hospitals_send_grade_four_figures_with_the_computed_proportion():
    doc = plugin.build_payload(context(spec.MONTHLY, [MONTH_ROW], hospital_level="tertiary")).document
    assert doc["surgGrade4Num"] == 9 and doc["surgGrade4Prop"] == 0.225
    assert "surgGrade3Prop" not in doc and "surgGrande3Num" not in doc
    assert doc["surgTotalNum"] == 40
    assert spec.schema(spec.MONTHLY).validate(doc) == []


def test_secondary_hospitals_send_grade_three_figures_spelled_as_the_regulator_spells_them():
    doc = plugin.build_payload(context(spec.MONTHLY, [MONTH_ROW], hospital_level="secondary",
                                       proportion_format="percent")).document
    assert doc["surgGrande3Num"] == 7 and doc["surgGrade3Prop"] == 17.5
    assert "surgGrade4Prop" not in doc and "surgGrade4Num" not in doc


def test_withheld_pilot_fields_are_left_out_and_required_ones_cannot_be_withheld():
    doc = plugin.build_payload(context(spec.MONTHLY, [MONTH_ROW], hospital_level="tertiary",
                                       withheld_monthly_fields="aveCmi， keyDiseaseCount")).document
    assert "aveCmi" not in doc and "keyDiseaseCount" not in doc and doc["nursbedNum"] == 20
    with pytest.raises(ConfigurationError, match="surgTotalNum"):
        plugin.build_payload(context(spec.MONTHLY, [MONTH_ROW], hospital_level="tertiary",
                                     withheld_monthly_fields="surgTotalNum"))
    with pytest.raises(ConfigurationError, match="不是月报字段"):
        plugin.build_payload(context(spec.MONTHLY, [MONTH_ROW], hospital_level="tertiary",
                                     withheld_monthly_fields="cmi"))


def test_no_surgeries_gives_a_zero_proportion_and_no_level_refuses():
    row = {**MONTH_ROW, "surgGrade4Num": 0, "surgTotalNum": 0}
    assert plugin.build_payload(context(spec.MONTHLY, [row], hospital_level="tertiary")).document[
        "surgGrade4Prop"] == 0
    with pytest.raises(ConfigurationError, match="医院等级"):
        plugin.build_payload(context(spec.MONTHLY, [MONTH_ROW]))
    with pytest.raises(RejectUpload, match="surgGrade4"):
        plugin.build_payload(context(spec.MONTHLY, [{**MONTH_ROW, "surgGrade4Num": None}], hospital_level="tertiary"))


# --- SM4 profiles: known answers ------------------------------------------------------------------

EXAMPLE = {"orgCode": "xxx", "statDate": "2025/02/17 07:59:59", "dataFlag": "1", "clinicPersonTimes": 1}


def test_default_profile_matches_an_independent_sm4_implementation():
    plaintext = spec.encode_document(EXAMPLE)
    assert plaintext == '{"orgCode":"xxx","statDate":"2025/02/17 07:59:59","dataFlag":"1","clinicPersonTimes":1}'
    body = spec.encrypt_body(plaintext, KEY, spec.sm4_profile({}), "raw", "data")
    peer = gmssl_sm4.CryptSM4(padding_mode=gmssl_sm4.PKCS7)
    peer.set_key(bytes.fromhex(KEY), gmssl_sm4.SM4_ENCRYPT)
    assert body == peer.crypt_ecb(plaintext.encode()).hex()
    assert body == body.lower() and len(body) == 2 * 16 * 6  # 85 bytes -> 6 blocks


def test_the_standard_sm4_vector_through_the_plugin_profile():
    profile = spec.sm4_profile({"sm4_padding": "none", "sm4_output": "HEX"})
    assert spec.encrypt_body("", KEY, profile, "raw", "") == ""
    from core.crypto import sm4_encrypt

    assert sm4_encrypt(bytes.fromhex(KEY), KEY, profile) == "681EDF34D206965E86B3E94F536E4246"


@pytest.mark.parametrize("settings", [
    {},
    {"sm4_mode": "CBC", "sm4_key_format": "text", "sm4_output": "base64"},
    {"sm4_mode": "CBC", "sm4_iv": "00112233445566778899aabbccddeeff", "sm4_output": "HEX"},
    {"sm4_padding": "zero", "sm4_key_format": "base64"},
])
@pytest.mark.parametrize("wrapping", ["raw", "json_field"])
def test_every_profile_round_trips_between_plugin_and_sandbox(settings, wrapping):
    key = {"hex": KEY, "text": "abcdefghijklmnop", "base64": "ASNFZ4mrze/+3LqYdlQyEA=="}[
        settings.get("sm4_key_format", "hex")]
    profile = spec.sm4_profile(settings)
    body = spec.encrypt_body(spec.encode_document(EXAMPLE), key, profile, wrapping, "payload")
    if wrapping == "json_field":
        assert list(json.loads(body)) == ["payload"]
    assert spec.decrypt_body(body, key, profile, wrapping, "payload") == EXAMPLE


def test_a_bad_profile_setting_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match="SM4"):
        spec.sm4_profile({"sm4_mode": "GCM"})
    with pytest.raises(ConfigurationError, match="SM4"):
        spec.encrypt_body("{}", "short", SM4Profile(), "raw", "data")


# --- the dictionary shipped with the plugin is section 六, complete ------------------------------

def document_dictionary() -> dict[str, str]:
    text = (SPECS / "keydata-key-indicators.txt").read_text("utf-8")
    section = text[text.index("CT08.00.002科室代码"):]
    cells = [c.strip() for c in section.splitlines() if c.strip()]
    pairs = {}
    for i, cell in enumerate(cells[:-1]):
        if re.fullmatch(r"[A-D]\d{2}(\.\d{2}){0,2}", cell):
            pairs[cell] = cells[i + 1]
    return pairs


def test_the_shipped_dictionary_is_every_code_of_the_document_with_its_parent():
    shipped = {e["code"]: e for e in spec.dictionary_entries()}
    expected = document_dictionary()
    assert len(expected) == 222
    assert {code: e["name"] for code, e in shipped.items()} == expected
    for code, entry in shipped.items():
        parent = code.rsplit(".", 1)[0] if "." in code else None
        assert entry["parent"] == parent


# --- answer classification ------------------------------------------------------------------------

@pytest.mark.parametrize(("response", "kind", "code"), [
    (Response(200, '{"code":200,"message":"success"}'), "success", "200"),
    (Response(200, '{"code":"200","message":"success"}'), "success", "200"),
    (Response(200, '{"code":400,"message":"解密失败"}'), "reject", "400"),
    (Response(200, '{"code":"500","message":"数据重复"}'), "reject", "500"),
    (Response(200, '{"code":500,"message":"系统繁忙，请稍后再试"}'), "retry", "500"),
    (Response(502, "<html>Bad Gateway</html>"), "retry", "HTTP 502"),
    (Response(500, '{"code":500,"message":"x"}'), "retry", "HTTP 500"),
    (Response(200, "<html>ok?</html>"), "retry", "HTTP 200"),
    (Response(404, "Not Found"), "reject", "HTTP 404"),
    (Response(None, "", error="超时: ReadTimeout"), "retry", None),
])
def test_classification(response, kind, code):
    outcome = plugin.classify(response)
    assert (outcome.kind, outcome.code) == (kind, code)
    if kind == "reject" and code == "400":
        assert outcome.message == "解密失败"


def test_a_resent_withdrawal_told_the_record_is_gone_succeeded():
    gone = Response(200, '{"code":404,"message":"删除失败：该统计日期没有已上报的数据"}')
    resent = context(spec.HOSPITAL_DAILY, [DAILY_ROW], operation="delete", resend=True)
    first = context(spec.HOSPITAL_DAILY, [DAILY_ROW], operation="delete", resend=False)
    assert plugin.parse_response(resent, gone).kind == "success"
    assert plugin.parse_response(first, gone).kind == "reject"


def test_an_iv_left_over_from_cbc_is_ignored_in_ecb():
    from plugins.keydata.spec import sm4_profile

    profile = sm4_profile({"sm4_mode": "ECB", "sm4_iv": "00" * 16})
    assert profile.mode == "ECB" and profile.iv is None
    assert sm4_profile({"sm4_mode": "CBC", "sm4_iv": "00" * 16}).iv == "00" * 16
