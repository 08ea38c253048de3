"""测试连接 of the built-in plugins, against their real sandbox servers: twopath signs in (9001) and
reports each step; keydata and shangrao_insurance, whose documents define no harmless call, send
nothing and say so, checking their keys locally. No probe files data or shows a secret."""

from __future__ import annotations

import pytest
import requests
import sqlalchemy as sa
from flask import Flask, redirect
from test_web_support import login

from core.db import db
from core.models import Upload
from core.plugins import registry
from core.settings import regulator_settings, save_regulator_setting


def _save(regulator: str, values: dict) -> None:
    for key, value in values.items():
        save_regulator_setting(regulator, key, value)
    db.session.commit()


def _probe(regulator: str):
    return registry().test_connection(regulator, regulator_settings(regulator))


def _shown(result) -> str:
    """Everything a probe result puts on the page."""
    return repr((result.message, result.url, [(s.name, s.detail) for s in result.steps]))


def _uploads() -> int:
    return db.session.execute(sa.select(sa.func.count()).select_from(Upload)).scalar_one()


# --- twopath: 9001 sign-in ------------------------------------------------------------------------------

class Platform:
    def __init__(self, url: str, config: dict, client: dict):
        self.url, self.config, self.client = url, config, client

    def records(self) -> dict:
        return requests.get(f"{self.url}/_sandbox/records", timeout=5).json()

    def faults(self, **faults) -> None:
        requests.post(f"{self.url}/_sandbox/faults", json=faults, timeout=5).raise_for_status()

    def secrets(self) -> list[str]:
        return [self.client["csb_access_key"], self.client["csb_secret_key"]]


@pytest.fixture
def twopath(app, serve):
    from plugins.twopath import sandbox

    client_settings, config = sandbox.demo_config("")
    url = serve(sandbox.make_app(config))
    client = {**client_settings["twopath"], "base_url": url}
    _save("twopath", client)
    return Platform(url, config, client)


def test_the_twopath_probe_signs_in_and_files_nothing(twopath):
    from plugins.twopath.models import SignIn

    result = _probe("twopath")

    assert result.ok and result.conclusive, result
    assert "签到【9001】成功" in result.message
    assert [s.name for s in result.steps] == ["报文与签名", "请求", "网关认证", "应答格式", "签到【9001】"]
    assert all(s.ok for s in result.steps)
    assert result.url == f"{twopath.url}/CSB/hsa-fsi-9001" and result.status == 200 and result.elapsed_ms >= 0
    seen = twopath.records()
    assert seen["calls"] == {"9001": 1} and seen["filings"] == []  # a sign-in, no report data
    assert _uploads() == 0 and db.session.execute(sa.select(SignIn)).first() is None  # nothing kept here
    shown = _shown(result)
    assert all(secret not in shown for secret in twopath.secrets())
    assert all(s["sign_no"] not in shown for s in seen["signins"])  # the session number is never shown


def test_a_wrong_gateway_secret_fails_the_twopath_probe_naming_the_keys(twopath):
    _save("twopath", {"csb_secret_key": "not-the-secret-key"})

    result = _probe("twopath")

    assert not result.ok and result.conclusive and result.status == 401
    assert "网关拒绝" in result.message and "签名错误" in result.message and "SecretKey" in result.message
    assert [(s.name, s.ok) for s in result.steps][-1] == ("网关认证", False)
    assert "not-the-secret-key" not in _shown(result) and twopath.records()["calls"] == {}


def test_a_wrong_institution_code_fails_the_twopath_probe_with_the_platforms_reason(twopath):
    _save("twopath", {"fixmedins_code": "H36010299999"})

    result = _probe("twopath")

    assert not result.ok and result.conclusive and result.status == 200
    assert "平台拒绝签到【9001】" in result.message and "应为定点医药机构编号" in result.message
    assert result.steps[-1].name == "签到【9001】" and not result.steps[-1].ok


def test_a_wrong_signing_key_fails_the_twopath_probe_at_the_data_signature(app, serve):
    from core.crypto import generate_sm2_keypair
    from plugins.twopath import sandbox

    client_settings, config = sandbox.demo_config("")
    _, platform_public = generate_sm2_keypair()
    other_private, _ = generate_sm2_keypair()
    config.update(signtype="SM2", sign_public_key=platform_public)
    url = serve(sandbox.make_app(config))
    _save("twopath", {**client_settings["twopath"], "base_url": url, "signtype": "SM2",
                      "sign_private_key": other_private})

    result = _probe("twopath")

    assert not result.ok and result.conclusive and "cainfo" in result.message and "数据签名" in result.message
    assert other_private not in _shown(result)


def test_a_platform_error_or_a_dropped_connection_fails_the_twopath_probe(twopath):
    twopath.faults(error_rate=1, status=500)
    result = _probe("twopath")
    assert not result.ok and result.conclusive and result.status == 500 and "平台暂时不可用" in result.message

    twopath.faults(reset=True)
    twopath.faults(inject=[{"fault": "drop_before_store", "count": 1}])
    result = _probe("twopath")
    assert not result.ok and result.conclusive and result.status is None
    assert "医保平台没有应答" in result.message and result.steps[-1] == result.steps[1]
    assert not result.steps[1].ok

    twopath.faults(reset=True)
    assert _probe("twopath").ok  # the same settings pass once the platform answers again


