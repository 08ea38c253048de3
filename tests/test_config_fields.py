# ruff: noqa: F811  (fixtures imported from test_config_support are used as parameters)
"""配置管理 › 字段映射配置 through the admin: save versions, validation, preview on real data recording
nothing, comparison, restore; and the planned uploads record the version their rows went through."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

from test_config_support import his, his_url, maptest  # noqa: F401  (fixtures)
from test_web_support import login

from core.models import AuditLog, HeldBack, Upload

V1 = {"rules-0-target": "deptCode", "rules-0-kind": "column", "rules-0-source": "dept_code",
      "rules-1-target": "visits", "rules-1-kind": "column", "rules-1-source": "cnt", "rules-1-convert": "integer",
      "rules-2-target": "firstTime", "rules-2-source": "first_time", "rules-2-convert": "datetime"}
V2 = {**V1, "rules-1-kind": "expression", "rules-1-source": "cnt * 10"}


def _slot():
    from core import clock

    return clock.now().astimezone(ZoneInfo("Asia/Shanghai")).replace(minute=0, second=0, microsecond=0)


def _plan(slot) -> Upload:
    from core.db import db
    from core.scheduler import run_slot

    [upload_id] = run_slot("maptest.visits", slot, "manual", enqueue=False)
    return db.session.get(Upload, upload_id)


def test_without_a_mapping_rows_pass_through_and_no_version_is_recorded(app, maptest):
    upload = _plan(_slot())
    assert upload.mapping_version is None
    assert upload.rows and {"dept_code", "cnt"} <= set(upload.rows[0]) and "visits" not in upload.rows[0]


def test_save_compare_restore_and_the_next_upload_uses_the_restored_version(app, maptest):
    from core.db import db

    admin = login(app, "admin")
    assert admin.post("/config/fields/maptest.visits/save", {**V1, "comment": "初版"}).status_code == 302
    assert admin.post("/config/fields/maptest.visits/save", {**V2, "comment": "乘十"}).status_code == 302
    first = _plan(_slot() - timedelta(hours=1))
    assert first.mapping_version == 2
    raw = first.rows[0]
    assert raw["visits"] == raw["cnt"] * 10 and raw["deptCode"] == raw["dept_code"]
    assert len(raw["firstTime"]) == 14 and raw["firstTime"].isdigit()  # yyyyMMddHHmmss from the schema

    page = admin.get("/config/fields/maptest.visits/compare?a=1&b=2").get_data(as_text=True)
    assert 'data-target="visits"' in page and "修改" in page and "cnt * 10" in page
    assert page.count("diff-same") == 2

    assert admin.post("/config/fields/maptest.visits/restore", {"version": "1"}).status_code == 302
    page = admin.get("/config/fields/maptest.visits").get_data(as_text=True)
    assert 'id="current-version">v3' in page and "恢复自 v1" in page
    upload = _plan(_slot())
    assert upload.mapping_version == 3 and upload.rows[0]["visits"] == upload.rows[0]["cnt"]
    actions = [a for (a,) in db.session.execute(db.select(AuditLog.action).order_by(AuditLog.id))]
    assert actions.count("field_mapping.save") == 2 and "field_mapping.restore" in actions


def test_invalid_mapping_is_not_saved(app, maptest):
    from core.mapping import active_version

    admin = login(app, "admin")
    bad = {**V1, "rules-1-kind": "expression", "rules-1-source": "open('/etc/passwd')", "comment": "坏"}
    answer = admin.post("/config/fields/maptest.visits/save", bad)
    assert answer.status_code == 422 and "不支持的函数 open" in answer.get_data(as_text=True)
    wrong_type = {**V1, "rules-1-convert": "date", "comment": "类型不对"}
    answer = admin.post("/config/fields/maptest.visits/save", wrong_type)
    assert answer.status_code == 422 and "不能得到接口要求的 integer" in answer.get_data(as_text=True)
    assert admin.post("/config/fields/maptest.visits/save", V1).status_code == 422  # a comment is required
    assert active_version("maptest.visits") is None


def test_only_admins_save_or_restore(app, maptest):
    operator = login(app, "operator")
    assert operator.post("/config/fields/maptest.visits/save", {**V1, "comment": "x"}).status_code == 403
    assert operator.post("/config/fields/maptest.visits/restore", {"version": "1"}).status_code == 403


def test_validate_and_preview_use_the_form_and_record_nothing(app, maptest):
    from core.db import db

    client = login(app, "operator")
    html = client.post("/config/fields/maptest.visits/validate", V1).get_data(as_text=True)
    assert "校验通过" in html
    slot = (_slot() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    html = client.post("/config/fields/maptest.visits/preview", {**V1, "slot": slot, "use": "form"}).get_data(
        as_text=True)
    assert "表单中未保存的规则" in html and "报文通过接口字段校验" in html and "&#34;visits&#34;" in html
    html = client.post("/config/fields/maptest.visits/preview", {**V1, "slot": slot, "use": "active"}).get_data(
        as_text=True)
    assert "未配置映射" in html and "必填字段缺失" in html  # the plugin's raw columns are not interface fields
    assert db.session.scalar(db.select(db.func.count(Upload.id))) == 0
    assert db.session.scalar(db.select(db.func.count(HeldBack.id))) == 0


def test_preview_of_keydata_dept_daily_holds_back_unmapped_departments_without_recording(app, his):
    from core.db import db
    from plugins.keydata import demo_seed

    demo_seed.seed_mappings()
    client = login(app, "operator")
    slot = (_slot() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    html = client.post("/config/fields/keydata.dept_daily/preview", {"slot": slot, "use": "active"}).get_data(
        as_text=True)
    assert "插件计划" in html and "departNo" in html
    assert db.session.scalar(db.select(db.func.count(HeldBack.id))) == 0
    assert db.session.scalar(db.select(db.func.count(Upload.id))) == 0


def test_edit_pages_render(app, maptest):
    admin = login(app, "admin")
    admin.post("/config/fields/maptest.visits/save", {**V1, "comment": "初版"})
    assert "maptest.visits" in admin.get("/config/fields/").get_data(as_text=True)
    page = admin.get("/config/fields/maptest.visits/versions/1").get_data(as_text=True)
    assert "列 cnt，转为整数" in page
    assert admin.get("/config/fields/maptest.visits/versions/9").status_code == 404
    assert admin.get("/config/fields/nope.nothing").status_code == 404


def test_restoring_the_plugin_default_saves_an_empty_version_and_rows_pass_through_again(app, maptest):
    from core.db import db

    admin = login(app, "admin")
    page = admin.get("/config/fields/maptest.visits").get_data(as_text=True)
    assert "恢复插件默认映射" not in page  # nothing to restore yet
    assert admin.post("/config/fields/maptest.visits/save", {**V1, "comment": "初版"}).status_code == 302
    assert "恢复插件默认映射" in admin.get("/config/fields/maptest.visits").get_data(as_text=True)
    answer = admin.post("/config/fields/maptest.visits/reset", {})
    assert answer.status_code == 302
    page = admin.get("/config/fields/maptest.visits").get_data(as_text=True)
    assert 'id="current-version">v2' in page and "已恢复插件默认映射" in page
    upload = _plan(_slot())
    assert upload.mapping_version == 2 and "visits" not in upload.rows[0] and "cnt" in upload.rows[0]
    again = admin.post("/config/fields/maptest.visits/reset", {}, follow_redirects=True).get_data(as_text=True)
    assert "当前已经是插件默认映射" in again
    actions = [a for (a,) in db.session.execute(db.select(AuditLog.action).order_by(AuditLog.id))]
    assert actions.count("field_mapping.reset") == 1
    operator = login(app, "operator")
    assert operator.post("/config/fields/maptest.visits/reset", {}).status_code == 403


def test_preview_does_not_wait_for_the_change_note(app, maptest):
    page = login(app, "admin").get("/config/fields/maptest.visits").get_data(as_text=True)
    assert 'name="comment"' in page and "required" not in page.split('name="comment"')[1].split(">")[0]
