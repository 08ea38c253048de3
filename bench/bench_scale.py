"""The admin at a hospital's tenth year: every page over HTTP, as a logged-in admin, at 10k, 100k and 1M
uploads, on SQLite and PostgreSQL.

    python bench/bench_scale.py                                 # 10,000 and 100,000, both backends
    python bench/bench_scale.py --large                         # + 1,000,000 (seeding takes minutes)
    python bench/bench_scale.py 10000 --db sqlite --plans       # + the query plans of the hot queries
    python bench/bench_scale.py --pg-url postgresql://postgres@127.0.0.1:5432/test

Seeding is realistic and fast (bulk inserts with SQLAlchemy Core): a year of uploads of several report
types (key data per hospital and per department, Shangrao batches, two-path filings, IHS), ~5 % failures
(failed, waiting for retry, rejected), departments, resends as children, and attempts with realistic
bodies (plaintext, hex wire body, answer). The statistics aggregates are then built by
``core.aggregates.rebuild`` (timed: what ``baosong stats rebuild`` costs) and the planner's statistics
by ANALYZE (what init-db runs). The admin is served by a real HTTP server (werkzeug, threaded) in this
process; each page is fetched ``--repeat`` times after a warm-up and its p50/p95 printed, then the growth
ratio of the largest size over the smallest, which is measured before and after the largest (the ratio is
over their mean). Targets from issue 17: statistics ≤ 300 ms, dashboard and panel ≤ 100 ms, detail
≤ 50 ms, log filters and counts ≤ 100 ms, growth ≤ 2.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_upload_log import PG_URL, _driver_url, _pg_schema, _postgres_up  # noqa: E402

PASSWORD = "Bench-passw0rd-1"
# (report type, weight): roughly a hospital's year (hourly key data per department dominates).
MIX = [("keydata.dept_daily", 60), ("keydata.hospital_daily", 3), ("shangrao.setl_d", 11),
       ("shangrao.mdtrt_d", 11), ("shangrao.fee_list_d", 11), ("twopath.2503", 2), ("ihs.A2000", 2)]
STATUSES = [("succeeded", 945), ("failed", 20), ("failed_will_retry", 15), ("rejected", 15), ("pending", 5)]
DEPARTMENTS = [(f"{300 + i:04d}", f"科室{i:02d}") for i in range(40)]
NEEDLE = "360199198001011234"
HOSPITAL_FIELDS = ("totalPersonTimes", "clinicPersonTimes", "emerPersonTimes", "feverPersonTimes",
                   "clinicMediFreq", "presCount", "enterPersonTimes", "outPersonTimes")
MESSAGES = {"failed": ("E500", "服务繁忙，请稍后重试"), "failed_will_retry": (None, "连接失败：Connection refused"),
            "rejected": ("400", "statDate 字段格式错误"), "pending": (None, None), "succeeded": ("200", "success")}


def _rows(rng: random.Random, report_type: str, created: datetime, department: tuple[str, str]) -> list[dict]:
    stat = f"{created:%Y/%m/%d %H}:59:59"
    if report_type == "keydata.hospital_daily":
        return [{"orgCode": "H36110200001", "statDate": stat, "dataFlag": "1",
                 **{f: rng.randint(0, 3000) for f in HOSPITAL_FIELDS}}]
    if report_type == "keydata.dept_daily":
        return [{"orgCode": "H36110200001", "statDate": stat, "departNoExp": department[0],
                 "departNameExp": department[1], "departNo": "A03", "departName": "内科", "dataFlag": "1",
                 "personTimes": rng.randint(0, 300)}]
    if report_type.startswith("shangrao."):
        return [{"SETL_ID": f"S{rng.getrandbits(40):012d}", "MDTRT_ID": f"M{rng.getrandbits(40):012d}",
                 "PSN_NAME": "张*", "CERTNO": "3601**********1234", "AGE": rng.randint(1, 90),
                 "MEDFEE_SUMAMT": round(rng.uniform(10, 5000), 2), "SETL_TIME": f"{created:%Y-%m-%d %H:%M:%S}"}
                for _ in range(3)]
    return [{"psn_no": f"P{rng.getrandbits(32):010d}", "begndate": f"{created:%Y-%m-%d}"}]


def populate(engine, count: int, *, seed: int = 7, batch: int = 10_000) -> dict:
    """Insert ``count`` uploads over the last 365 days (ids in time order) and their attempts."""
    import sqlalchemy as sa

    from core.models import Attempt, Upload

    rng = random.Random(seed)
    types = [t for t, _ in MIX]
    type_weights = [w for _, w in MIX]
    statuses = [s for s, _ in STATUSES]
    status_weights = [w for _, w in STATUSES]
    end = datetime.utcnow() - timedelta(minutes=5)
    start = end - timedelta(days=365)
    step = (end - start) / max(count, 1)
    wire_pool = [os.urandom(n).hex() for n in (160, 176, 192, 208, 240, 480, 960)]
    uploads: list[dict] = []
    attempts: list[dict] = []
    attempt_id = 0
    parents: list[int] = []
    with engine.connect() as conn:
        for i in range(count):
            upload_id = i + 1
            report_type = rng.choices(types, type_weights)[0]
            status = rng.choices(statuses, status_weights)[0]
            created = start + step * i
            department = rng.choice(DEPARTMENTS)
            rows = _rows(rng, report_type, created, department)
            person = NEEDLE if i == count // 2 else f"36010{rng.randint(2, 9)}19{rng.randint(50, 99)}" \
                                                     f"{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}{rng.randint(0, 9999):04d}"
            key = f"{report_type}@{created:%Y%m%d%H%M%S}#{i}"
            msgid = f"{rng.getrandbits(128):032x}"
            code, message = MESSAGES[status]
            parent_id = None
            if report_type.startswith("keydata.") and status == "succeeded":
                if parents and rng.random() < 0.002:  # a resend (dataFlag 2) of an earlier upload
                    parent_id = rng.choice(parents)
                elif rng.random() < 0.01:
                    parents.append(upload_id)
                    parents[:] = parents[-200:]
            n_attempts = {"succeeded": 1 if rng.random() < 0.97 else 2, "failed": 4,
                          "failed_will_retry": rng.randint(1, 3), "rejected": 1, "pending": 0}[status]
            uploads.append(dict(
                id=upload_id, report_type=report_type, business_key=key, period=f"{created:%Y/%m/%d %H}:59:59",
                department=department[0] if report_type == "keydata.dept_daily" else None,
                operation="update" if parent_id else "new", status=status, counted_status=status,
                attempts=n_attempts, auto_retries=min(n_attempts - 1, 3) if n_attempts else 0,
                next_retry_at=created + timedelta(minutes=5) if status == "failed_will_retry" else None,
                delivery_uncertain=False, idempotency_key=msgid, rows=rows, result={},
                search_text=f"{key} {msgid} {person}", last_code=code, last_message=message,
                parent_id=parent_id, created_at=created, updated_at=created,
                finished_at=created + timedelta(seconds=n_attempts) if status in ("succeeded", "failed", "rejected")
                else None))
            plaintext = json.dumps(rows, ensure_ascii=False, separators=(",", ":"))
            for number in range(1, n_attempts + 1):
                attempt_id += 1
                last = number == n_attempts
                outcome = ("success" if status == "succeeded" else "reject" if status == "rejected" else "retry") \
                    if last else "retry"
                began = created + timedelta(minutes=5 * (number - 1))
                duration = int(rng.lognormvariate(4.2, 0.6))  # ~70 ms median, a long tail
                attempts.append(dict(
                    id=attempt_id, upload_id=upload_id, number=number, resend=number > 1, worker="bench:1",
                    started_at=began, finished_at=began + timedelta(milliseconds=duration), duration_ms=duration,
                    url="https://regulator.example/api/upload", headers={"Content-Type": "application/json",
                                                                          "authCode": "****"},
                    plaintext=plaintext, wire_body=rng.choice(wire_pool),
                    http_status=200 if outcome != "retry" else 500,
                    response_body='{"code":200,"message":"success"}' if outcome == "success"
                    else '{"code":500,"message":"服务繁忙"}', code=code if last else "E500",
                    message=message if last else "服务繁忙，请稍后重试", outcome=outcome))
            if len(uploads) >= batch:
                conn.execute(sa.insert(Upload.__table__), uploads)
                conn.execute(sa.insert(Attempt.__table__), attempts)
                conn.commit()  # a transaction per batch: SQLite's WAL stays small
                uploads.clear()
                attempts.clear()
        if uploads:
            conn.execute(sa.insert(Upload.__table__), uploads)
        if attempts:
            conn.execute(sa.insert(Attempt.__table__), attempts)
        if engine.dialect.name == "postgresql":
            for table in ("uploads", "attempts"):
                conn.execute(sa.text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                     f"(SELECT max(id) FROM {table}))"))
        conn.commit()
    return {"attempts": attempt_id, "parent": parents[0] if parents else None}


def _p(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


class Client:
    def __init__(self, base: str):
        import requests

        self.base = base
        self.http = requests.Session()
        html = self.http.get(f"{base}/login").text
        token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
        answer = self.http.post(f"{base}/login", data={"username": "bench", "password": PASSWORD,
                                                       "csrf_token": token}, allow_redirects=False)
        assert answer.status_code == 302, "login failed"

    def get(self, path: str, **headers) -> tuple[float, str]:
        started = time.perf_counter()
        answer = self.http.get(self.base + path, headers=headers)
        text = answer.text
        elapsed = time.perf_counter() - started
        assert answer.status_code == 200, (path, answer.status_code, text[-500:])
        return elapsed, text

    def timed(self, paths: list[str] | str, repeat: int, **headers) -> dict:
        paths = [paths] if isinstance(paths, str) else paths
        self.get(paths[0], **headers)  # warm-up (templates, caches)
        times = [self.get(paths[i % len(paths)], **headers)[0] * 1000 for i in range(repeat)]
        return {"p50": round(_p(times, 0.5), 1), "p95": round(_p(times, 0.95), 1)}


def _pages(client: Client, count: int, parent: int | None, repeat: int) -> dict[str, dict]:
    today = datetime.utcnow().date()
    week_end = today - timedelta(days=30)
    week_start = week_end - timedelta(days=6)
    rng = random.Random(count)
    detail_ids = [rng.randint(1, count) for _ in range(repeat)]
    pages: dict[str, tuple[str | list[str], dict]] = {
        "dashboard": ("/", {}),
        "dashboard panel (HTMX)": ("/dashboard/panel", {"HX-Request": "true"}),
        "metrics (Prometheus scrape)": ("/metrics", {}),
        "stats 30-day daily": ("/stats/?report_type=keydata.dept_daily&days=30", {}),
        "stats 365-day monthly": ("/stats/?report_type=keydata.dept_daily&days=365&granularity=month", {}),
        "stats 90-day hospital_daily": ("/stats/?report_type=keydata.hospital_daily&days=90", {}),
        "upload detail": ([f"/uploads/{i}" for i in detail_ids], {}),
    }
    if parent:
        pages["upload detail (with children)"] = (f"/uploads/{parent}", {})
    log = {
        "log: default": "/uploads/",
        "log: status=failures": "/uploads/?status=failures",
        "log: type + failures": "/uploads/?report_type=keydata.dept_daily&status=failures",
        "log: type + date range": f"/uploads/?report_type=shangrao.setl_d&start={week_start}&end={week_end}",
        "log: week + department": f"/uploads/?start={week_start}&end={week_end}&department=0310",
        "log: department": "/uploads/?department=0310",
        "log: department + failures": "/uploads/?department=0310&status=failures",
        "log: ID-number search": f"/uploads/?q={NEEDLE}",
        "log: search, no match": "/uploads/?q=NO-SUCH-KEY-0000",
        "log: rejected, oldest first": "/uploads/?status=rejected&order=asc",
        "log: type, oldest first": "/uploads/?report_type=twopath.2503&order=asc",
    }
    for status, _ in STATUSES:
        log[f"log: status={status}"] = f"/uploads/?status={status}"
    for name, path in log.items():
        pages[name] = (path, {})
    pages["log: HTMX results (failures)"] = ("/uploads/?status=failures",
                                             {"HX-Request": "true", "HX-Target": "upload-results"})
    pages["bulk-retry count: all failures"] = ("/retries/", {})
    pages["bulk-retry count: type"] = ("/retries/?report_type=keydata.dept_daily", {})
    pages["bulk-retry count: type + range"] = (
        f"/retries/?report_type=shangrao.setl_d&start={week_start}&end={week_end}", {})
    pages["bulk-retry confirm: rejected"] = ("/retries/confirm?status=rejected", {"HX-Request": "true"})
    results = {}
    for name, (paths, headers) in pages.items():
        results[name] = client.timed(paths, repeat, **headers)
        print(f"  {name:36} p50 {results[name]['p50']:8.1f} ms   p95 {results[name]['p95']:8.1f} ms", flush=True)
    # The 20th page of the default list, by its keyset cursors.
    url = "/uploads/"
    for _ in range(19):
        _, html = client.get(url)
        url = re.search(r'rel="next" href="([^"]+)"', html).group(1).replace("&amp;", "&")
    results["log: 20th page (keyset)"] = client.timed(url, repeat)
    print(f"  {'log: 20th page (keyset)':36} p50 {results['log: 20th page (keyset)']['p50']:8.1f} ms", flush=True)
    return results


def _export(client: Client, count: int, full: bool) -> dict:
    out = {}
    for name, query, rows in (("export: failures", "?status=failures", None), ("export: everything", "", count)):
        if rows and not full:
            continue
        started = time.perf_counter()
        answer = client.http.get(f"{client.base}/uploads/export.xlsx{query}", stream=True)
        size = sum(len(chunk) for chunk in answer.iter_content(65536))
        seconds = time.perf_counter() - started
        if rows is None:
            _, html = client.get(f"/retries/{query}")
            match = re.search(r'id="failure-count">([\d,]+)<', html)
            rows = int(match.group(1).replace(",", "")) if match else 0
        out[name] = {"s": round(seconds, 2), "MB": round(size / 1e6, 1), "rows": rows,
                     "rows_per_s": int(rows / seconds) if rows and seconds else 0}
        print(f"  {name:36} {seconds:6.2f} s  {size / 1e6:6.1f} MB  {out[name]['rows_per_s']:,} rows/s", flush=True)
    return out


PLAN_QUERIES = {
    "detail children": "SELECT id FROM uploads WHERE parent_id = 5 ORDER BY id",
    "detail attempts": "SELECT id FROM attempts WHERE upload_id = 5 ORDER BY number",
    "failures page": "SELECT id FROM uploads WHERE status = 'failed' ORDER BY created_at DESC, id DESC LIMIT 51",
    "type + failures count": "SELECT count(*) FROM (SELECT id FROM uploads WHERE report_type = 'keydata.dept_daily' "
                             "AND status IN ('failed', 'failed_will_retry', 'rejected') LIMIT 10001) AS c",
    "bulk-retry exact count": "SELECT count(id) FROM uploads WHERE status IN ('failed', 'failed_will_retry', "
                              "'rejected')",
    "dashboard today": "SELECT report_type, status, count(*) FROM uploads WHERE created_at >= '{today}' "
                       "GROUP BY report_type, status",
    "stats indicators (day totals)": "SELECT day, metric, value FROM stat_counters WHERE report_type = "
                                     "'keydata.dept_daily' AND day >= '2025-01-01' AND day <= '2025-12-31' "
                                     "AND metric IN ('ind_sum:personTimes', 'ind_n:personTimes')",
    "stats volume": "SELECT day, metric, sum(value) FROM stat_counters WHERE metric IN ('uploads:succeeded', "
                    "'uploads:failed') AND day >= '2025-01-01' GROUP BY metric, day",
    "department + failures page": "SELECT id FROM uploads WHERE department = '0310' AND status = 'failed' "
                                  "ORDER BY created_at DESC, id DESC LIMIT 51",
    "alerts latest failure": "SELECT id FROM uploads WHERE report_type = 'keydata.dept_daily' AND status = 'failed' "
                             "ORDER BY created_at DESC LIMIT 1",
    "ID-number search: key seek": f"SELECT upload_id FROM upload_search_keys WHERE key = '{NEEDLE}' LIMIT 20001",
    "ID-number search: page of the ids": "SELECT id FROM uploads WHERE id IN ({needle_id}) "
                                         "ORDER BY created_at DESC, id DESC LIMIT 51",
}


def _plans(engine, count: int) -> None:
    import sqlalchemy as sa

    explain = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN (ANALYZE, COSTS OFF) "
    with engine.connect() as conn:
        for name, sql in PLAN_QUERIES.items():
            sql = sql.replace("{today}", f"{datetime.utcnow():%Y-%m-%d}").replace("{needle_id}", str(count // 2 + 1))
            rows = conn.execute(sa.text(explain + sql)).all()
            lines = [str(r[-1]) for r in rows]
            print(f"  plan: {name}\n      " + "\n      ".join(lines))


def measure(url_db: str, count: int, args) -> dict:
    import sqlalchemy as sa

    from core import aggregates
    from core.db import db
    from core.sandbox import ServerThread
    from web import create_app, search_index
    from web.users import create_user

    os.environ["DATABASE_URL"] = url_db
    app = create_app()
    results: dict = {"uploads": count}
    with app.app_context():
        if db.engine.dialect.name == "postgresql":  # never touch another schema of a shared database
            schema = db.session.execute(sa.text("SELECT current_schema()")).scalar()
            assert schema and schema.startswith("bench_scale_"), f"refusing to run in schema {schema!r}"
            db.session.rollback()
        db.drop_all()
        db.create_all()
        started = time.perf_counter()
        seeded = populate(db.engine, count)
        results["seed_s"] = round(time.perf_counter() - started, 1)
        results["attempts"] = seeded["attempts"]
        started = time.perf_counter()
        search_index.install(db.engine)
        results["search_index_s"] = round(time.perf_counter() - started, 1)
        started = time.perf_counter()
        aggregates.rebuild()
        results["rebuild_s"] = round(time.perf_counter() - started, 1)
        if db.engine.dialect.name == "postgresql":
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(sa.text("VACUUM ANALYZE"))
        else:
            aggregates.optimize_planner(full=True)
        create_user("bench", "admin", PASSWORD)
        db.session.commit()
        print(f"  seeded {count:,} uploads + {seeded['attempts']:,} attempts in {results['seed_s']} s; "
              f"search index {results['search_index_s']} s; stats rebuild {results['rebuild_s']} s", flush=True)
        if args.plans:
            _plans(db.engine, count)
        db.session.remove()
    server = ServerThread(app)
    server.start()
    try:
        client = Client(server.url)
        results["pages"] = _pages(client, count, seeded["parent"], args.repeat)
        results["export"] = _export(client, count, full=count <= args.full_export_max)
    finally:
        server.stop()
    with app.app_context():
        db.session.remove()
        db.drop_all()
        db.engine.dispose()
    return results


# The targets; "metrics" is ours (a scrape every 15 s must not cost more than a page).
TARGETS = {"stats": 300, "dashboard": 100, "metrics": 100, "upload detail": 50, "log": 100, "bulk-retry": 100}


def _target(name: str) -> int:
    return next(v for k, v in TARGETS.items() if name.startswith(k))


def _summary(report: dict) -> None:
    for backend in sorted({key.split(" ")[0] for key in report}):
        sizes = sorted(int(key.split(" ")[1]) for key in report if key.startswith(backend + " "))
        if len(sizes) < 2:
            continue
        first = report[f"{backend} {sizes[0]}"]
        large = report[f"{backend} {sizes[-1]}"]["pages"]
        # The smallest size is measured before and after the largest (seeding 1M takes minutes, and this
        # machine's speed drifts by tens of percent over that time): the growth ratio is over their mean.
        small = {name: [runs[name]["p50"] for runs in (first["pages"], first.get("pages_again", {}))
                        if runs.get(name, {}).get("p50")] for name in large}
        print(f"\n== {backend}: p50 at {sizes[-1]:,} vs {sizes[0]:,} (before and after), growth ratio, target ==")
        for name, values in large.items():
            ratio = values["p50"] / statistics.mean(small[name]) if small[name] else float("nan")
            target = _target(name)
            ok = "ok" if values["p50"] <= target and ratio <= 2 else "MISSED"
            print(f"  {name:36} {values['p50']:8.1f} ms  (x{ratio:4.2f})  target {target} ms, x2  {ok}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sizes", nargs="*", type=int)
    parser.add_argument("--large", action="store_true", help="add 1,000,000 uploads")
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--pg-url", default=PG_URL)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--full-export-max", type=int, default=100_000,
                        help="export everything only up to this size (the failures export always)")
    parser.add_argument("--plans", action="store_true", help="print the query plans of the hot queries")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    sizes = args.sizes or [10_000, 100_000]
    if args.large and 1_000_000 not in sizes:
        sizes.append(1_000_000)
    args.pg_url = _driver_url(args.pg_url)

    work = Path(tempfile.mkdtemp(prefix="baosong-bench-scale-"))
    os.environ.setdefault("BAOSONG_INSTANCE", str(work))
    os.environ.setdefault("BAOSONG_SECRET_KEY", "y7Z0rYb1m0kqf8mKf4b1Qm9yXbC0Qv0sZ8t3pF6wq1U=")
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:1/0")  # the pages must not need Redis to be fast
    import logging

    logging.disable(logging.WARNING)
    targets = []
    if args.db in ("sqlite", "both"):
        targets.append("SQLite")
    if args.db in ("postgres", "both"):
        if _postgres_up(args.pg_url):
            targets.append("PostgreSQL")
        else:
            print(f"PostgreSQL at {args.pg_url} not reachable: skipped")
    report: dict = {}
    for backend in targets:
        for size in [*sizes, *sizes[:1]] if len(sizes) > 1 else sizes:
            schema = None
            if backend == "SQLite":
                url = f"sqlite:///{work / f'scale-{size}.db'}"
            else:
                schema = f"bench_scale_{os.getpid()}"
                url = f"{args.pg_url}{'&' if '?' in args.pg_url else '?'}options=-csearch_path%3D{schema}"
                _pg_schema(args.pg_url, schema, create=True)
            again = size == sizes[0] and f"{backend} {size}" in report
            print(f"\n== {backend}, {size:,} uploads{' again' if again else ''} ==", flush=True)
            try:
                result = measure(url, size, args)
                if again:  # the smallest size measured once more after the largest (see _summary)
                    report[f"{backend} {size}"]["pages_again"] = result["pages"]
                else:
                    report[f"{backend} {size}"] = result
            finally:
                if schema:
                    _pg_schema(args.pg_url, schema, create=False)
                if backend == "SQLite":
                    for suffix in ("", "-wal", "-shm"):
                        Path(f"{work / f'scale-{size}.db'}{suffix}").unlink(missing_ok=True)
    _summary(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, ensure_ascii=False, indent=1), "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
