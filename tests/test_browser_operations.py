"""An admin sets up alerting and the platform flags in headless Chromium, against the admin running
under a real gunicorn (as in production): a 企业微信 channel with 发送测试消息, a rule edited in its
table row, the retry policy saved after its confirmation."""

from __future__ import annotations

import os
import subprocess

import pytest
import sqlalchemy as sa
from test_alerts import robots  # noqa: F401  (the stand-in robot endpoint)
from test_production import BAOSONG, ROOT, _wait_for, free_port
from test_web_support import make_user

from core import settings
from core.alert_models import AlertRule
from core.db import db

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"chromium not installed ({CHROMIUM})"),
]


@pytest.fixture
def gunicorn(app):
    port = free_port()
    process = subprocess.Popen([*BAOSONG, "web", "--bind", f"127.0.0.1:{port}", "--workers", "2"], cwd=ROOT,
                               env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for(f"{base}/healthz", process)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_admin_sets_up_alerts_and_the_retry_policy_under_gunicorn(app, gunicorn, robots):  # noqa: F811
    from playwright.sync_api import sync_playwright

    make_user("ada", "admin")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(locale="zh-CN")
        page.on("dialog", lambda dialog: dialog.accept())
        page.goto(gunicorn + "/")
        page.fill("input[name=username]", "ada")
        page.fill("input[name=password]", "Passw0rd-123")
        page.click("button[type=submit]")
        page.wait_for_selector("h1:has-text('数据看板')")

        page.goto(gunicorn + "/config/platform/")
        page.click("nav.subnav >> text=告警通知")
        page.click("text=企业微信群机器人")
        page.fill("input[name=name]", "信息科群")
        page.fill("input[name=webhook]", f"{robots.url}/cgi-bin/webhook/send?key=KEY-browser-1")
        page.click("button:has-text('保存')")
        page.wait_for_selector("text=已保存告警通道「信息科群」")
        page.click("button:has-text('发送测试消息')")
        page.wait_for_selector("text=测试消息已发送")
        assert robots.received[0]["json"]["msgtype"] == "markdown"
        assert "KEY-browser-1" not in page.content()

        page.select_option("form.filters select[name=kind]", "failed_slots")
        page.fill("form.filters input[name=threshold]", "2")
        page.click("form.filters button:has-text('添加')")
        page.wait_for_selector("text=已保存告警规则")
        page.fill("td input[name=threshold]", "5")  # the row's inputs belong to the row's form
        page.click("td button:has-text('保存')")
        page.wait_for_selector("text=连续失败时段数 5")

        page.click("nav.subnav >> text=平台参数")
        page.fill("input[name=retry_interval_minutes]", "10")
        page.click("button:has-text('保存')")
        page.wait_for_selector("text=已保存（立即生效）")
        page.click("text=告警通知")
        page.click("text=告警历史")
        page.wait_for_selector("td:has-text('【报送】测试消息')")
        browser.close()

    db.session.expire_all()
    assert db.session.execute(sa.select(AlertRule.threshold)).scalar_one() == 5
    assert settings.flag("retry_interval_minutes") == "10"
