"""Every audit action reaches the admin with a Chinese name, and the 操作 filter offers every action."""

from __future__ import annotations

import re
from pathlib import Path

from test_web_support import login

from web.audit import action_choices, action_label

ROOT = Path(__file__).resolve().parents[1]


def _recorded_actions() -> set[str]:
    found: set[str] = set()
    for path in [*ROOT.glob("web/**/*.py"), *ROOT.glob("plugins/**/*.py"), *ROOT.glob("core/**/*.py")]:
        found |= set(re.findall(r"audit\.record\(\s*\"([a-z_.]+)\"", path.read_text(encoding="utf-8")))
    return found


def test_every_action_the_code_records_has_a_chinese_label(app):
    from web.audit import all_labels

    labels = all_labels()  # the admin's own and the plugins' (hook register_audit_actions)
    missing = sorted(a for a in _recorded_actions() if a not in labels)
    assert not missing, f"audit actions without a label (web/audit.py or the plugin's register_audit_actions): {missing}"


def test_an_unlabelled_plugin_action_is_named_by_its_family_never_raw():
    assert action_label("filing.sheet") == "备案：其他操作"
    assert action_label("something_new") == "其他操作"
    assert ("filing.sheet", "备案：其他操作") in action_choices(["filing.sheet"])


def test_the_audit_page_filter_lists_configuration_mapping_regulator_and_filing_actions(app):
    from web import audit

    with app.app_context():
        audit.record("regulator.settings", "keydata", commit=True)
        audit.record("filing.sheet", "filing:1", commit=True)
    page = login(app, "admin").get("/users/audit").get_data(as_text=True)
    for label in ("修改监管平台设置", "保存字段映射", "导入科室对照", "医师审核通过", "备案：其他操作", "授予医生权限"):
        assert label in page
    body = page.split("<tbody>", 1)[-1]
    assert "regulator.settings" not in body.replace('value="regulator.settings"', "")
