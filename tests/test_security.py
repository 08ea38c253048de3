"""The security review's findings (issue 12), one test each: script injection, a lower role reaching
secrets, open redirects, sessions that end, the client address behind a proxy, login throttling, patient
identifiers by role, the key kept out of plain settings and the audit log, Chinese error pages, caps,
and the crypto self-test at start."""

from __future__ import annotations

import io
import json
import re
from datetime import UTC
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask, redirect
from openpyxl import Workbook
from test_web_support import csrf_from, login, make_user

from core import settings
from core.db import db
from core.models import AuditLog

ROOT = Path(__file__).resolve().parents[1]
SECRET = "authcode-VERY-secret-9876"
XSS = "</script><img src=x onerror=alert(1)>"


def _audit(action: str) -> list[AuditLog]:
    db.session.expire_all()
    return db.session.execute(sa.select(AuditLog).filter_by(action=action).order_by(AuditLog.id)).scalars().all()


def _xlsx(rows: list[list]) -> bytes:
    book = Workbook()
    for row in rows:
        book.active.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _templates() -> list[Path]:
    return sorted((ROOT / "web" / "templates").rglob("*.html")) + sorted(ROOT.glob("plugins/*/templates/**/*.html"))


# --- script injection -------------------------------------------------------------------------------------

def test_templates_have_no_inline_handlers_scripts_styles_or_safe_filter():
    for path in _templates():
        text = path.read_text(encoding="utf-8")
        name = path.relative_to(ROOT)
        assert not re.search(r"\son[a-z]+\s*=", text), f"{name}: inline event handler"
        assert "|safe" not in text.replace(" ", ""), f"{name}: |safe"
        assert "javascript:" not in text.lower(), f"{name}: javascript: URL"
        assert not re.search(r"\sstyle\s*=", text), f"{name}: style attribute (the CSP forbids it)"
        assert "<style" not in text, f"{name}: inline <style>"
        for tag in re.findall(r"<script\b[^>]*>", text):
            assert "src=" in tag or 'type="application/json"' in tag, f"{name}: inline script {tag}"


def test_a_catalogue_name_with_a_script_is_inert_on_the_twopath_statistics_page(platform, app):  # noqa: F811
    from plugins.twopath import catalogue
    from tests.test_twopath import new_filing

    applied, errors = catalogue.import_workbook(
        "drugs", _xlsx([["中心药品项目编码", "中心药品项目名称"], ["XL01XC03", XSS]]))
    assert applied == 1 and not errors
    filing = new_filing("twopath", 0, begndate="2025-05-10")
    filing.item_name = XSS
    db.session.commit()
    page = login(app, "operator").get("/twopath/stats?by=month&year=2025").get_data(as_text=True)
    assert "<img src=x" not in page and XSS not in page  # neither in the table nor in the chart data
    chart = json.loads(page.split('id="filings-chart">', 1)[1].split("</script>", 1)[0])
    assert XSS in [d["label"] for d in chart["datasets"]]  # the data still arrives, as data


def test_a_username_with_quotes_cannot_break_out_of_the_confirmation(app):
    admin = login(app, "admin")
    name = "o'brien\"><b>x"
    make_user(name, "viewer")
    page = admin.get("/users/").get_data(as_text=True)
    assert "onsubmit" not in page and "<b>x" not in page
    assert 'data-confirm="为 o&#39;brien&#34;&gt;&lt;b&gt;x 生成新密码？其现有登录将失效。"' in page


def test_every_response_has_a_strict_csp_and_the_other_headers(app):
    client = app.test_client()
    for answer in (client.get("/login"), client.get("/static/app.js"), client.get("/")):
        csp = answer.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "style-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert answer.headers["Referrer-Policy"] == "same-origin"
        assert answer.headers["X-Frame-Options"] == "DENY"


# --- a lower role and the regulator's secrets -------------------------------------------------------------

