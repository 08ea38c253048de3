import pytest
from test_web import *  # noqa
from test_web import test_task_changes_reach_rq_scheduler as t


def test_scratch(app, webtest, redis_conn, monkeypatch):
    import core.scheduler as cs
    from core import clock

    def fixed(task, scheduler=None):
        scheduler = scheduler or cs._rq_scheduler()
        nxt = cs.next_runs(task.cron, task.timezone, clock.now(), 1)[0]
        scheduler.enqueue_at(clock.utc_naive(nxt), "core.scheduler.fire_task_job", task.report_type,
                             job_id="baosong-task-" + task.report_type.replace(".", "_"))
        return nxt

    monkeypatch.setattr(cs, "schedule_next_firing", fixed)
    t(app, webtest, redis_conn)
