"""The IHS admin page: the gate shown with its reason and the assumption said plainly, the vendor's
example entered (key write-only), "which recipe is this?" proposing the match, adopting it, verifying;
the dashboard warns while the gate is closed; missing interfaces listed as 文档缺失."""

from __future__ import annotations

import html

import pytest
from test_ihs_support import REGULATOR, SLOT, configure_sandbox, current_settings

from core.db import db
from core.errors import ConfigurationError
from core.scheduler import run_slot
from core.settings import save_regulator_setting
from plugins.ihs_supervision import gate
from plugins.ihs_supervision import sandbox as ihs_sandbox
from tests.test_web_support import login

pytestmark = pytest.mark.slow  # logins hash passwords


def text(answer) -> str:
    return html.unescape(answer.get_data(as_text=True))


def test_an_admin_enters_the_example_finds_the_recipe_adopts_and_verifies_it(app, serve):
    sandbox = configure_sandbox(serve, example=False, sign_digest="")
    web = login(app, "admin")
    page = text(web.get("/ihs/"))
    assert "假设" in page and "不是文档的规定" in page and "文档缺失" in page and "处方信息上传" in page
    assert "尚未录入" in page
    with pytest.raises(ConfigurationError):
        run_slot("ihs.A1000", SLOT, enqueue=False)
    dashboard = text(web.get("/dashboard/panel"))  # the slot's error says why nothing goes
    assert "计划失败" in dashboard and "签名已知答案校验未通过" in dashboard and "尚未录入" in dashboard
    assert "暂不发送" in dashboard and 'href="/ihs/"' in dashboard  # the gate itself, with where to fix it
    assert "暂不发送" in text(web.get("/tasks/"))  # and on the report types

    example = ihs_sandbox.example_for(sandbox.config["key"])
    answer = web.post("/ihs/example", {**example, "key": sandbox.config["key"]})
    assert answer.status_code == 302
    assert sandbox.config["key"] not in text(web.get("/ihs/"))  # write-only

    found = text(web.post("/ihs/search"))
    assert ihs_sandbox.DEMO_RECIPE.describe() in found and "采用" in found
    assert web.post("/ihs/apply", ihs_sandbox.DEMO_RECIPE.settings()).status_code == 302
    assert not gate.state(current_settings()).open  # adopted, not yet verified

    web.post("/ihs/verify")
    db.session.expire_all()
    assert gate.state(current_settings()).open
    assert "已验证，允许发送" in text(web.get("/ihs/"))
    assert "暂不发送" not in text(web.get("/dashboard/panel")) and "暂不发送" not in text(web.get("/tasks/"))

    save_regulator_setting(REGULATOR, "app_secret", "rotated")
    db.session.commit()
    assert "需重新验证" in text(web.get("/ihs/"))


def test_viewers_see_the_gate_but_cannot_change_it(app, serve):
    configure_sandbox(serve, example=False)
    web = login(app, "viewer")
    assert "签名已知答案门禁" in text(web.get("/ihs/"))
    assert web.post("/ihs/verify").status_code == 403
    assert web.post("/ihs/example", {"appid": "x"}).status_code == 403