def test_an_operator_cannot_point_a_regulator_elsewhere(app):
    settings.save_regulator_setting("keydata", "hospital_daily_url", "http://10.1.1.1/api/daily")
    settings.save_regulator_setting("keydata", "auth_code", SECRET)
    db.session.commit()
    operator = login(app, "operator")
    answer = operator.post("/config/regulators/keydata", {"hospital_daily_url": "http://listener.example/x"})
    assert answer.status_code == 403
    assert operator.post("/config/regulators/keydata/test").status_code == 403
    stored = settings.regulator_settings("keydata")
    assert stored.get("hospital_daily_url") == "http://10.1.1.1/api/daily" and stored.get("auth_code") == SECRET


def test_changing_an_endpoint_host_clears_the_secrets_unless_re_entered(app):
    settings.save_regulator_setting("keydata", "hospital_daily_url", "http://10.1.1.1/api/daily")
    settings.save_regulator_setting("keydata", "auth_code", SECRET)
    db.session.commit()
    admin = login(app, "admin")
    # Same host, other path: the credentials stay.
    admin.post("/config/regulators/keydata", {"hospital_daily_url": "http://10.1.1.1/api/v2/daily"})
    assert settings.regulator_settings("keydata").get("auth_code") == SECRET
    # Another host: cleared, and the page says so in Chinese.
    page = admin.post("/config/regulators/keydata", {"hospital_daily_url": "http://listener.example/x"},
                      follow_redirects=True).get_data(as_text=True)
    assert settings.regulator_settings("keydata").get("auth_code") == ""
    assert "接口地址指向了新的主机" in page and "已清除" in page and "请重新填写" in page
    assert _audit("regulator.settings")[-1].after["auth_code"] == "（已清除）"
    # Another port is another destination too; re-entering the secret in the same save keeps it.
    admin.post("/config/regulators/keydata", {"hospital_daily_url": "http://listener.example:8443/x",
                                              "auth_code": "new-code-1234"})
    assert settings.regulator_settings("keydata").get("auth_code") == "new-code-1234"


def test_a_plain_setting_may_not_hold_a_secret(app):
    settings.save_regulator_setting("keydata", "auth_code", SECRET)
    db.session.commit()
    page = login(app, "admin").post("/config/regulators/keydata", {"org_code": SECRET},
                                    follow_redirects=True).get_data(as_text=True)
    assert "不能填写密钥或权限码" in page and SECRET not in page
    assert settings.regulator_settings("keydata").get("org_code") != SECRET


def test_connection_test_uses_only_the_saved_url_and_never_follows_a_redirect(app, serve):
    hits = []
    listener = Flask("listener")

    @listener.route("/", defaults={"path": ""}, methods=["GET", "POST"])
    @listener.route("/<path:path>", methods=["GET", "POST"])
    def catch(path):
        hits.append(path)
        return "ok"

    listener_url = serve(listener)
    bouncer = Flask("bouncer")

    @bouncer.get("/api/daily")
    def bounce():
        return redirect(f"{listener_url}/stolen")

    bouncer_url = serve(bouncer)
    settings.save_regulator_setting("keydata", "hospital_daily_url", f"{bouncer_url}/api/daily")
    db.session.commit()
    admin = login(app, "admin")
    html = admin.post("/config/regulators/keydata/test", {"hospital_daily_url": f"{listener_url}/typed",
                                                          "url": f"{listener_url}/typed"}).get_data(as_text=True)
    assert hits == []  # neither the typed URL nor the redirect target was contacted
    assert "未跟随" in html and "连接失败" in html and "HTTP 302" in html


def test_connection_test_reports_404_as_a_failure_and_a_plain_answer_as_unproved(app, serve):
    target = Flask("target")

    @target.get("/ok")
    def ok():
        return "hello"

    url = serve(target)
    admin = login(app, "admin")
    for key in ("hospital_daily_url", "dept_daily_url", "monthly_url"):
        settings.save_regulator_setting("keydata", key, f"{url}/missing")
    db.session.commit()
    html = admin.post("/config/regulators/keydata/test").get_data(as_text=True)
    assert "HTTP 404" in html and "连接失败" in html and "连接正常" not in html
    for key in ("hospital_daily_url", "dept_daily_url", "monthly_url"):
        settings.save_regulator_setting("keydata", key, f"{url}/ok")
    db.session.commit()
    html = admin.post("/config/regulators/keydata/test").get_data(as_text=True)
    assert "TCP：已连接" in html and "HTTP 200" in html
    assert "未能证明应答来自监管平台接口" in html and "连接正常" not in html


