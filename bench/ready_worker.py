"""A ``baosong worker --burst`` that starts up, says it is ready, and takes no job until released.

bench_worker.py starts every worker this way, so that the measured span (first attempt to last) holds
work only: started together and let go at once, two workers' start-ups (about a second of CPU each:
imports, the crypto self-test, the app) used to overlap the first worker's sending and were counted as
its time. A deployed worker starts once and runs for months, so its start-up is measured apart.

    python bench/ready_worker.py READY_DIR     # touches READY_DIR/ready-<pid>, waits for READY_DIR/go

Set one of these to a directory to look inside each worker, from its release to its exit:
``BENCH_WORKER_PROFILE`` (cProfile, CPU time), ``BENCH_WORKER_SQLTIME`` (each SQL statement's CPU and
wall time; ``bench/statement_times.py`` prints them), ``BENCH_WORKER_PERF`` (Linux ``perf record``).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path


def main(ready_dir: Path) -> int:
    from core.app import process_app
    from core.crypto import self_test
    from core.plugins import registry

    # What worker.main does before its loop, done once here; worker.main repeats it from warm caches.
    self_test()
    registry()
    with process_app().app_context():
        pass
    import worker

    (ready_dir / f"ready-{os.getpid()}").touch()
    while not (ready_dir / "go").exists():
        time.sleep(0.001)
    sql_dir = os.environ.get("BENCH_WORKER_SQLTIME")  # a directory: each worker's statement times land there
    if sql_dir:
        _time_statements(Path(sql_dir))
    perf_dir = os.environ.get("BENCH_WORKER_PERF")  # a directory: each worker's `perf record` lands there
    if perf_dir:
        return _under_perf(Path(perf_dir), lambda: worker.main(burst=True))
    profile_dir = os.environ.get("BENCH_WORKER_PROFILE")  # a directory: each worker's cProfile lands there
    if not profile_dir:
        return worker.main(burst=True)
    import cProfile

    # CPU time, not wall time: a worker sharing two cores with another is descheduled at times, and wall
    # time would count that against whatever function it was in.
    profiler = cProfile.Profile(time.process_time)
    try:
        return profiler.runcall(worker.main, burst=True)
    finally:
        profiler.dump_stats(str(Path(profile_dir) / f"worker-{os.getpid()}.prof"))


def _time_statements(sql_dir: Path) -> None:
    """Time every SQL statement this worker runs (CPU of this thread and wall time, by verb and table)
    and write the totals to ``sql_dir/worker-<pid>.json`` at exit; ``bench/statement_times.py`` prints
    them per upload. The SQLite driver runs in this thread, so a statement's CPU is SQLite's work
    (pages read again after another worker's commit among it), its wall time adds any waiting."""
    import atexit
    import json
    from collections import defaultdict

    import sqlalchemy as sa

    from core.app import process_app
    from core.db import db

    with process_app().app_context():
        engine = db.engine
    tables = set(db.metadata.tables)  # a statement is named by its verb and the first table it names
    totals: dict = defaultdict(lambda: [0, 0.0, 0.0])  # name -> [count, CPU s, wall s]
    started: list = []

    @sa.event.listens_for(engine, "before_cursor_execute")
    def _before(conn, cursor, statement, parameters, context, executemany) -> None:
        started.append((time.thread_time(), time.perf_counter()))

    @sa.event.listens_for(engine, "after_cursor_execute")
    def _after(conn, cursor, statement, parameters, context, executemany) -> None:
        cpu, wall = started.pop()
        words = statement.split()
        table = next((w.strip('"(') for w in words[1:] if w.strip('"(').lower() in tables), "")
        entry = totals[" ".join(filter(None, (words[0].upper(), table, "(many)" if executemany else "")))]
        entry[0] += 1
        entry[1] += time.thread_time() - cpu
        entry[2] += time.perf_counter() - wall

    atexit.register(lambda: (sql_dir / f"worker-{os.getpid()}.json").write_text(json.dumps(totals)))


def _under_perf(perf_dir: Path, run) -> int:
    """Run ``run`` with Linux ``perf record`` sampling this process (native frames: SQLite, the
    interpreter, the kernel), from the release to the exit, so start-up is left out."""
    import shutil
    import signal
    import subprocess

    if shutil.which("perf") is None:
        raise SystemExit("BENCH_WORKER_PERF needs Linux perf (the linux-perf package), which is not installed")
    output = perf_dir / f"worker-{os.getpid()}.data"
    recorder = subprocess.Popen(["perf", "record", "-q", "-F", "1999", "-g", "-p", str(os.getpid()),
                                 "-o", str(output)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)  # perf attaches before the first job
    try:
        return run()
    finally:
        recorder.send_signal(signal.SIGINT)
        recorder.wait(timeout=60)


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