def test_the_twopath_probe_never_follows_a_redirect(twopath, serve):
    hits = []
    elsewhere = Flask("elsewhere")

    @elsewhere.post("/<path:path>")
    def catch(path):
        hits.append(path)
        return "{}"

    target = serve(elsewhere)
    bouncer = Flask("bouncer")

    @bouncer.post("/<path:path>")
    def bounce(path):
        return redirect(f"{target}/{path}", code=307)

    _save("twopath", {"base_url": serve(bouncer)})
    result = _probe("twopath")
    assert not result.ok and result.status == 307 and "重定向" in result.message and hits == []


def test_missing_twopath_settings_are_reported_without_sending(twopath):
    _save("twopath", {"recer_sys_code": ""})

    result = _probe("twopath")

    assert not result.ok and not result.conclusive and "recer_sys_code" in result.message
    assert twopath.records()["calls"] == {}


# --- keydata and shangrao_insurance: no harmless call in the documents --------------------------------

@pytest.fixture
def keydata(app, serve):
    from plugins.keydata import sandbox

    client_settings, config = sandbox.demo_config("")
    url = serve(sandbox.make_app(config))
    client = {**sandbox.demo_config(url)[0]["keydata"], **{k: config[k] for k in ("auth_code", "sm4_key")}}
    _save("keydata", client)
    client["url"] = url
    return client


def _keydata_requests(url: str) -> list:
    return requests.get(f"{url}/_sandbox/requests", timeout=5).json()["requests"]


def test_the_keydata_probe_says_the_document_has_no_harmless_call_and_sends_nothing(keydata):
    result = _probe("keydata")

    assert not result.ok and not result.conclusive
    assert "文档未定义无副作用的测试接口" in result.message and "本地检查通过" in result.message
    assert [(s.name, s.ok) for s in result.steps] == [("设置", True), ("SM4 加密自检", True), ("协议级测试", False)]
    assert _keydata_requests(keydata["url"]) == [] and _uploads() == 0
    shown = _shown(result)
    assert keydata["auth_code"] not in shown and keydata["sm4_key"] not in shown


def test_a_malformed_sm4_key_is_named_by_the_keydata_probe(keydata):
    _save("keydata", {"sm4_key": "abc123-not-a-key", "auth_code": ""})

    result = _probe("keydata")

    assert not result.conclusive and "本地检查未通过" in result.message
    settings_step, crypto_step = result.steps[0], result.steps[1]
    assert not settings_step.ok and "接口权限码 authCode" in settings_step.detail
    assert not crypto_step.ok and "SM4 密钥或加密参数有误" in crypto_step.detail
    assert "abc123-not-a-key" not in _shown(result) and _keydata_requests(keydata["url"]) == []


@pytest.fixture
def shangrao(app, serve):
    from test_shangrao_support import configure_sandbox

    return configure_sandbox(serve)


def test_the_shangrao_probe_says_the_document_has_no_harmless_call_and_sends_nothing(shangrao):
    result = _probe("shangrao_insurance")

    assert not result.ok and not result.conclusive
    assert "文档未定义无副作用的测试接口" in result.message and "3.1 服务清单" in result.message
    assert [(s.name, s.ok) for s in result.steps] == [("设置", True), ("SM2 加密自检", True), ("协议级测试", False)]
    assert shangrao.state.requests == 0 and shangrao.state.batches == [] and _uploads() == 0


def test_a_malformed_public_key_or_institution_code_is_named_by_the_shangrao_probe(shangrao):
    _save("shangrao_insurance", {"public_key": "04" + "ab" * 20, "fixmedins_code": "H3611"})

    result = _probe("shangrao_insurance")

    assert not result.conclusive and "本地检查未通过" in result.message
    assert not result.steps[0].ok and "应为 12 位" in result.steps[0].detail
    assert not result.steps[1].ok and "监管平台 SM2 公钥或加密设置有误" in result.steps[1].detail
    assert shangrao.state.requests == 0


# --- the admin page --------------------------------------------------------------------------------------

def test_the_connection_page_shows_each_built_in_regulators_protocol_result(app, twopath, keydata, shangrao,
                                                                            serve):
    from test_ihs_support import configure_sandbox as configure_ihs

    configure_ihs(serve)
    admin = login(app, "admin")
    pages = {name: admin.post(f"/config/regulators/{name}/test").get_data(as_text=True)
             for name in ("twopath", "keydata", "shangrao_insurance", "ihs_supervision")}

    assert "连接正常" in pages["twopath"] and "监管平台按其协议应答：签到【9001】成功" in pages["twopath"]
    assert "协议检查项" in pages["twopath"] and "网关认证" in pages["twopath"]
    for name, crypto in (("keydata", "SM4 加密自检"), ("shangrao_insurance", "SM2 加密自检")):
        assert "连接正常" not in pages[name] and "文档未定义无副作用的测试接口" in pages[name], name
        assert crypto in pages[name] and "协议检查项" in pages[name]
    assert "连接正常" not in pages["ihs_supervision"] and "签名已知答案门禁" in pages["ihs_supervision"]
    assert twopath.records()["filings"] == [] and _keydata_requests(keydata["url"]) == []
    secrets = [*twopath.secrets(), keydata["auth_code"], keydata["sm4_key"]]
    assert not any(secret in page for secret in secrets for page in pages.values())

    save_regulator_setting("twopath", "csb_secret_key", "not-the-secret-key")
    db.session.commit()
    refused = admin.post("/config/regulators/twopath/test").get_data(as_text=True)
    assert "协议测试未通过" in refused and "网关拒绝" in refused and "not-the-secret-key" not in refused