# --- open redirect ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("target", [
    "//evil.example", "/%09/evil.example", "/\t/evil.example", "/\n/evil.example", "\\\\evil.example",
    "/\\evil.example", "/%5Cevil.example", "https://evil.example/", "http:/evil.example", "javascript:alert(1)",
    "%2F%2Fevil.example", "/%2F/evil.example", "/x\r\nSet-Cookie: a=b", "evil.example", "/%0d%0aX: y",
])
def test_login_never_redirects_off_site(app, target):
    make_user("rita", "viewer")
    client = app.test_client()
    page = client.get("/login", query_string={"next": target})
    assert page.status_code == 200
    token = csrf_from(page.get_data(as_text=True))
    answer = client.post("/login", data={"username": "rita", "password": "Passw0rd-123", "csrf_token": token,
                                         "next": target})
    assert answer.status_code == 302
    location = answer.headers["Location"]
    assert location == "/", (target, location)


def test_login_keeps_a_local_next_with_its_query(app):
    make_user("rita", "viewer")
    client = app.test_client()
    token = csrf_from(client.get("/login").get_data(as_text=True))
    answer = client.post("/login", data={"username": "rita", "password": "Passw0rd-123", "csrf_token": token,
                                         "next": "/uploads/?status=failed"})
    assert answer.headers["Location"] == "/uploads/?status=failed"


# --- sessions ---------------------------------------------------------------------------------------------

def _copy(app, client):
    """A second browser holding a copy of ``client``'s session cookie."""
    cookie = client.raw.get_cookie(app.config["SESSION_COOKIE_NAME"])
    thief = app.test_client()
    thief.set_cookie(cookie.key, cookie.value)
    return thief


def _signed_in(raw_client) -> bool:
    return raw_client.get("/uploads/").status_code == 200


def test_a_copied_cookie_stops_working_after_logout(app):
    client = login(app, "operator")
    thief = _copy(app, client)
    assert _signed_in(thief)
    client.post("/logout")
    assert not _signed_in(thief) and not _signed_in(client.raw)


def test_password_change_ends_other_sessions_and_keeps_this_one(app):
    client = login(app, "operator", "pam")
    other = _copy(app, client)
    answer = client.post("/users/me/password", {"current": "Passw0rd-123", "new": "N3w-passw0rd!", "confirm": "N3w-passw0rd!"})
    assert answer.status_code == 302
    assert _signed_in(client.raw) and not _signed_in(other)


def test_an_admin_password_reset_role_change_or_deactivation_ends_the_users_sessions(app):
    from web.models import User

    admin = login(app, "admin")
    for change in ("reset", "role", "disable"):
        name = f"u-{change}"
        victim = login(app, "operator", name)
        assert _signed_in(victim.raw)
        user_id = db.session.execute(sa.select(User.id).filter_by(username=name)).scalar_one()
        if change == "reset":
            admin.post(f"/users/{user_id}/reset-password")
        elif change == "role":
            admin.post(f"/users/{user_id}", {"role": "viewer", "active": "1"})
        else:
            admin.post(f"/users/{user_id}", {"role": "operator", "active": "0"})
        assert not _signed_in(victim.raw), change


def test_an_idle_session_ends_and_the_cookie_is_lax_httponly_and_short(app):
    client = login(app, "viewer")
    cookie = client.raw.get_cookie(app.config["SESSION_COOKIE_NAME"])
    assert cookie.same_site == "Lax" and cookie.http_only and not cookie.secure
    assert cookie.expires is not None
    from datetime import datetime

    lifetime = cookie.expires - datetime.now(UTC)
    assert 7.5 * 3600 < lifetime.total_seconds() <= 8 * 3600 + 60
    with client.raw.session_transaction() as session:
        session["seen"] -= 8 * 3600 + 60  # as if the last request was more than 8 hours ago
    answer = client.raw.get("/uploads/")
    assert answer.status_code == 302 and "/login" in answer.headers["Location"]
    assert "登录已失效" in client.raw.get(answer.headers["Location"]).get_data(as_text=True)


