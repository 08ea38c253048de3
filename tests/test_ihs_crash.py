"""A worker SIGKILLed while an IHS batch is on the wire (the sandbox already kept it, the answer never
came): the sweep re-sends it, everything else follows in call order, and the sandbox ends up with each
hospital record exactly once (real worker processes, real Redis, the sandbox on a real HTTP server)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import date, datetime, timedelta

import pytest
import sqlalchemy as sa
from conftest import ROOT
from test_ihs_support import SHANGHAI, configure_sandbox, faults, plan_all, records

from core import clock, pipeline, settings
from core.db import db
from core.models import Upload, UploadStatus
from demo.hospital import generate
from plugins.ihs_supervision import catalogue

COUNTS = {
    "A1000": "SELECT COUNT(*) FROM ihs_hospitals", "A1001": "SELECT COUNT(*) FROM departments",
    "A1002": "SELECT COUNT(*) FROM ihs_staff", "A2000": "SELECT COUNT(*) FROM ihs_revisit_orders",
    "A2001": "SELECT COUNT(*) FROM ihs_revisit_services", "A2010": "SELECT COUNT(*) FROM ihs_consultations",
    "A0000": "SELECT COUNT(*) FROM ihs_attachments WHERE big = 0",
    "A0001": "SELECT COUNT(*) FROM ihs_attachments WHERE big = 1",
}


def start_worker(*args: str) -> subprocess.Popen:
    db.session.remove()
    return subprocess.Popen([sys.executable, "-m", "core.cli", "worker", *args], cwd=ROOT, env=dict(os.environ),
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.mark.slow
def test_a_worker_killed_mid_send_loses_and_doubles_nothing(app, serve, tmp_path, monkeypatch):
    his_url = f"sqlite:///{tmp_path / 'his.db'}"
    generate(his_url, start=date(2025, 3, 3), end=date(2025, 3, 4), now=datetime(2025, 3, 5))
    monkeypatch.setenv("HIS_DATABASE_URL", his_url)
    sandbox = configure_sandbox(serve, timeout="60")
    from core.queue import enqueue_upload

    planned = plan_all(datetime(2025, 3, 5, 0, 0, tzinfo=SHANGHAI))
    total = sum(len(ids) for ids in planned.values())
    for ids in planned.values():
        for upload_id in ids:
            enqueue_upload(upload_id, 0)
    faults(sandbox.url, slow_seconds=30)  # each batch is kept, then the answer is late

    worker = start_worker()
    try:
        deadline = time.monotonic() + 60
        while not sandbox.state.log:
            assert worker.poll() is None, worker.stderr.read().decode()
            assert time.monotonic() < deadline, "the worker never sent anything"
            time.sleep(0.05)
        [sending] = db.session.execute(sa.select(Upload).where(Upload.status == UploadStatus.SENDING)).scalars()
        horse = int(sending.attempt_list[-1].worker.rsplit(":", 1)[1])
        stuck_id = sending.id
        db.session.remove()
        os.killpg(worker.pid, signal.SIGKILL)
        os.killpg(os.getpgid(horse), signal.SIGKILL)
        worker.wait(10)
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(10)
    faults(sandbox.url, reset=True)
    time.sleep(0.5)
    assert len(sandbox.state.log) == 1  # one batch reached the regulator; its answer was never seen

    lease = settings.flag_int("send_lease_seconds")
    clock.freeze(clock.now() + timedelta(seconds=lease + 120))
    swept = pipeline.sweep()
    clock.freeze(None)
    assert swept["recovered"] == 1
    again = start_worker("--burst")
    _, errors = again.communicate(timeout=300)
    assert again.returncode == 0, errors.decode()[-3000:]
    for _ in range(5):  # released dependents may need another pass of the queue
        db.session.expire_all()
        if db.session.execute(sa.select(sa.func.count(Upload.id))
                              .where(Upload.status != UploadStatus.SUCCEEDED)).scalar_one() == 0:
            break
        pipeline.sweep()
        burst = start_worker("--burst")
        burst.communicate(timeout=300)

    db.session.expire_all()
    statuses = Counter(db.session.execute(sa.select(Upload.status)).scalars())
    assert statuses == {UploadStatus.SUCCEEDED: total}
    stuck = db.session.get(Upload, stuck_id)
    assert [a.outcome for a in stuck.attempt_list] == ["unknown", "success"]
    engine = sa.create_engine(his_url)
    with engine.connect() as conn:
        for code in (i.code for i in catalogue.interfaces()):
            kept = records(sandbox.url, code, limit=0)
            assert kept["count"] == len(set(kept["keys"])) == conn.execute(sa.text(COUNTS[code])).scalar_one(), code
    engine.dispose()
