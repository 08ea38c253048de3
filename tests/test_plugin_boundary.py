"""The plugin boundary, proved from outside: examples/weekly_report is its own installed package and
gets tables and migrations, an admin page and menu entry, an upload action, a connection probe, a mapped
dictionary, demo data, a command and an ordered pair of report types — all through hooks, with nothing in
core/ or web/ naming it or any built-in plugin. init-db upgrades a database of the previous release."""

from __future__ import annotations

import ast
import sqlite3
from datetime import datetime
from importlib.metadata import distribution
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from test_web_support import login

from core.db import db
from core.models import HeldBack, Upload, UploadStatus
from core.scheduler import run_slot
from core.settings import save_regulator_setting

ROOT = Path(__file__).resolve().parents[1]
BUILT_IN = ("keydata", "shangrao", "twopath", "ihs")
# Nothing in core/ or web/ may name a built-in plugin (their first tables moved to their own migration
# branches, which adopt the tables older databases have).
ALLOWED: set = set()
MONDAY = datetime(2025, 2, 17, 1, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
WEEK = "2025-02-10~2025-02-16"


# --- layering -------------------------------------------------------------------------------------------

def _code_names(path: Path) -> list[str]:
    """Identifiers, imported module names and string constants of a module; docstrings left out."""
    tree = ast.parse(path.read_text("utf-8"))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            found.append(node.value)
        elif isinstance(node, ast.Name):
            found.append(node.id)
        elif isinstance(node, ast.Attribute):
            found.append(node.attr)
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append(node.module or "")
    return found


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text("utf-8"))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out


def test_no_built_in_plugin_is_named_in_core_or_web_code():
    offenders = []
    for folder in ("core", "web"):
        for path in (ROOT / folder).rglob("*"):
            if path in ALLOWED or not path.is_file():
                continue
            if path.suffix == ".py":
                texts = _code_names(path)
            elif path.suffix in (".html", ".js", ".css"):
                texts = [path.read_text("utf-8")]
            else:
                continue
            for text in texts:
                for name in BUILT_IN:
                    if name in text.lower():
                        offenders.append(f"{path.relative_to(ROOT)}: {text[:80]!r}")
    assert offenders == []


def test_core_never_imports_web_plugins_or_the_demo_and_web_never_imports_a_plugin():
    for path in (ROOT / "core").rglob("*.py"):
        assert not _imports(path) & {"web", "plugins", "demo", "weekly_report"}, path
    for path in (ROOT / "web").rglob("*.py"):
        assert not _imports(path) & {"plugins", "weekly_report"}, path


def _seeded_tables() -> dict[str, set[str]]:
    """The demo HIS tables each built-in plugin's seed creates, by entry-point name."""
    from plugins.ihs_supervision import demo_seed as ihs
    from plugins.shangrao_insurance import demo_seed as shangrao
    from plugins.twopath import demo_seed as twopath

    return {"shangrao_insurance": set(shangrao.metadata.tables), "twopath": set(twopath.metadata.tables),
            "ihs_supervision": set(ihs.metadata.tables)}


def test_the_demo_hospital_names_no_plugin_nor_a_plugins_table():
    """demo/hospital.py writes the tables every plugin reads; a plugin's own tables come from its seed hook."""
    text = (ROOT / "demo/hospital.py").read_text("utf-8").lower()
    plugins = {ep.name for ep in distribution("baosong").entry_points.select(group="baosong.plugins")}
    tables = set().union(*_seeded_tables().values())
    assert {"insu_visits", "insu_fee_items", "twopath_applications", "chronic_disease_diagnoses"} <= tables
    named = sorted(name for name in (plugins - {"baosong_admin"}) | tables | {"weekly_report"} if name in text)
    assert named == []


def test_each_plugin_seeds_its_own_demo_tables_and_only_when_installed(tmp_path):
    from datetime import date

    from core.plugins import Registry, make_plugin_manager, use_registry
    from demo.hospital import generate, metadata

    pm = make_plugin_manager()
    for name in ("shangrao_insurance", "twopath"):
        pm.unregister(name=name)
    use_registry(Registry(pm))
    try:
        counts = generate(str(tmp_path / "his.db"), start=date(2025, 3, 3), end=date(2025, 3, 3))
    finally:
        use_registry(None)
    with sqlite3.connect(tmp_path / "his.db") as conn:
        present = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    seeded = _seeded_tables()
    assert set(metadata.tables) | seeded["ihs_supervision"] | {"weekly_clinic_targets"} <= present
    assert not (seeded["shangrao_insurance"] | seeded["twopath"]) & (present | set(counts))
    assert counts["registrations"] > 0 and counts["ihs_staff"] > 0


# --- the example package --------------------------------------------------------------------------------

def test_the_example_is_a_separately_installed_package():
    import weekly_report

    assert distribution("baosong-weekly-report").entry_points.select(group="baosong.plugins")
    assert Path(weekly_report.__file__).resolve().is_relative_to(ROOT / "examples")