def test_the_cookie_is_secure_when_configured_for_https(database_url, redis_conn):
    from web import create_app

    application = create_app(BAOSONG_HTTPS=True)
    assert application.config["SESSION_COOKIE_SECURE"] is True
    with application.test_client() as client:
        answer = client.get("/login", base_url="https://baosong.example")
        assert "Secure" in answer.headers["Set-Cookie"] and "SameSite=Lax" in answer.headers["Set-Cookie"]
        assert answer.headers["Strict-Transport-Security"].startswith("max-age=")


# --- client address and throttling ------------------------------------------------------------------------

def _failed_login(client, username: str, **kwargs):
    token = csrf_from(client.get("/login", **kwargs).get_data(as_text=True))
    return client.post("/login", data={"username": username, "password": "wrong-password", "csrf_token": token},
                       **kwargs)


def _failure_addresses() -> set[str]:
    from web.models import LoginFailure

    db.session.expire_all()
    return set(db.session.execute(sa.select(LoginFailure.address)).scalars())


def test_forwarded_for_is_ignored_without_trusted_proxies(app):
    _failed_login(app.test_client(), "x", headers={"X-Forwarded-For": "203.0.113.9"})
    assert _failure_addresses() == {"127.0.0.1"}


def test_a_trusted_proxy_gives_the_client_address(database_url, redis_conn):
    from conftest import _fresh_schema  # the loaded conftest (importing tests.conftest would run it again)

    from web import create_app

    application = create_app(TRUSTED_PROXIES=1)
    with application.app_context():
        _fresh_schema(database_url)
        client = application.test_client()
        _failed_login(client, "x", headers={"X-Forwarded-For": "198.51.100.7, 203.0.113.9"})
        assert _failure_addresses() == {"203.0.113.9"}  # the one the trusted proxy saw, not the spoofable first
        db.session.remove()


def test_one_address_is_throttled_across_usernames_but_others_still_log_in(app):
    app.config["LOGIN_MAX_FAILURES_PER_ADDRESS"] = 3
    make_user("sam", "viewer")
    attacker = app.test_client()
    for name in ("a", "b", "c"):
        assert _failed_login(attacker, name).status_code in (401, 429)
    token = csrf_from(attacker.get("/login").get_data(as_text=True))
    blocked = attacker.post("/login", data={"username": "sam", "password": "Passw0rd-123", "csrf_token": token})
    assert blocked.status_code == 429 and "登录失败次数过多" in blocked.get_data(as_text=True)
    elsewhere = app.test_client()
    env = {"REMOTE_ADDR": "10.9.9.9"}
    token = csrf_from(elsewhere.get("/login", environ_base=env).get_data(as_text=True))
    ok = elsewhere.post("/login", data={"username": "sam", "password": "Passw0rd-123", "csrf_token": token},
                        environ_base=env)
    assert ok.status_code == 302


# --- patient identifiers ----------------------------------------------------------------------------------

