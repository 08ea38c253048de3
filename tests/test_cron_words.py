"""Cron expressions are shown in words beside the expression; old ages carry their date."""

from __future__ import annotations

from datetime import timedelta

import pytest

from web.cron_words import describe


@pytest.mark.parametrize("expression,words", [
    ("0 * * * *", "每小时整点"),
    ("*/15 * * * *", "每 15 分钟"),
    ("5 0 * * *", "每天 00:05"),
    ("0 0 1 * *", "每月1日 00:00"),
    ("0 9 * * 1", "每周一 09:00"),
    ("0 2 * * 1-5", "每周一至周五 02:00"),
    ("0 3 1,15 * *", "每月1日、15日 03:00"),
    ("0 */2 * * *", "每 2 小时（整点）"),
    ("0 3 * * MON", "每周一 03:00"),
])
def test_common_schedules_read_as_chinese_words(expression, words):
    assert describe(expression) == words


def test_unusual_expressions_are_described_field_by_field_never_left_bare():
    text = describe("0-10/5 1,3 * * *")
    assert "分" in text and "时" in text and text != "0-10/5 1,3 * * *"


def test_no_schedule_gives_no_words():
    assert describe(None) == "" and describe("") == ""


def test_ages_older_than_a_week_show_the_date_with_its_year(app):
    from core import clock
    from web.filters import ago

    with app.app_context():
        old = clock.utc_naive(clock.now() - timedelta(days=394))
        text = ago(old)
        assert "394 天前" in text and str((clock.local_now() - timedelta(days=394)).year) in text
        assert ago(clock.utc_naive(clock.now() - timedelta(minutes=5))) == "5 分钟前"


def test_the_dashboard_and_the_task_list_show_each_schedule_in_words_beside_its_expression(app):
    import html

    from test_web_support import login

    from core.db import db
    from core.models import Task

    tasks = [t for t in db.session.execute(db.select(Task)).scalars() if t.cron]
    assert tasks
    operator = login(app, "operator")
    dashboard = html.unescape(operator.get("/dashboard/panel", headers={"HX-Request": "true"}).get_data(as_text=True))
    listing = html.unescape(operator.get("/tasks/").get_data(as_text=True))
    for task in tasks:
        shown = f'{describe(task.cron)} <code class="muted">{task.cron}</code>'
        assert describe(task.cron) and shown in dashboard and shown in listing, task.cron
