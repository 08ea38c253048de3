"""配置管理 › 监管平台设置: settings through core.settings, write-only secrets, admin-only keys, connection tests
and the SM4/SM2 known-answer check."""

from __future__ import annotations

import re

from flask import Flask
from test_web_support import login

from core.hook_types import ProbeResult, ProbeStep, Regulator, SettingField
from core.hookspecs import hookimpl
from core.models import AuditLog

SECRET = "authcode-VERY-secret-9876"


def _audit(action: str) -> list[AuditLog]:
    from core.db import db

    return db.session.execute(db.select(AuditLog).filter_by(action=action).order_by(AuditLog.id)).scalars().all()


def test_configuration_pages_are_in_the_navigation(app):
    client = login(app, "viewer")
    page = client.get("/config/").get_data(as_text=True)
    assert 'href="/config/"' in page and "代码对照" in page and "字段映射配置" in page
    assert client.get("/config/regulators/").status_code == 200


def test_only_admin_edits_regulator_settings_and_secrets_stay_write_only(app):
    from core import settings

    operator = login(app, "operator")
    page = operator.get("/config/regulators/keydata").get_data(as_text=True)
    assert 'name="auth_code"' in page and "disabled" in page and "只有管理员可以修改监管平台设置" in page
    refused = operator.post("/config/regulators/keydata", {"org_code": "H36110200001", "timeout": "12"})
    assert refused.status_code == 403
    assert settings.regulator_settings("keydata").get("org_code") != "H36110200001"

    admin = login(app, "admin")
    assert admin.post("/config/regulators/keydata", {"org_code": "H36110200001", "timeout": "12"}).status_code == 302
    assert settings.regulator_settings("keydata").get("org_code") == "H36110200001"
    admin.post("/config/regulators/keydata", {"auth_code": SECRET})
    assert settings.regulator_settings("keydata").get("auth_code") == SECRET
    page = admin.get("/config/regulators/keydata").get_data(as_text=True)
    assert SECRET not in page and "已设置：" in page  # masked, never revealed
    admin.post("/config/regulators/keydata", {"auth_code": "", "org_code": "H36110200001"})  # empty = unchanged
    assert settings.regulator_settings("keydata").get("auth_code") == SECRET
    entries = _audit("regulator.settings")
    assert SECRET not in repr([(e.before, e.after) for e in entries])
    assert entries[-1].after == {"auth_code": "（已更换）"}


def test_choice_settings_are_validated(app):
    admin = login(app, "admin")
    page = admin.post("/config/regulators/keydata", {"sm4_mode": "XTS"}, follow_redirects=True).get_data(as_text=True)
    assert "应为 ECB、CBC 之一" in page


def test_generic_connection_test_reports_each_step_and_405_is_not_ok(app, serve):
    from core import settings
    from core.db import db

    target = Flask("regulator")

    @target.get("/api/upload")
    def upload():
        return "method not allowed here", 405

    url = serve(target)
    settings.save_regulator_setting("keydata", "hospital_daily_url", f"{url}/api/upload")
    settings.save_regulator_setting("keydata", "dept_daily_url", "http://127.0.0.1:9/closed")
    db.session.commit()
    client = login(app, "admin")
    html = client.post("/config/regulators/keydata/test").get_data(as_text=True)
    assert "连接失败" in html and "部分地址不可达或应答异常" in html
    assert "TCP：已连接" in html and "HTTP 405" in html and "不能证明是监管平台接口" in html
    assert "无法连接 127.0.0.1:9" in html
    assert re.search(r"\d+ ms", html)
    assert _audit("regulator.test")[-1].after == {"ok": False, "reachable": False}


class ProbePlugin:
    """A plugin offering its own test_connection (a harmless request of its protocol)."""

    @hookimpl
    def register_regulators(self):
        return [Regulator("probe", "探测平台", settings=(SettingField("url", "地址"),
                                                         SettingField("token", "令牌", secret=True)))]

    @hookimpl
    def test_connection(self, regulator, settings):
        return ProbeResult(True, f"平台应答正常，令牌 {settings.get('token')} 有效", url=settings.get("url"),
                           status=200, steps=(ProbeStep("鉴权", True, f"令牌 {settings.get('token')}"),))


def test_plugin_connection_test_is_used_and_never_echoes_secrets(app, registry_with):
    from core import settings
    from core.db import db

    registry_with(ProbePlugin())
    settings.save_regulator_setting("probe", "token", "tok-SECRET-1")
    db.session.commit()
    html = login(app, "admin").post("/config/regulators/probe/test").get_data(as_text=True)
    assert "连接正常" in html and "平台应答正常" in html and "tok-SECRET-1" not in html
    assert "鉴权" in html and "通过" in html and "HTTP 200" in html


def test_known_answer_finds_the_sm4_profile_and_admin_applies_it(app):
    from core import settings
    from core.crypto import SM4Profile, sm4_encrypt

    key = "0123456789abcdeffedcba9876543210"
    profile = SM4Profile(mode="CBC", padding="pkcs7", key_format="hex", output="base64", iv="0" * 32)
    ciphertext = sm4_encrypt(b'{"orgCode":"H1"}', key, profile)
    admin = login(app, "admin")
    html = admin.post("/config/regulators/keydata/known-answer",
                      {"algorithm": "sm4", "key": key, "plaintext": '{"orgCode":"H1"}',
                       "ciphertext": ciphertext}).get_data(as_text=True)
    assert profile.describe() in html and "应用到设置" in html and key not in html
    miss = admin.post("/config/regulators/keydata/known-answer",
                      {"algorithm": "sm4", "key": key, "plaintext": "其他", "ciphertext": ciphertext})
    assert "没有任何参数组合" in miss.get_data(as_text=True)
    admin.post("/config/regulators/keydata/apply-sm4", profile.to_dict())
    stored = settings.regulator_settings("keydata")
    assert (stored.get("sm4_mode"), stored.get("sm4_output"), stored.get("sm4_iv")) == ("CBC", "base64", "0" * 32)
    operator = login(app, "operator")
    assert operator.post("/config/regulators/keydata/apply-sm4", profile.to_dict()).status_code == 403


def test_known_answer_sm2(app):
    from core.crypto import SM2Profile, generate_sm2_keypair, sm2_encrypt

    private, public = generate_sm2_keypair()
    profile = SM2Profile(order="C1C2C3", c1_prefix=False, output="HEX")
    ciphertext = sm2_encrypt(b"hello", public, profile)
    html = login(app, "operator").post("/config/regulators/keydata/known-answer", {
        "algorithm": "sm2", "key": private, "plaintext": "hello", "ciphertext": ciphertext}).get_data(as_text=True)
    assert profile.describe() in html and private not in html