def test_an_operator_sees_masked_identifiers_in_the_filing_form_and_the_lookup(platform, app):  # noqa: F811
    from plugins.twopath import filings
    from plugins.twopath.models import Filing
    from tests.test_twopath import person

    p = person(0)
    found = filings.lookup_person("02", p["certno"], actor="tester", opter="op1", opter_name="经办甲")
    filing = filings.create_filing("twopath", {
        "psn_no": found["psn_no"], "psn_name": found["psn_name"], "certno": found["certno"], "psn_cert_type": "01",
        "insutype": found["insutype"], "insuplc_admdvs": found["insuplc_admdvs"], "card_no": p["card_no"],
        "appy_date": "2025-03-01", "begndate": "2025-03-01", "enddate": "2026-02-28", "cond_abst": "确诊",
        "hosp_ide_date": "2025-03-01", "item_code": "XL01XC03", "item_name": "曲妥珠单抗注射液"}, actor="tester")
    db.session.commit()
    operator = login(app, "operator")
    from tests.test_twopath_web import identify

    identify("operator-user")  # a registered insurance operator may look people up
    form = operator.get(f"/twopath/filings/{filing.id}/edit").get_data(as_text=True)
    assert p["certno"] not in form and p["psn_name"] not in form and p["card_no"] not in form
    assert p["certno"][:3] in form and 'name="sealed_identifiers"' in form
    found = operator.post("/twopath/lookup", {"cert_type": "02", "number": p["certno"]},
                          headers={"HX-Request": "true"}).get_data(as_text=True)
    value_of = dict(re.findall(r'name="([a-z_]+)" id="f-[a-z_]+" value="([^"]*)"', found))
    assert value_of["certno"] != p["certno"] and p["psn_name"] not in found and "sealed_identifiers" in found

    # Sending the form back unchanged keeps the real identifiers (the masks are not saved).
    fields = dict(re.findall(r'<input[^>]*name="([a-z_]+)"[^>]*value="([^"]*)"', form))
    fields["cond_abst"] = "复查"
    fields["sealed_identifiers"] = re.search(r'name="sealed_identifiers" value="([^"]+)"', form).group(1)
    answer = operator.post(f"/twopath/filings/{filing.id}/edit", {**fields, "item_code": "XL01XC03"})
    assert answer.status_code == 302, answer.get_data(as_text=True)[:2000]
    db.session.expire_all()
    saved = db.session.get(Filing, filing.id)
    assert saved.certno == p["certno"] and saved.psn_name == p["psn_name"] and saved.card_no == p["card_no"]
    assert not _audit("patient.unmasked_view")

    # An admin sees them in full, and that view is audited.
    admin = login(app, "admin")
    assert p["certno"] in admin.get(f"/twopath/filings/{filing.id}/edit").get_data(as_text=True)
    entry = _audit("patient.unmasked_view")[-1]
    assert entry.actor == "admin-user" and f"/twopath/filings/{filing.id}/edit" in entry.target

    # Roles are a setting: allow operators, and they see them too.
    admin.post("/users/patient-identifier-roles", {"role": ["admin", "operator"]})
    assert p["certno"] in operator.get(f"/twopath/filings/{filing.id}").get_data(as_text=True)


def test_a_sealed_copy_from_another_user_restores_nothing(app):
    from web.security import mask_values, restore_values

    class Someone:
        id = 1

    from flask import g

    with app.test_request_context():
        g.user = Someone()
        masked, sealed = mask_values({"certno": "360102199001011234"}, ["certno"])
        assert masked["certno"] != "360102199001011234"
        assert restore_values(masked, [sealed])["certno"] == "360102199001011234"
        g.user.id = 2
        assert restore_values(masked, [sealed])["certno"] == masked["certno"]


# --- the key through plain settings, describe(), the audit log --------------------------------------------

def test_iv_equal_to_the_key_is_stored_as_a_flag_never_as_bytes(app):
    from core.crypto import IV_IS_KEY, SM4Profile, sm4_encrypt

    key = "0123456789abcdeffedcba9876543210"
    profile = SM4Profile(mode="CBC", padding="pkcs7", key_format="hex", output="base64", iv=IV_IS_KEY)
    plaintext = '{"orgCode":"H1"}'
    ciphertext = sm4_encrypt(plaintext.encode(), key, profile)
    admin = login(app, "admin")
    html = admin.post("/config/regulators/keydata/known-answer", {
        "algorithm": "sm4", "key": key, "plaintext": plaintext, "ciphertext": ciphertext}).get_data(as_text=True)
    assert "IV = 密钥" in html and key not in html
    admin.post("/config/regulators/keydata/apply-sm4", profile.to_dict())
    assert settings.regulator_settings("keydata").get("sm4_iv") == IV_IS_KEY
    entries = _audit("regulator.sm4_profile")
    assert entries and key not in repr([(e.before, e.after) for e in entries])
    viewer_page = login(app, "viewer").get("/config/regulators/keydata").get_data(as_text=True)
    assert key not in viewer_page
    # The key's bytes typed as a fixed IV are refused once the key is stored as a secret.
    settings.save_regulator_setting("keydata", "sm4_key", key)
    db.session.commit()
    page = admin.post("/config/regulators/keydata/apply-sm4", {**profile.to_dict(), "iv": key},
                      follow_redirects=True).get_data(as_text=True)
    assert "固定 IV 与密钥相同" in page and settings.regulator_settings("keydata").get("sm4_iv") == IV_IS_KEY


