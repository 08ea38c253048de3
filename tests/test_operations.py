"""Metrics that match the ledger after a real run, retention that removes bodies and keeps metadata,
settings from the command line (round trip, secrets never on the command line or in stdout) and the
platform flags page."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from flask import current_app
from prometheus_client.parser import text_string_to_metric_families
from test_web_support import login

from core import clock, settings
from core.db import db
from core.models import Attempt, AuditLog, Slot, Task, Upload, UploadStatus
from core.scheduler import run_slot, tick

SHANGHAI = ZoneInfo("Asia/Shanghai")


def scrape(client, **headers) -> dict[str, dict[tuple, float]]:
    answer = client.get("/metrics", headers=headers)
    assert answer.status_code == 200, answer.status_code
    assert answer.content_type.startswith("text/plain")
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(answer.get_data(as_text=True)):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def ledger_counts() -> dict[tuple[str, str], int]:
    rows = db.session.execute(sa.select(Upload.report_type, Upload.status, sa.func.count())
                              .group_by(Upload.report_type, Upload.status)).all()
    return {(rt, status): n for rt, status, n in rows}


@pytest.mark.slow
def test_metrics_match_the_ledger_after_a_small_run(echo, work, monkeypatch):
    # A scheduler that was down three hours: catch-up "latest" runs one slot and skips the others.
    task = db.session.execute(sa.select(Task).filter_by(report_type="echo.hourly")).scalar_one()
    task.last_slot_at = clock.utc_naive(clock.now() - timedelta(hours=3, minutes=5))
    db.session.commit()
    tick(report_type="echo.hourly")
    work()
    echo.state["mode"] = "reject"
    run_slot("echo.hourly", datetime(2025, 2, 17, 8, 0, tzinfo=SHANGHAI))
    work()
    echo.state["mode"] = "fail"
    run_slot("echo.hourly", datetime(2025, 2, 17, 9, 0, tzinfo=SHANGHAI))
    work()

    samples = scrape(echo_client := current_app.test_client())
    counts = ledger_counts()
    assert counts[("echo.hourly", UploadStatus.SUCCEEDED)] == 1
    assert counts[("echo.hourly", UploadStatus.REJECTED)] == 1
    assert counts[("echo.hourly", UploadStatus.RETRY_WAIT)] == 1
    shown = {(dict(k)["report_type"], dict(k)["status"]): v for k, v in samples["baosong_uploads"].items()}
    assert shown == counts
    assert samples["baosong_retry_backlog"][()] == 1
    assert samples["baosong_oldest_retry_age_seconds"][()] >= 0
    assert samples["baosong_oldest_pending_age_seconds"][()] == 0  # none pending

    attempts = db.session.execute(sa.select(Attempt.duration_ms)).scalars().all()
    assert samples["baosong_attempt_duration_seconds_count"][(("regulator", "echo"),)] == len(attempts) == 3
    total = samples["baosong_attempt_duration_seconds_sum"][(("regulator", "echo"),)]
    assert total == pytest.approx(sum(attempts) / 1000)
    assert samples["baosong_attempt_duration_seconds_bucket"][(("le", "+Inf"), ("regulator", "echo"))] == 3

    skipped = db.session.scalar(sa.select(sa.func.count(Slot.id)).where(Slot.status == "skipped"))
    assert skipped >= 2
    assert samples["baosong_missed_slots"][(("reason", "skipped"), ("report_type", "echo.hourly"))] == skipped
    assert samples["baosong_queue_depth"][(("queue", "baosong"),)] == 0
    assert samples["baosong_workers_alive"][()] == 0  # the burst worker has gone
    assert samples["baosong_scheduler_leader"][()] == 0
    assert samples["baosong_database_up"][()] == 1 and samples["baosong_redis_up"][()] == 1

    monkeypatch.setenv("BAOSONG_METRICS_TOKEN", "metrics-token-123")
    assert echo_client.get("/metrics").status_code == 401
    assert echo_client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert scrape(echo_client, Authorization="Bearer metrics-token-123")["baosong_retry_backlog"][()] == 1


def test_metrics_show_the_leader_the_tick_a_live_worker_and_the_oldest_waiting_ages(echo, redis_conn):
    from rq import Worker

    from core.health import LAST_TICK_KEY, record_tick
    from core.queue import queues
    from core.scheduler_process import LEADER_KEY, acquire_leadership

    now = clock.now()
    for n, (status, minutes) in enumerate(((UploadStatus.PENDING, 10), (UploadStatus.PENDING, 2),
                                           (UploadStatus.RETRY_WAIT, 30))):
        db.session.add(Upload(report_type="echo.hourly", business_key=f"bk-{n}", period=f"p{n}", status=status,
                              idempotency_key=f"k{n}", created_at=clock.utc_naive(now - timedelta(minutes=minutes))))
    db.session.commit()
    assert acquire_leadership(redis_conn, "sched-host:1")
    record_tick(redis_conn)
    worker = Worker(queues(), connection=redis_conn, name="metrics-worker")
    worker.register_birth()
    worker.heartbeat()

    samples = scrape(current_app.test_client())
    assert samples["baosong_oldest_pending_age_seconds"][()] == pytest.approx(600, abs=30)
    assert samples["baosong_oldest_retry_age_seconds"][()] == pytest.approx(1800, abs=30)
    assert samples["baosong_retry_backlog"][()] == 1
    assert samples["baosong_scheduler_leader"][()] == 1
    assert 0 <= samples["baosong_scheduler_last_tick_age_seconds"][()] < 30
    assert samples["baosong_workers_alive"][()] == 1

    worker.register_death()
    redis_conn.delete(LEADER_KEY, LAST_TICK_KEY)
    samples = scrape(current_app.test_client())
    assert samples["baosong_workers_alive"][()] == 0 and samples["baosong_scheduler_leader"][()] == 0
    assert samples["baosong_scheduler_last_tick_age_seconds"][()] == -1


# --- retention -------------------------------------------------------------------------------

def _sent_uploads(echo, work) -> list[Upload]:
    run_slot("echo.hourly", datetime(2025, 2, 17, 8, 0, tzinfo=SHANGHAI))
    run_slot("echo.hourly", datetime(2025, 2, 17, 9, 0, tzinfo=SHANGHAI))
    work()
    return list(db.session.scalars(sa.select(Upload).order_by(Upload.id)))


def test_prune_removes_old_bodies_and_keeps_metadata(echo, work):
    old, recent = _sent_uploads(echo, work)
    old_attempt = old.attempt_list[0]
    old_attempt.started_at = clock.utc_naive(clock.now() - timedelta(days=200))
    db.session.commit()
    kept = {"url": old_attempt.url, "http_status": old_attempt.http_status, "code": old_attempt.code,
            "outcome": old_attempt.outcome, "duration_ms": old_attempt.duration_ms}

    from core.retention import prune

    assert prune(dry_run=True)["attempts"] == 1
    assert old_attempt.plaintext  # a dry run removes nothing
    result = prune()
    assert (result["attempts"], result["days"]) == (1, 180)
    db.session.expire_all()
    old_attempt = db.session.get(Attempt, old_attempt.id)
    assert (old_attempt.plaintext, old_attempt.wire_body, old_attempt.response_body) == (None, None, None)
    assert old_attempt.pruned_at is not None
    assert {k: getattr(old_attempt, k) for k in kept} == kept
    assert db.session.get(Upload, old.id).status == UploadStatus.SUCCEEDED and db.session.get(Upload, old.id).rows
    recent_attempt = db.session.get(Upload, recent.id).attempt_list[0]
    assert recent_attempt.plaintext and recent_attempt.pruned_at is None
    assert prune()["attempts"] == 0  # nothing twice

    client = login(current_app, "admin")
    page = client.get(f"/uploads/{old.id}").get_data(as_text=True)
    assert "报文已按保留策略清除" in page
    assert "报文已按保留策略清除" not in client.get(f"/uploads/{recent.id}").get_data(as_text=True)


def test_retention_setting_the_cli_and_the_daily_run(echo, work, redis_conn):
    from core.cli import main
    from core.retention import prune_if_due

    [first, second] = _sent_uploads(echo, work)
    for upload, days in ((first, 40), (second, 10)):
        upload.attempt_list[0].started_at = clock.utc_naive(clock.now() - timedelta(days=days))
    settings.set_flag("retention_days", "30")
    db.session.commit()
    runner = CliRunner()
    dry = runner.invoke(main, ["prune", "--dry-run"])
    assert dry.exit_code == 0 and "将清除 1 次尝试的报文（保留 30 天" in dry.output
    assert prune_if_due(redis_conn)["attempts"] == 1  # the first sweep of the day prunes
    assert prune_if_due(redis_conn) is None  # later sweeps that day do not
    done = runner.invoke(main, ["prune", "--days", "7"])
    assert done.exit_code == 0 and "已清除 1 次" in done.output


def test_a_daily_prune_that_failed_is_tried_again_within_the_hour_not_the_next_day(echo, work, redis_conn,
                                                                                   monkeypatch):
    from core import retention

    [first, _second] = _sent_uploads(echo, work)
    first.attempt_list[0].started_at = clock.utc_naive(clock.now() - timedelta(days=400))
    db.session.commit()

    def broken(**_kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(retention, "prune", broken)
    with pytest.raises(RuntimeError):
        retention.prune_if_due(redis_conn)
    assert 0 < redis_conn.ttl(retention.DAILY_KEY) <= retention.RETRY_AFTER_FAILURE_S
    monkeypatch.undo()
    assert retention.prune_if_due(redis_conn) is None  # not every minute while it keeps failing
    redis_conn.delete(retention.DAILY_KEY)  # the hour has passed
    assert retention.prune_if_due(redis_conn)["attempts"] == 1
    assert redis_conn.ttl(retention.DAILY_KEY) > retention.RETRY_AFTER_FAILURE_S  # then daily again


# --- settings from the command line ------------------------------------------------------------

def invoke(*args, input=None):
    from core.cli import main

    result = CliRunner().invoke(main, ["settings", *args], input=input)
    db.session.expire_all()
    return result


def test_settings_round_trip_and_secrets_only_from_stdin_or_a_file(echo, tmp_path):
    shown = invoke("show", "echo")
    assert shown.exit_code == 0 and echo.token not in shown.output and "****" in shown.output

    refused = invoke("set", "echo", "token", "new-SECRET-token-1")
    assert refused.exit_code != 0 and "不能写在命令行" in refused.output
    assert settings.regulator_settings("echo").get("token") == echo.token

    assert invoke("set", "echo", "token", "--stdin", input="new-SECRET-token-1\n").exit_code == 0
    assert settings.regulator_settings("echo").get("token") == "new-SECRET-token-1"
    secret_file = tmp_path / "token.txt"
    secret_file.write_text("file-SECRET-token-2\n")
    assert invoke("set", "echo", "token", "--from-file", str(secret_file)).exit_code == 0
    assert settings.regulator_settings("echo").get("token") == "file-SECRET-token-2"
    assert invoke("set", "echo", "timeout", "12").exit_code == 0
    assert invoke("set", "platform", "retry_max", "4").exit_code == 0

    plain = invoke("export")
    assert plain.exit_code == 0 and "file-SECRET-token-2" not in plain.output
    document = json.loads(plain.output)
    assert document["regulators"]["echo"] == {"url": f"{echo.url}/report", "timeout": "12"}
    assert document["secrets_omitted"]["echo"] == ["token"]
    assert document["platform"]["retry_max"] == "4"

    assert invoke("export", "--with-secrets").exit_code != 0  # never to the terminal
    full = tmp_path / "settings.json"
    assert invoke("export", "--with-secrets", "--output", str(full)).exit_code == 0
    assert os.stat(full).st_mode & 0o777 == 0o600
    assert json.loads(full.read_text())["regulators"]["echo"]["token"] == "file-SECRET-token-2"

    # A fresh installation configured from the file: everything comes back.
    for key in ("url", "token", "timeout"):
        assert invoke("unset", "echo", key).exit_code == 0
    assert invoke("unset", "platform", "retry_max").exit_code == 0
    assert settings.regulator_settings("echo").get("token") == "" and settings.flag("retry_max") == "3"
    imported = invoke("import", str(full))
    assert imported.exit_code == 0, imported.output
    values = settings.regulator_settings("echo")
    assert (values.get("url"), values.get("token"), values.get("timeout")) == (
        f"{echo.url}/report", "file-SECRET-token-2", "12")
    assert settings.flag("retry_max") == "4"
    assert invoke("import", str(full)).output.startswith("已导入 0 项修改")

    audit = db.session.execute(sa.select(AuditLog).where(AuditLog.actor.like("cli:%"))).scalars().all()
    assert audit and all("SECRET" not in json.dumps(a.after, ensure_ascii=False) for a in audit)


def test_the_cli_reads_values_as_the_admin_form_does(echo, app, tmp_path):
    admin = login(app, "admin")
    assert admin.post("/config/regulators/echo", {"timeout": " 9 "}).status_code == 302
    db.session.expire_all()
    from_form = settings.regulator_settings("echo").get("timeout")

    padded = tmp_path / "padded.json"
    padded.write_text(json.dumps({"regulators": {"echo": {"timeout": " 11\n", "token": ""}}}))
    assert invoke("import", str(padded)).exit_code == 0
    values = settings.regulator_settings("echo")
    assert (from_form, values.get("timeout")) == ("9", "11")  # surrounding spaces dropped by both
    assert values.get("token") == echo.token  # an empty secret leaves the stored one, as in the form

    empty = invoke("set", "echo", "token", "--stdin", input="\n")
    assert empty.exit_code != 0 and "为空：未修改" in empty.output and "settings unset echo token" in empty.output
    assert settings.regulator_settings("echo").get("token") == echo.token


def test_an_invalid_import_stores_nothing_and_names_every_problem(echo, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"platform": {"retry_max": "99", "retry_interval_minutes": "10"},
                               "regulators": {"echo": {"timeout": "7", "nope": "1"}, "ghost": {"x": "1"}}}))
    result = invoke("import", str(bad))
    assert result.exit_code != 0
    assert "未导入任何设置" in result.output
    assert "自动重试次数：应在 0 到 50 之间，收到 99" in result.output
    assert "回声平台 没有设置项 nope" in result.output and "没有名为 ghost 的监管平台" in result.output
    assert settings.flag("retry_interval_minutes") == "5" and settings.regulator_settings("echo").get("timeout") == "5"


# --- the platform flags page ---------------------------------------------------------------------

def test_platform_flags_form_is_admin_only_audited_and_validates_like_the_cli(app):
    operator = login(app, "operator")
    assert operator.get("/config/platform/").status_code == 403
    assert operator.post("/config/platform/", {"retry_max": "4"}).status_code == 403

    admin = login(app, "admin")
    page = admin.get("/config/platform/").get_data(as_text=True)
    assert "自动重试间隔（分钟）" in page and "报文保留天数" in page and "data-confirm=" in page
    assert "onclick" not in page and "onsubmit" not in page
    assert admin.post("/config/platform/", {"retry_max": "4"}, csrf=False).status_code == 400

    answer = admin.post("/config/platform/", {"retry_interval_minutes": "10", "retry_max": "4",
                                              "send_lease_seconds": "120", "retention_days": "90"},
                        follow_redirects=True)
    assert "已保存" in answer.get_data(as_text=True)
    assert (settings.flag("retry_interval_minutes"), settings.flag("retry_max"), settings.flag("retention_days")) \
        == ("10", "4", "90")
    entry = db.session.execute(sa.select(AuditLog).filter_by(action="platform.flags")).scalar_one()
    assert entry.after == {"retry_interval_minutes": "10", "retry_max": "4", "retention_days": "90"}

    wrong = admin.post("/config/platform/", {"retry_max": "99"}, follow_redirects=True).get_data(as_text=True)
    cli = invoke("set", "platform", "retry_max", "99")
    assert "自动重试次数：应在 0 到 50 之间，收到 99" in wrong and "自动重试次数：应在 0 到 50 之间，收到 99" in cli.output
    assert settings.flag("retry_max") == "4"
