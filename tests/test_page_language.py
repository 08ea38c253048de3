"""No English or raw internal identifier reaches a page: every page the admin can open (every GET route
without parameters, plus the detail pages of a few records) is scanned, as a person would read it, for
names from a deny-list of internal identifiers (states, operations, audit actions, exception names).

Text inside <code>, <pre>, <script> and <style> is not prose (report-type names, cron expressions and raw
messages shown as code), and attribute values are not read."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from test_web_support import install_webtest, login, plan_and_send

import plugins.keydata.models  # noqa: F401  (plugin pages need their tables)
import plugins.twopath.models  # noqa: F401
from core.models import UploadStatus
from web.audit import ACTION_LABELS

DENY = {
    *UploadStatus.ALL, "failures", "new", "update", "delete", "planned", "skipped", "error", "catch_up", "backfill",
    "manual", "held_back", "waiting", "None", "True", "False", "null", "undefined", "NaN",
    "Traceback", "BadZipFile", "KeyError", "ValueError", "TypeError", "IntegrityError", "OperationalError",
    "Internal Server Error", "Not Found", "Method Not Allowed", "Forbidden", "Bad Request",
    *ACTION_LABELS,
}
NOT_PROSE = {"code", "pre", "script", "style", "textarea", "kbd", "samp"}


class _Prose(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.depth = 0
        self.parts: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag in NOT_PROSE:
            self.depth += 1

    def handle_endtag(self, tag):
        if tag in NOT_PROSE and self.depth:
            self.depth -= 1

    def handle_data(self, data):
        if not self.depth:
            self.parts.append(data)


def prose(html: str) -> str:
    parser = _Prose()
    parser.feed(html)
    return " ".join(parser.parts)


def untranslated(html: str) -> list[str]:
    text = prose(html)
    found = []
    for word in DENY:
        if re.search(rf"(?<![A-Za-z0-9_.]){re.escape(word)}(?![A-Za-z0-9_])", text):
            found.append(word)
    return sorted(found)


def _pages(app) -> list[str]:
    paths = []
    for rule in app.url_map.iter_rules():
        if "GET" not in rule.methods or rule.arguments or rule.endpoint == "static":
            continue
        if any(part in rule.rule for part in ("/export", "/logout", "/_sandbox", "/metrics", "/healthz", "/readyz",
                                              ".xlsx", "/download", "/api/")):
            continue
        paths.append(rule.rule)
    return sorted(set(paths))


@pytest.fixture
def webtest(app, registry_with, serve):
    return install_webtest(registry_with, serve)


def test_no_page_shows_an_untranslated_internal_identifier(app, webtest):
    from core.db import db
    from core.models import Task

    ids = plan_and_send(3)
    admin = login(app, "admin")
    paths = _pages(app) + [f"/uploads/{i}" for i in ids]
    task = db.session.execute(db.select(Task)).scalars().first()
    if task is not None:
        paths.append(f"/tasks/{task.id}")
    problems = {}
    for path in paths:
        answer = admin.get(path)
        if answer.status_code != 200 or "text/html" not in answer.content_type:
            continue
        words = untranslated(answer.get_data(as_text=True))
        if words:
            problems[path] = words
    assert not problems, problems


def test_the_scanner_finds_what_it_is_meant_to_find():
    assert untranslated("<p>状态：failed</p>") == ["failed"]
    assert untranslated("<td>new</td><td>BadZipFile: File is not a zip file</td>") == ["BadZipFile", "new"]
    assert untranslated("<p>类型 <code>keydata.dept_daily</code> 计划 <code>failed</code> catch_up</p>") == ["catch_up"]
    assert untranslated('<a title="failed" href="/x?status=failed">失败</a>') == []


def test_a_file_that_is_not_a_workbook_is_refused_in_chinese_without_an_exception_name(app):
    from plugins.twopath import catalogue

    applied, errors = catalogue.import_workbook("drugs", b"PK\x03\x04 not really a zip")
    assert applied == 0 and len(errors) == 1
    assert "不是有效的 Excel" in str(errors[0]) and not untranslated(f"<p>{errors[0]}</p>")
    assert "Error" not in str(errors[0]) and "Zip" not in str(errors[0])


def test_the_excel_export_names_the_operation_in_chinese(app, webtest):
    import io

    import openpyxl

    plan_and_send(1)
    answer = login(app, "admin").get("/uploads/export.xlsx")
    sheet = openpyxl.load_workbook(io.BytesIO(answer.data)).active
    header = [c.value for c in sheet[1]]
    column = header.index("操作")
    values = {row[column].value for row in sheet.iter_rows(min_row=2) if row[0].value is not None}
    assert values and values <= {"新增", "更新", "删除/撤回"}


def _hospital_daily_upload(status: str, idempotency_key: str):
    from core.db import db
    from core.models import Upload

    upload = Upload(report_type="keydata.hospital_daily", business_key="2025/02/17 07:59:59",
                    period="2025/02/17 07:59:59", status=status, idempotency_key=idempotency_key,
                    search_text="", rows=[{"visits": 1}])
    db.session.add(upload)
    db.session.commit()
    return upload


def test_update_and_withdraw_are_not_offered_for_an_upload_that_never_landed(app):
    from core.models import UploadStatus
    from plugins.keydata import plugin

    upload = _hospital_daily_upload(UploadStatus.REJECTED, "x")
    actions = {a.name: a for a in plugin.upload_actions(upload)}
    assert actions["resend"].unavailable and "重试" in actions["resend"].unavailable
    assert actions["withdraw"].unavailable
    upload.status = UploadStatus.SUCCEEDED
    actions = {a.name: a for a in plugin.upload_actions(upload)}
    assert not actions["resend"].unavailable and not actions["withdraw"].unavailable


def test_the_detail_page_shows_update_and_withdraw_disabled_and_refuses_them_before_the_upload_landed(app):
    from core.db import db
    from core.models import Upload, UploadStatus

    upload = _hospital_daily_upload(UploadStatus.FAILED, "y")
    operator = login(app, "operator")
    page = operator.get(f"/uploads/{upload.id}").get_data(as_text=True)
    for label in ("更新重发（dataFlag=2）", "撤回（dataFlag=3）"):
        button = re.search(rf"<button[^>]*>{re.escape(label)}</button>", page)
        assert button and "disabled" in button.group(0) and "请用「重试」发送" in button.group(0), label
    before = db.session.execute(db.select(db.func.count(Upload.id))).scalar_one()
    answer = operator.post(f"/uploads/{upload.id}/actions/resend", follow_redirects=True)
    assert "平台尚未确认接收" in answer.get_data(as_text=True)
    assert db.session.execute(db.select(db.func.count(Upload.id))).scalar_one() == before