def test_describe_never_shows_key_or_iv_bytes():
    from core.crypto import IV_IS_KEY, SM4Profile

    iv = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
    assert "a1b2" not in SM4Profile(mode="CBC", iv=iv).describe()
    assert "固定IV" in SM4Profile(mode="CBC", iv=iv).describe()
    assert "IV = 密钥" in SM4Profile(mode="CBC", iv=IV_IS_KEY).describe()


def test_the_audit_log_never_stores_a_secret_value(app):
    from web import audit

    settings.save_regulator_setting("keydata", "auth_code", SECRET)
    db.session.commit()
    entry = audit.record("test.entry", f"target {SECRET}", before={"v": SECRET}, after=[f"x{SECRET}y"],
                         actor="tester", commit=True)
    stored = repr((entry.target, entry.before, entry.after))
    assert SECRET not in stored and "****" in stored


# --- error pages and caps ---------------------------------------------------------------------------------

def test_error_pages_are_chinese(app):
    client = login(app, "viewer")
    assert "页面不存在" in client.get("/no-such-page").get_data(as_text=True)
    not_allowed = client.get("/logout")
    assert not_allowed.status_code == 405 and "请求方式不允许" in not_allowed.get_data(as_text=True)
    forbidden = client.get("/users/")
    assert forbidden.status_code == 403 and "没有权限" in forbidden.get_data(as_text=True)
    bad = client.post("/logout", csrf=False)
    assert bad.status_code == 400 and "安全令牌" in bad.get_data(as_text=True)


def test_a_too_large_upload_gets_a_chinese_413_with_the_limit(database_url, redis_conn):
    from conftest import _fresh_schema  # the loaded conftest (importing tests.conftest would run it again)

    from web import create_app

    application = create_app(MAX_CONTENT_LENGTH=1024 * 1024)
    application.config["TESTING"] = True
    with application.app_context():
        _fresh_schema(database_url)
        client = login(application, "operator")
        answer = client.post("/config/departments/import", {"file": (io.BytesIO(b"x" * (2 * 1024 * 1024)), "a.xlsx")},
                             content_type="multipart/form-data")
        assert answer.status_code == 413
        text = answer.get_data(as_text=True)
        assert "文件过大" in text and "1 MB" in text
        db.session.remove()


def test_a_server_error_page_is_chinese(database_url, redis_conn):
    from web import create_app

    application = create_app()

    @application.get("/dashboard/boom", endpoint="dashboard.boom")
    def boom():
        raise RuntimeError("boom")

    with application.app_context():
        from conftest import (
            _fresh_schema,  # the loaded conftest (importing tests.conftest would run it again)
        )

        _fresh_schema(database_url)
        client = login(application, "viewer")
        answer = client.get("/dashboard/boom")
        assert answer.status_code == 500 and "服务器错误" in answer.get_data(as_text=True)
        assert "boom" not in answer.get_data(as_text=True)
        db.session.remove()


def test_catalogue_import_has_row_and_size_caps(platform, app, monkeypatch):  # noqa: F811
    from plugins.twopath import catalogue

    monkeypatch.setattr(catalogue, "MAX_IMPORT_ROWS", 3)
    web = login(app, "operator")
    rows = [["中心药品项目编码", "中心药品项目名称"]] + [[f"C{i}", f"药{i}"] for i in range(5)]
    answer = web.post("/twopath/catalogue/drugs/import", {"file": (io.BytesIO(_xlsx(rows)), "目录.xlsx")},
                      content_type="multipart/form-data")
    assert answer.status_code == 422 and "超过 3 行的上限" in answer.get_data(as_text=True)
    assert catalogue.items("drugs") == []
    monkeypatch.setattr(catalogue, "MAX_IMPORT_BYTES", 100)
    answer = web.post("/twopath/catalogue/drugs/import", {"file": (io.BytesIO(_xlsx(rows[:2])), "目录.xlsx")},
                      content_type="multipart/form-data")
    assert answer.status_code == 422 and "MB 的上限" in answer.get_data(as_text=True)


