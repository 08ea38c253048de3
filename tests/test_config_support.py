"""Shared by the configuration tests: a demo hospital database (demo.hospital) as the HIS, the keydata
department mapping seeded the demo way, and "maptest", a small plugin whose SQL returns the HIS's own column
names so only a field mapping turns them into interface fields."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from core.hook_types import Payload, Regulator, ReportType, SettingField, UploadPlan
from core.hookspecs import hookimpl
from core.schema import Schema

VISITS_SQL = ("SELECT r.dept_code, d.dept_name, COUNT(*) AS cnt, MIN(r.reg_time) AS first_time "
              "FROM registrations r JOIN departments d ON d.dept_code = r.dept_code "
              "WHERE r.status = 'valid' AND r.reg_time >= :start AND r.reg_time < :end "
              "GROUP BY r.dept_code, d.dept_name ORDER BY r.dept_code")
SCHEMA = Schema.from_dict({
    "name": "maptest.visits", "title": "映射测试",
    "fields": [
        {"name": "deptCode", "title": "科室代码", "type": "string", "required": True, "max_length": 10},
        {"name": "visits", "title": "就诊人次", "type": "integer", "required": True},
        {"name": "firstTime", "title": "首次挂号时间", "type": "datetime", "format": "yyyyMMddHHmmss"},
    ],
})
REPORT = ReportType(name="maptest.visits", title="映射测试日报", regulator="maptest", cron="0 * * * *",
                    schema=SCHEMA, queries={"visits": VISITS_SQL})


class MapTestPlugin:
    """Plans one upload per slot holding every department's row, as the (mapped) source returns them."""

    @hookimpl
    def register_regulators(self):
        return [Regulator("maptest", "映射测试平台", settings=(SettingField("url", "接口地址"),))]

    @hookimpl
    def register_report_types(self):
        return [REPORT]

    @hookimpl
    def schedule(self, report_type, slot, source, settings):
        start = slot.replace(hour=0, minute=0, second=0, microsecond=0)
        rows = source.query(report_type, "visits", start=f"{start:%Y-%m-%d %H:%M:%S}",
                            end=f"{slot:%Y-%m-%d %H:%M:%S}")
        return [UploadPlan(business_key=f"maptest-{slot:%Y%m%d%H%M}", period=f"{slot:%Y-%m-%d %H:%M}", rows=rows)]

    @hookimpl
    def build_payload(self, upload):
        records = [{k: r.get(k) for k in ("deptCode", "visits", "firstTime") if k in r} for r in upload.rows]
        return Payload(records=records, document=records)


@pytest.fixture(scope="session")
def his_url(tmp_path_factory):
    """A demo hospital database covering yesterday and today (generated once per session)."""
    pytest.importorskip("core.hisdb", reason="core.hisdb (HospitalData) not available yet")
    from demo.hospital import generate

    path = tmp_path_factory.mktemp("his") / "demo_hospital.db"
    generate(f"sqlite:///{path}", start=TEST_DAY - timedelta(days=1), end=TEST_DAY, now=TEST_NOW.replace(tzinfo=None))
    return f"sqlite:///{path}"


# "Now" for these tests: mid-afternoon of today, so "today so far" has a day's registrations whatever the
# hour the suite runs at (just after midnight in Shanghai, today would still be empty).
TEST_DAY = datetime.now(ZoneInfo("Asia/Shanghai")).date()
TEST_NOW = datetime.combine(TEST_DAY, time(15, 30), ZoneInfo("Asia/Shanghai"))


@pytest.fixture
def his(his_url, monkeypatch):
    from core import clock

    monkeypatch.setenv("HIS_DATABASE_URL", his_url)
    clock.freeze(TEST_NOW)  # undone by the app fixture
    yield his_url
    clock.freeze(None)


@pytest.fixture
def departments(app, his):
    """keydata's dictionary loaded and the demo's partial department mapping (about two thirds mapped)."""
    from plugins.keydata import demo_seed

    count = demo_seed.seed_mappings()
    assert count > 10
    return count


@pytest.fixture
def maptest(app, his, registry_with):
    from core.scheduler import ensure_tasks

    reg = registry_with(MapTestPlugin())
    ensure_tasks()
    return reg