@pytest.fixture
def weekly(app, his, serve):
    from weekly_report.plugin import make_sandbox

    sandbox = make_sandbox({"sign_key": "weekly-test-key"})
    url = serve(sandbox)
    save_regulator_setting("weekly", "url", f"{url}/report")
    save_regulator_setting("weekly", "org_code", "H36110200001")
    save_regulator_setting("weekly", "sign_key", "weekly-test-key")
    db.session.commit()
    return sandbox


def _upload(report_type: str) -> Upload:
    db.session.expire_all()
    return db.session.execute(sa.select(Upload).filter_by(report_type=report_type).order_by(Upload.id)).scalars().first()


def _map_every_department(client) -> None:
    from weekly_report.plugin import local_departments

    for department in local_departments():
        answer = client.post("/config/departments/map", {"dictionary": "WEEKLY.GROUP", "local_code": department.code,
                                                         "local_name": department.name, "national_code": "G1"})
        assert answer.status_code in (200, 302)


def test_the_group_detail_waits_for_the_weeks_total_and_is_sent_after_it(weekly, work, app):
    operator = login(app, "operator")
    page = operator.get("/config/departments/?dictionary=WEEKLY.GROUP").get_data(as_text=True)
    assert "周报科室分组" in page and "未对照" in page  # the generic mapping page serves the example's dictionary
    _map_every_department(operator)

    run_slot("weekly.department_groups", MONDAY)  # planned first: it must wait for the total
    detail = _upload("weekly.department_groups")
    assert detail.status == UploadStatus.WAITING and "weekly.outpatient_visits" in detail.last_message
    work()
    assert weekly.config["LOG"] == []
    run_slot("weekly.outpatient_visits", MONDAY)
    work()
    assert _upload("weekly.outpatient_visits").status == UploadStatus.SUCCEEDED
    assert _upload("weekly.department_groups").status == UploadStatus.SUCCEEDED
    assert weekly.config["LOG"] == [("visits", "new", WEEK), ("groups", "new", WEEK)]
    assert sum(weekly.config["DETAILS"][WEEK]["groups"].values()) == weekly.config["RECEIVED"][WEEK]["visits"]


def test_unmapped_departments_are_held_back_from_the_group_detail(weekly, work):
    run_slot("weekly.department_groups", MONDAY)
    held = db.session.execute(sa.select(HeldBack).filter_by(report_type="weekly.department_groups")).scalars().all()
    assert held and all("尚未对照周报分组" in h.reason for h in held)


def test_the_plugins_page_menu_entry_action_and_reversal(weekly, work, app):
    from weekly_report.models import WeeklyReceipt

    run_slot("weekly.outpatient_visits", MONDAY)
    work()
    upload = _upload("weekly.outpatient_visits")
    viewer = login(app, "viewer")
    home = viewer.get("/").get_data(as_text=True)
    assert 'href="/weekly/"' in home and "门诊周报" in home
    page = viewer.get("/weekly/").get_data(as_text=True)
    assert WEEK in page and "未核对" in page
    detail = viewer.get(f"/uploads/{upload.id}").get_data(as_text=True)
    assert "标记已核对" not in detail  # the action needs an operator
    assert viewer.post(f"/uploads/{upload.id}/actions/check").status_code == 403

    operator = login(app, "operator")
    detail = operator.get(f"/uploads/{upload.id}").get_data(as_text=True)
    assert "标记已核对" in detail and "冲销并重传" in detail
    assert operator.post(f"/uploads/{upload.id}/actions/check").status_code == 302
    receipt = db.session.execute(sa.select(WeeklyReceipt)).scalar_one()
    db.session.refresh(receipt)
    assert receipt.checked_by == "operator-user"
    assert operator.post(f"/uploads/{upload.id}/actions/nope").status_code == 404

    assert operator.post(f"/uploads/{upload.id}/reverse").status_code == 302
    work()
    assert weekly.config["LOG"] == [("visits", "new", WEEK), ("visits", "delete", WEEK), ("visits", "new", WEEK)]
    children = db.session.execute(sa.select(Upload).filter_by(parent_id=upload.id).order_by(Upload.id)).scalars().all()
    assert [(c.operation, c.status) for c in children] == [("delete", UploadStatus.SUCCEEDED),
                                                           ("new", UploadStatus.SUCCEEDED)]


def test_the_connection_probe_is_structured_and_catches_a_wrong_key(weekly, app):
    operator = login(app, "admin")  # 测试连接 is an admin's (it makes the server open a connection)
    html = operator.post("/config/regulators/weekly/test").get_data(as_text=True)
    assert "连接正常" in html and "签名校验" in html and "weekly-test-key" not in html
    save_regulator_setting("weekly", "sign_key", "wrong-key")
    db.session.commit()
    html = operator.post("/config/regulators/weekly/test").get_data(as_text=True)
    assert "协议测试未通过" in html and "请核对签名密钥" in html


def test_the_demo_hospital_has_the_plugins_seeded_rows(his_url):
    path = his_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT week_start, target FROM weekly_clinic_targets ORDER BY week_start").fetchall()
    assert rows and all(datetime.fromisoformat(week).weekday() == 0 for week, _ in rows)