# --- crypto self-test --------------------------------------------------------------------------------------

def test_the_admin_does_not_start_when_the_crypto_self_test_fails(database_url, redis_conn, monkeypatch):
    import web
    from core.crypto import CryptoError, selftest

    monkeypatch.setattr(web, "_SELF_TESTED", False)
    monkeypatch.setattr(selftest.sm3, "sm3_hex", lambda data: "0" * 64)
    with pytest.raises(CryptoError, match="加密自检失败"):
        web.create_app()


# The twopath fixtures (sandbox platform over HTTP).
from tests.test_twopath import platform, tp_registry  # noqa: E402, F401


def test_a_self_refreshing_page_does_not_keep_an_idle_session_alive(app):
    client = login(app, "viewer")
    with client.raw.session_transaction() as session:
        session["seen"] -= 7 * 3600
        before = session["seen"]
    assert client.raw.get("/dashboard/panel", headers={"HX-Request": "true", "X-Baosong-Poll": "1"}).status_code == 200
    with client.raw.session_transaction() as session:
        assert session["seen"] == before  # the poll was served but did not count as activity
    assert client.raw.get("/uploads/").status_code == 200
    with client.raw.session_transaction() as session:
        assert session["seen"] > before + 6 * 3600  # a person's request does


def test_the_settings_store_never_keeps_a_secret_in_a_plain_setting(app):
    from core.crypto import IV_IS_KEY
    from core.errors import ConfigurationError

    key = "0123456789abcdeffedcba9876543210"
    settings.save_regulator_setting("keydata", "sm4_iv", key)  # an older install: the key's bytes as the IV
    settings.save_regulator_setting("keydata", "sm4_key", key)  # the key arrives: the IV becomes the flag
    db.session.commit()
    assert settings.regulator_settings("keydata").get("sm4_iv") == IV_IS_KEY
    settings.save_regulator_setting("keydata", "sm4_iv", key.upper())
    assert settings.regulator_settings("keydata").get("sm4_iv") == IV_IS_KEY
    with pytest.raises(ConfigurationError, match="不能填写密钥"):
        settings.save_regulator_setting("keydata", "org_code", key)


@pytest.mark.parametrize("back", ["/\t/evil.example", "/%09/evil.example", "//evil.example", "https://evil.example/",
                                  "/\\evil.example", "/x\r\nSet-Cookie: a=b"])
def test_a_forms_back_field_never_redirects_off_site(app, back):
    answer = login(app, "operator").post("/retries/auto", {"stopped": "0", "back": back})
    assert answer.status_code == 302 and answer.headers["Location"] == "/retries/", (back, answer.headers["Location"])


def test_a_forms_back_field_keeps_a_local_path(app):
    answer = login(app, "operator").post("/retries/auto", {"stopped": "0", "back": "/tasks/1?tab=runs"})
    assert answer.headers["Location"] == "/tasks/1?tab=runs"


@pytest.mark.parametrize("role", ["operator", "viewer", "admin"])
def test_flashed_messages_and_outside_errors_mask_patient_identifiers_unless_the_role_may_see_them(app, role):
    """An HIS or platform error can carry the patient's ID number or phone (a SQL error quoting a bound
    value, a platform echoing the certno); the admin shows it in full only to roles allowed to see it."""
    from flask import flash, g, render_template

    from web.models import User
    from web.permissions import may_see_patient_identifiers

    message = "从 HIS 读取患者失败：invalid input for certno 36010219900101123X (tel 13912345678)"
    with app.test_request_context("/"):
        g.user = User(username="someone", role=role)
        flash(message, "error")
        page = render_template("base.html")
        partial = render_template("twopath/_person.html", error=message, person=None)
    full = may_see_patient_identifiers(role)
    for html in (page, partial):
        assert ("36010219900101123X" in html) is full and ("13912345678" in html) is full
        assert full or ("360102********123X" in html and "139****5678" in html)
