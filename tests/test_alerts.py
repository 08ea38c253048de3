"""Alerts that reach people, against a real local SMTP server (aiosmtpd, STARTTLS and SSL with a
self-signed certificate, login) and a local HTTP endpoint standing in for the 企业微信 and 钉钉 robots:
exact payloads, the 钉钉 signature, firing once, de-duplication, reminders per window, resolving once."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import ssl
import threading
import urllib.parse
from email import message_from_bytes, policy
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from conftest import free_port
from flask import Flask, current_app, jsonify, request
from test_web_support import login

from core import alerts, clock
from core.alert_models import AlertChannel, AlertEvent, AlertRule, AlertState
from core.db import db
from core.models import AuditLog, Upload, UploadStatus

SIGN_SECRET = "SECabc123-dingtalk-sign"
SMTP_PASSWORD = "smtp-SECRET-pass"
WECOM_KEY = "wecom-KEY-0f1e2d3c"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 (the SMTP server's), as files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return SimpleNamespace(cert=str(cert_file), key=str(key_file))


class Mailbox:
    def __init__(self):
        self.messages: list = []
        self.logins: list[tuple[str, str]] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802  (aiosmtpd's hook name)
        self.messages.append(SimpleNamespace(sender=envelope.mail_from, recipients=list(envelope.rcpt_tos),
                                             message=message_from_bytes(envelope.content, policy=policy.default)))
        return "250 OK"

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        from aiosmtpd.smtp import AuthResult

        self.logins.append((auth_data.login.decode(), auth_data.password.decode()))
        return AuthResult(success=auth_data.password.decode() == SMTP_PASSWORD, handled=False)


def _smtp_server(certificate, *, implicit_tls: bool):
    from aiosmtpd.controller import Controller

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificate.cert, certificate.key)
    mailbox = Mailbox()
    port = free_port()
    # aiosmtpd does not see implicit TLS as TLS, so it would not offer AUTH there unless told to.
    options = {"ssl_context": context, "auth_require_tls": False} if implicit_tls \
        else {"tls_context": context, "require_starttls": True}
    controller = Controller(mailbox, hostname="127.0.0.1", port=port, authenticator=mailbox.authenticate,
                            auth_required=True, server_hostname="127.0.0.1", **options)
    controller.start()
    return controller, mailbox, port


@pytest.fixture
def smtp(certificate):
    controller, mailbox, port = _smtp_server(certificate, implicit_tls=False)
    mailbox.port = port
    yield mailbox
    controller.stop()


@pytest.fixture
def robots(serve):
    """One local HTTP app answering like both robot APIs, recording each request exactly."""
    app = Flask("robots")
    received: list[dict] = []
    lock = threading.Lock()

    @app.post("/cgi-bin/webhook/send")
    def wecom():
        with lock:
            received.append({"robot": "wecom", "args": dict(request.args), "json": request.get_json(),
                             "content_type": request.content_type})
        return jsonify(errcode=0, errmsg="ok")

    @app.post("/robot/send")
    def dingtalk():
        with lock:
            received.append({"robot": "dingtalk", "args": dict(request.args), "json": request.get_json(),
                             "content_type": request.content_type})
        if request.args.get("access_token") == "refuse":
            return jsonify(errcode=310000, errmsg="sign not match")
        return jsonify(errcode=0, errmsg="ok")

    url = serve(app)
    return SimpleNamespace(url=url, received=received)


def add_channels(smtp, robots, certificate) -> list[AlertChannel]:
    email = AlertChannel(name="值班邮箱", kind="email", config={
        "host": "127.0.0.1", "port": str(smtp.port), "security": "starttls", "username": "baosong",
        "sender": "baosong@hospital.example", "recipients": ["it@hospital.example", "duty@hospital.example"],
        "ca_file": certificate.cert})
    alerts.set_channel_secrets(email, {"password": SMTP_PASSWORD})
    wecom = AlertChannel(name="信息科企业微信群", kind="wecom", config={"msgtype": "markdown"})
    alerts.set_channel_secrets(wecom, {"webhook": f"{robots.url}/cgi-bin/webhook/send?key={WECOM_KEY}"})
    ding = AlertChannel(name="钉钉值班群", kind="dingtalk", config={"msgtype": "markdown"})
    alerts.set_channel_secrets(ding, {"webhook": f"{robots.url}/robot/send?access_token=tok123",
                                      "sign_secret": SIGN_SECRET})
    db.session.add_all([email, wecom, ding])
    db.session.commit()
    return [email, wecom, ding]


def expected_sign(timestamp: str) -> str:
    digest = hmac.new(SIGN_SECRET.encode(), f"{timestamp}\n{SIGN_SECRET}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def fail_upload(n: int, status: str = UploadStatus.REJECTED) -> None:
    db.session.add(Upload(report_type="echo.hourly", business_key=f"bk-{n}", period=f"p{n}", status=status,
                          attempts=1, idempotency_key=f"k{n}", last_code="400" if status != UploadStatus.SUCCEEDED else "0",
                          last_message="n 字段取值错误" if status != UploadStatus.SUCCEEDED else "ok"))
    db.session.commit()


def test_a_rule_fires_once_reminds_per_window_and_resolves_once_on_every_channel(echo, smtp, robots, certificate):
    add_channels(smtp, robots, certificate)
    rule = AlertRule(kind="failed_uploads", report_type="echo.hourly", threshold=2, window_minutes=60)
    db.session.add(rule)
    db.session.commit()

    fail_upload(1)
    assert alerts.evaluate() == []  # one failure is not two
    fail_upload(2)
    [fired] = alerts.evaluate()
    assert fired.kind == "firing" and all(d["ok"] for d in fired.deliveries), fired.deliveries
    assert [d["channel"] for d in fired.deliveries] == ["值班邮箱", "信息科企业微信群", "钉钉值班群"]
    title = "【报送告警】报表连续多条上报失败（回声测试报表（echo.hourly），连续失败条数 2）"
    assert fired.title == title
    assert "最近 2 条上报均失败" in fired.text and "代码 400：n 字段取值错误" in fired.text

    # e-mail: STARTTLS, login, the recipients, the subject and the text
    [mail] = smtp.messages
    assert smtp.logins == [("baosong", SMTP_PASSWORD)]
    assert mail.recipients == ["it@hospital.example", "duty@hospital.example"]
    assert mail.message["Subject"] == title and mail.message["From"] == "baosong@hospital.example"
    assert fired.text in mail.message.get_content()

    wecom, ding = robots.received
    # 企业微信: {"msgtype": "markdown", "markdown": {"content": ...}} to the webhook with its key
    assert wecom["args"] == {"key": WECOM_KEY} and wecom["content_type"] == "application/json"
    assert wecom["json"] == {"msgtype": "markdown", "markdown": {"content": f"**{title}**\n{fired.text}"}}
    # 钉钉: timestamp (ms) and sign = Base64(HMAC-SHA256(secret, timestamp + "\n" + secret)) as query params
    assert set(ding["args"]) == {"access_token", "timestamp", "sign"} and ding["args"]["access_token"] == "tok123"
    assert abs(int(ding["args"]["timestamp"]) - clock.now().timestamp() * 1000) < 60_000
    assert ding["args"]["sign"] == expected_sign(ding["args"]["timestamp"])
    assert ding["json"] == {"msgtype": "markdown", "markdown": {"title": title[:64],
                                                                "text": f"### {title}\n\n{fired.text}"}}

    # Still failing: nothing more within the window; one reminder once the window has passed.
    fail_upload(3)
    assert alerts.evaluate() == [] and len(smtp.messages) == 1 and len(robots.received) == 2
    later = clock.now() + dt.timedelta(minutes=61)
    [reminder] = alerts.evaluate(now=later)
    assert reminder.kind == "reminder" and len(robots.received) == 4
    assert alerts.evaluate(now=later + dt.timedelta(minutes=5)) == []

    # Cleared: one resolved message, then silence.
    fail_upload(4, UploadStatus.SUCCEEDED)
    [resolved] = alerts.evaluate(now=later + dt.timedelta(minutes=6))
    assert resolved.kind == "resolved" and resolved.title.startswith("【报送恢复】")
    assert "已恢复" in resolved.text and len(smtp.messages) == 3
    assert alerts.evaluate(now=later + dt.timedelta(minutes=7)) == []
    kinds = [e.kind for e in db.session.scalars(sa.select(AlertEvent).order_by(AlertEvent.id))]
    assert kinds == ["firing", "reminder", "resolved"]
    assert db.session.execute(sa.select(AlertState)).scalar_one().firing is False


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_text_messages_a_robot_refusal_and_smtp_over_ssl(echo, robots, certificate):
    controller, mailbox, port = _smtp_server(certificate, implicit_tls=True)
    try:
        email = AlertChannel(name="SSL 邮箱", kind="email", config={
            "host": "127.0.0.1", "port": str(port), "security": "ssl", "username": "baosong",
            "sender": "baosong@hospital.example", "recipients": ["it@hospital.example"], "ca_file": certificate.cert})
        alerts.set_channel_secrets(email, {"password": SMTP_PASSWORD})
        wecom = AlertChannel(name="企业微信 text", kind="wecom", config={"msgtype": "text"})
        alerts.set_channel_secrets(wecom, {"webhook": f"{robots.url}/cgi-bin/webhook/send?key={WECOM_KEY}"})
        refused = AlertChannel(name="钉钉（签名错）", kind="dingtalk", config={"msgtype": "text"})
        alerts.set_channel_secrets(refused, {"webhook": f"{robots.url}/robot/send?access_token=refuse"})
        db.session.add_all([email, wecom, refused])
        db.session.commit()

        results = [alerts.send_test(c).deliveries[0] for c in (email, wecom, refused)]
        assert results[0]["ok"] and results[1]["ok"], results
        assert results[2] == {"channel": "钉钉（签名错）", "kind": "dingtalk", "ok": False,
                              "detail": "机器人接口拒绝：errcode=310000 sign not match"}
        assert mailbox.messages[0].message["Subject"] == "【报送】测试消息"
        text = robots.received[0]["json"]
        assert text["msgtype"] == "text" and set(text) == {"msgtype", "text"}
        assert text["text"]["content"].startswith("【报送】测试消息\n这是一条来自报送平台的测试消息")
        assert set(robots.received[1]["args"]) == {"access_token"}  # no signing secret: no sign params
        assert robots.received[1]["json"]["msgtype"] == "text"
    finally:
        controller.stop()


def test_a_wrong_smtp_password_is_reported_without_showing_it(echo, smtp, certificate):
    email = AlertChannel(name="邮箱", kind="email", config={
        "host": "127.0.0.1", "port": str(smtp.port), "security": "starttls", "username": "baosong",
        "sender": "b@h.example", "recipients": ["it@h.example"], "ca_file": certificate.cert})
    alerts.set_channel_secrets(email, {"password": "wrong-SECRET-password"})
    db.session.add(email)
    db.session.commit()
    [delivery] = alerts.send_test(email).deliveries
    assert delivery["ok"] is False and "SMTPAuthenticationError" in delivery["detail"]
    assert "wrong-SECRET-password" not in json.dumps(delivery, ensure_ascii=False)
    assert smtp.messages == []


def test_an_unreachable_robot_is_reported_without_its_key(echo):
    wecom = AlertChannel(name="群", kind="wecom", config={"msgtype": "markdown"})
    alerts.set_channel_secrets(wecom, {"webhook": f"http://127.0.0.1:{free_port()}/cgi-bin/webhook/send?key={WECOM_KEY}"})
    db.session.add(wecom)
    db.session.commit()
    [delivery] = alerts.send_test(wecom).deliveries
    assert delivery["ok"] is False and "ConnectionError" in delivery["detail"]
    assert WECOM_KEY not in delivery["detail"] and "/cgi-bin/webhook/send" in delivery["detail"]


def test_platform_rules_backlog_no_worker_no_scheduler(echo, robots, redis_conn):
    wecom = AlertChannel(name="群", kind="wecom", config={"msgtype": "markdown"})
    alerts.set_channel_secrets(wecom, {"webhook": f"{robots.url}/cgi-bin/webhook/send?key=k"})
    db.session.add_all([wecom, AlertRule(kind="retry_backlog", threshold=1, window_minutes=60),
                        AlertRule(kind="no_worker", window_minutes=60),
                        AlertRule(kind="no_scheduler", window_minutes=60),
                        AlertRule(kind="crypto_selftest", window_minutes=60)])
    db.session.commit()
    fail_upload(1, UploadStatus.RETRY_WAIT)
    assert alerts.evaluate() and [e.title for e in db.session.scalars(sa.select(AlertEvent))] == [
        "【报送告警】没有在线工作进程", "【报送告警】调度进程无主控"]  # one waiting retry is not above 1
    fail_upload(2, UploadStatus.RETRY_WAIT)
    [backlog] = alerts.evaluate()
    assert backlog.title == "【报送告警】待重试积压过多（积压条数上限 1）" and "待重试积压 2 条" in backlog.text

    from core.scheduler_process import acquire_leadership

    acquire_leadership(redis_conn, "host:1")
    [resolved] = alerts.evaluate()
    assert resolved.kind == "resolved" and "调度进程无主控" in resolved.title


@pytest.fixture
def broken_crypto(monkeypatch):
    """SM3 giving a wrong answer (a broken library build), as the self-test would find it in a process."""
    from core import health

    monkeypatch.setattr("core.crypto.sm3.sm3_hex", lambda data: "00" * 32)
    health._self_test_result.cache_clear()
    yield monkeypatch
    monkeypatch.undo()
    health._self_test_result.cache_clear()


def test_a_failing_crypto_self_test_makes_readyz_503_and_fires_its_rule_once(echo, robots, redis_conn, broken_crypto):
    from core import health

    wecom = AlertChannel(name="群", kind="wecom", config={"msgtype": "markdown"})
    alerts.set_channel_secrets(wecom, {"webhook": f"{robots.url}/cgi-bin/webhook/send?key=k"})
    db.session.add_all([wecom, AlertRule(kind="crypto_selftest", window_minutes=60)])
    db.session.commit()

    ready = current_app.test_client().get("/readyz")
    assert ready.status_code == 503
    crypto = ready.get_json()["checks"]["crypto"]
    assert crypto["ok"] is False and crypto["detail"].startswith("加密自检失败") and "SM3" in crypto["detail"]

    [fired] = alerts.evaluate()
    assert fired.kind == "firing" and fired.title == "【报送告警】加密自检失败"
    assert "加密自检失败" in fired.text and "SM3" in fired.text
    assert alerts.evaluate() == []  # still failing: not sent again within the window

    broken_crypto.undo()  # the library repaired (a new process runs the self-test again)
    health._self_test_result.cache_clear()
    assert current_app.test_client().get("/readyz").get_json()["checks"]["crypto"]["ok"] is True
    [resolved] = alerts.evaluate()
    assert resolved.kind == "resolved" and resolved.title == "【报送恢复】加密自检失败"
    assert alerts.evaluate() == []
    assert [r["json"]["markdown"]["content"].splitlines()[0] for r in robots.received] == [
        "**【报送告警】加密自检失败**", "**【报送恢复】加密自检失败**"]


def test_failed_slots_and_a_slot_not_delivered_by_its_deadline(echo, robots, work):
    from zoneinfo import ZoneInfo

    from core.scheduler import run_slot

    wecom = AlertChannel(name="群", kind="wecom", config={"msgtype": "markdown"})
    alerts.set_channel_secrets(wecom, {"webhook": f"{robots.url}/cgi-bin/webhook/send?key=k"})
    db.session.add_all([wecom, AlertRule(kind="failed_slots", report_type="echo.hourly", threshold=2),
                        AlertRule(kind="slot_deadline", report_type="echo.hourly", threshold=30)])
    db.session.commit()
    shanghai = ZoneInfo("Asia/Shanghai")
    now = clock.now().astimezone(shanghai).replace(minute=0, second=0, microsecond=0)
    echo.state["mode"] = "reject"
    run_slot("echo.hourly", now - dt.timedelta(hours=2))
    work()
    [late] = alerts.evaluate()  # past its 30-minute deadline, but one failed slot is not two
    assert late.title == "【报送告警】时段超时未送达（回声测试报表（echo.hourly），应送达时限（分钟） 30）"
    assert "有 1 个时段超过 30 分钟未送达" in late.text
    run_slot("echo.hourly", now - dt.timedelta(hours=1))
    work()
    [failing] = alerts.evaluate()  # the deadline alert is already out: not sent again
    assert failing.title == "【报送告警】报表连续多个时段失败（回声测试报表（echo.hourly），连续失败时段数 2）"
    assert "最近 2 个时段均失败" in failing.text
    assert len(robots.received) == 2


def test_the_minutely_sweep_job_evaluates_the_rules(echo, robots, redis_conn):
    from core.scheduler import sweep_job

    wecom = AlertChannel(name="群", kind="wecom", config={"msgtype": "markdown"})
    alerts.set_channel_secrets(wecom, {"webhook": f"{robots.url}/cgi-bin/webhook/send?key=k"})
    db.session.add_all([wecom, AlertRule(kind="no_worker")])
    db.session.commit()
    sweep_job()
    sweep_job()
    assert [r["json"]["markdown"]["content"].splitlines()[0] for r in robots.received] == [
        "**【报送告警】没有在线工作进程**"]


def test_baosong_alerts_evaluates_without_scheduler_or_workers(echo, robots, redis_conn):
    from click.testing import CliRunner

    from core.cli import main

    wecom = AlertChannel(name="群", kind="wecom", config={"msgtype": "markdown"})
    alerts.set_channel_secrets(wecom, {"webhook": f"{robots.url}/cgi-bin/webhook/send?key=k"})
    db.session.add_all([wecom, AlertRule(kind="no_scheduler")])
    db.session.commit()
    first = CliRunner().invoke(main, ["alerts"])
    assert first.exit_code == 0 and "【报送告警】调度进程无主控" in first.output
    assert "没有需要发送的告警" in CliRunner().invoke(main, ["alerts"]).output
    assert len(robots.received) == 1


# --- the admin pages -----------------------------------------------------------------------------

def test_alert_pages_are_admin_only_audited_and_keep_secrets_write_only(app, robots):
    operator = login(app, "operator")
    assert operator.get("/config/alerts/").status_code == 403
    assert operator.post("/config/alerts/rules", {"kind": "no_worker"}).status_code == 403

    admin = login(app, "admin")
    assert "尚未配置任何通道" in admin.get("/config/alerts/").get_data(as_text=True)
    webhook = f"{robots.url}/cgi-bin/webhook/send?key={WECOM_KEY}"
    answer = admin.post("/config/alerts/channels", {"kind": "wecom", "name": "信息科群", "enabled": "1",
                                                     "webhook": webhook, "msgtype": "markdown"})
    assert answer.status_code == 302
    channel = db.session.execute(sa.select(AlertChannel)).scalar_one()
    assert WECOM_KEY not in channel.secret and alerts.channel_secrets(channel)["webhook"] == webhook

    page = admin.get("/config/alerts/").get_data(as_text=True)
    assert "信息科群" in page and "Webhook 已设置" in page and WECOM_KEY not in page
    assert "onclick" not in page and "data-confirm=" in page
    edit = admin.get(f"/config/alerts/channels/{channel.id}").get_data(as_text=True)
    assert WECOM_KEY not in edit and "已设置（留空不变）" in edit
    admin.post("/config/alerts/channels", {"channel_id": channel.id, "name": "信息科群", "enabled": "1",
                                           "webhook": "", "msgtype": "text"})
    db.session.expire_all()
    assert alerts.channel_secrets(channel)["webhook"] == webhook and channel.config == {"msgtype": "text"}

    flashed = admin.post(f"/config/alerts/channels/{channel.id}/test", follow_redirects=True).get_data(as_text=True)
    assert "测试消息已发送" in flashed and robots.received[0]["json"]["msgtype"] == "text"

    assert admin.post("/config/alerts/rules", {"kind": "failed_slots", "report_type": "",
                                               "threshold": "3", "window_minutes": "30"}).status_code == 302
    rule = db.session.execute(sa.select(AlertRule)).scalar_one()
    assert (rule.kind, rule.report_type, rule.threshold, rule.window_minutes) == ("failed_slots", None, 3, 30)
    wrong = admin.post("/config/alerts/rules", {"kind": "failed_slots", "report_type": "nope.x"},
                       follow_redirects=True).get_data(as_text=True)
    assert "未知的报表类型 nope.x" in wrong

    history = admin.get("/config/alerts/history").get_data(as_text=True)
    assert "测试" in history and "信息科群" in history
    actions = [a.action for a in db.session.scalars(sa.select(AuditLog).order_by(AuditLog.id))]
    assert {"alert.channel", "alert.test", "alert.rule"} <= set(actions)
    assert all(WECOM_KEY not in json.dumps(a.after, ensure_ascii=False)
               for a in db.session.scalars(sa.select(AuditLog)))
    assert admin.post(f"/config/alerts/channels/{channel.id}/delete").status_code == 302
    assert db.session.execute(sa.select(AlertChannel)).first() is None


def test_the_dingtalk_signature_matches_dingtalks_own_example_recipe():
    # The recipe of DingTalk's document: string_to_sign = timestamp + "\n" + secret; HMAC-SHA256 with the
    # secret as key; Base64; then URL-encoded into the query.
    url = alerts.dingtalk_url("https://oapi.dingtalk.com/robot/send?access_token=abc", SIGN_SECRET, 1700000000000)
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    assert query["timestamp"] == ["1700000000000"]
    assert query["sign"] == [expected_sign("1700000000000")]
    assert "%2B" in url or "%2F" in url or "%3D" in url  # Base64's +, / and = are URL-encoded