def test_the_plugin_adds_a_command(weekly, work):
    from click.testing import CliRunner

    from core.cli import main

    run_slot("weekly.outpatient_visits", MONDAY)
    work()
    result = CliRunner().invoke(main, ["weekly-receipts"])
    assert result.exit_code == 0 and WEEK in result.output and "未核对" in result.output


# --- migrations -----------------------------------------------------------------------------------------

def test_init_db_upgrades_a_database_of_the_previous_release_with_its_data(unmigrated_app):
    """A database made by the release before this one (the core's initial migration only, with data):
    init-db adds the ordering table and the example's own branch and keeps every row."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from flask_migrate import upgrade

    from core.app import MIGRATIONS
    from core.bootstrap import init_db

    app = unmigrated_app
    with app.app_context():
        upgrade(directory=MIGRATIONS, revision="9072698936cc")
        # That release's initial migration also made the built-in plugins' first tables, recorded under
        # the core's revision only: make them, then forget the plugins' revisions.
        upgrade(directory=MIGRATIONS, revision="keydata_0001")
        upgrade(directory=MIGRATIONS, revision="twopath_0000")
        with db.engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM alembic_version"))
            conn.execute(sa.text("INSERT INTO alembic_version (version_num) VALUES ('9072698936cc')"))
            assert "upload_dependencies" not in sa.inspect(conn).get_table_names()
            conn.execute(sa.text(
                "INSERT INTO uploads (id, report_type, business_key, period, operation, status, attempts, "
                "auto_retries, delivery_uncertain, idempotency_key, rows, result, search_text, created_at, updated_at) "
                "VALUES (1, 'keydata.hospital_daily', 'k1', '2025/02/17 07:59:59', 'new', 'succeeded', 1, 0, false, "
                "'idem-1', '[]', '{}', 'k1', '2025-02-17 00:00:00', '2025-02-17 00:00:00')"))
            conn.execute(sa.text("INSERT INTO keydata_department_mappings (local_code, local_name, national_code, "
                                 "updated_at) VALUES ('0101', '心内科', 'A03.04', '2025-02-17 00:00:00')"))
    init_db(app)
    with app.app_context(), db.engine.connect() as conn:
        tables = set(sa.inspect(conn).get_table_names())
        assert {"upload_dependencies", "weekly_report_receipts", "weekly_report_group_mappings"} <= tables
        assert conn.execute(sa.text("SELECT business_key, status FROM uploads")).all() == [("k1", "succeeded")]
        assert conn.execute(sa.text("SELECT national_code FROM keydata_department_mappings")).scalar() == "A03.04"
        versions = {row[0] for row in conn.execute(sa.text("SELECT version_num FROM alembic_version"))}
        assert {"weekly_report_0001", "keydata_0001", "twopath_0001"} <= versions and len(versions) >= 2
        context = MigrationContext.configure(conn, opts={"include_object": lambda o, n, *a: not (n or "").startswith(
            ("uploads_search_fts", "ix_uploads_search_trgm"))})
        assert compare_metadata(context, db.metadata) == []
    init_db(app)  # running it again changes nothing


def test_init_db_adopts_the_built_in_plugins_tables_of_a_database_made_before_they_had_branches(unmigrated_app):
    """The release before this one made keydata's tables in the core's history (no keydata_0001 recorded)
    and twopath's first tables likewise (twopath_0001 recorded on top): init-db adopts them, rows intact."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from core.bootstrap import init_db

    app = unmigrated_app
    init_db(app)
    with app.app_context(), db.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM alembic_version WHERE version_num = 'keydata_0001'"))
        conn.execute(sa.text("INSERT INTO keydata_department_mappings (local_code, local_name, national_code, "
                             "updated_at) VALUES ('0101', '心内科', 'A03.04', '2025-02-17 00:00:00')"))
        conn.execute(sa.text("INSERT INTO twopath_drugs (code, name, enabled, note, updated_at) "
                             "VALUES ('XL01', '某靶向药', true, '', '2025-02-17 00:00:00')"))
    init_db(app)
    with app.app_context(), db.engine.connect() as conn:
        versions = {row[0] for row in conn.execute(sa.text("SELECT version_num FROM alembic_version"))}
        assert {"keydata_0001", "twopath_0001"} <= versions and "twopath_0000" not in versions
        assert conn.execute(sa.text("SELECT national_code FROM keydata_department_mappings")).scalar() == "A03.04"
        assert conn.execute(sa.text("SELECT name FROM twopath_drugs")).scalar() == "某靶向药"
        context = MigrationContext.configure(conn, opts={"include_object": lambda o, n, *a: not (n or "").startswith(
            ("uploads_search_fts", "ix_uploads_search_trgm"))})
        assert compare_metadata(context, db.metadata) == []


def test_the_admins_commands_reach_baosong_through_the_hook_like_any_plugins():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "core.cli", "--help"], capture_output=True, text=True, check=True,
                         cwd=ROOT).stdout
    for command in ("init-db", "web", "create-admin", "demo", "weekly-receipts"):
        assert command in out, command
