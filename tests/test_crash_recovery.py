"""A worker killed (SIGKILL, whole process group) in the middle of sending: the upload is found by
the sweep and re-sent once, with the same idempotency key, never as a duplicate new record."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from waiting import wait_until

from core import clock, pipeline
from core.db import db
from core.models import Upload, UploadStatus
from core.scheduler import run_slot

ROOT = Path(__file__).resolve().parents[1]


def start_worker_process() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "worker.py")], cwd=ROOT, env=dict(os.environ),
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.slow
def test_an_upload_interrupted_by_a_killed_worker_is_resent_once_with_the_same_key(echo, work):
    # The worker subprocess loads plugins from entry points only: give it the echo plugin the same way.
    os.environ["BAOSONG_EXTRA_PLUGINS"] = "echo_regulator:EchoPlugin"
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])
    echo.state["hang"] = 30
    [upload_id] = run_slot("echo.hourly", clock.now().astimezone(ZoneInfo("Asia/Shanghai")))
    worker = start_worker_process()
    try:
        wait_until(lambda: len(echo.state["requests"]) == 1, 30)
        db.session.expire_all()
        upload = db.session.get(Upload, upload_id)
        assert upload.status == UploadStatus.SENDING
        # RQ runs each job in a work-horse with a process group of its own: the machine is lost, so
        # both die. The attempt row names the horse (it was committed before the request left).
        horse = int(upload.attempt_list[-1].worker.rsplit(":", 1)[1])
        os.killpg(worker.pid, signal.SIGKILL)
        os.killpg(os.getpgid(horse), signal.SIGKILL)
        worker.wait(10)
        wait_until(lambda: not Path(f"/proc/{horse}").exists() or _is_zombie(horse), 30)
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
        os.environ.pop("BAOSONG_EXTRA_PLUGINS", None)
    echo.state["hang"] = 0

    # Before the lease runs out nothing is touched: the worker might still be alive elsewhere.
    assert pipeline.sweep()["recovered"] == 0
    counts = pipeline.sweep(clock.now() + timedelta(minutes=5))
    assert counts == {"recovered": 1, "retried": 1, "requeued": 0}
    work()

    db.session.expire_all()
    upload = db.session.get(Upload, upload_id)
    assert upload.status == UploadStatus.SUCCEEDED
    assert [a.outcome for a in upload.attempt_list] == ["unknown", "success"]
    first, second = echo.state["requests"]
    assert first["requestId"] == second["requestId"] == upload.idempotency_key
    assert second["resend"] is True
    assert list(echo.state["records"]) == [upload.idempotency_key]  # one record at the regulator
