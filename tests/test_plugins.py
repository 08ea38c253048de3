"""Plugins are found through entry points; a new report type in its own package runs end to end
without any change to core/."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from core.db import db
from core.models import Upload, UploadStatus
from core.plugins import registry
from core.scheduler import run_slot
from core.settings import save_regulator_setting

ROOT = Path(__file__).resolve().parents[1]


def test_the_built_in_plugins_and_an_installed_package_are_found_through_entry_points():
    names = {registry().pm.get_name(p) for p in registry().pm.get_plugins()}
    assert {"keydata", "shangrao_insurance", "twopath", "ihs_supervision", "weekly_report"} <= names


def test_baosong_plugins_lists_plugins_with_their_report_types():
    out = subprocess.run([sys.executable, "-m", "core.cli", "plugins"], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout
    assert "weekly_report" in out and "weekly.outpatient_visits" in out
    assert "ihs.A1000" in out and "不可用" in out


def test_the_core_only_asks_the_owning_plugin_for_a_report_types_hooks(app):
    caller = registry().hook("weekly.outpatient_visits", "build_payload")
    owners = {impl.plugin_name for impl in caller.get_hookimpls()}
    assert owners == {"weekly_report"}


def test_a_weekly_report_from_a_separate_package_runs_end_to_end(app, his, serve, work):
    from weekly_report.plugin import make_sandbox

    sandbox = make_sandbox({"sign_key": "weekly-test-key"})
    url = serve(sandbox)
    save_regulator_setting("weekly", "url", f"{url}/report")
    save_regulator_setting("weekly", "org_code", "H36110200001")
    save_regulator_setting("weekly", "sign_key", "weekly-test-key")
    db.session.commit()

    monday = datetime(2025, 2, 17, 1, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
    run_slot("weekly.outpatient_visits", monday)
    work()

    upload = db.session.execute(sa.select(Upload)).scalar_one()
    assert upload.status == UploadStatus.SUCCEEDED, upload.last_message
    received = sandbox.config["RECEIVED"]
    assert list(received) == ["2025-02-10~2025-02-16"]
    assert received["2025-02-10~2025-02-16"]["visits"] > 0


def test_core_has_no_knowledge_of_the_example_plugin():
    for path in (ROOT / "core").rglob("*.py"):
        text = path.read_text("utf-8")
        assert "import weekly_report" not in text and "from weekly_report" not in text, path
        assert "outpatient_visits" not in text, path
