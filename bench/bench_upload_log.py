"""Upload-log page and Excel export at scale, on SQLite and PostgreSQL.

    python bench/bench_upload_log.py                      # 10,000 and 100,000 rows, SQLite (+ PostgreSQL if up)
    python bench/bench_upload_log.py 10000 100000 1000000 --db both
    python bench/bench_upload_log.py 1000000 --db postgres --pg-url postgresql://postgres@127.0.0.1:5432/test

Synthetic uploads are bulk-inserted with SQLAlchemy Core (statuses, report types, departments and keys
distributed like a hospital's year). Each measurement goes through the real admin (Flask test client,
logged in, template rendered): the filtered query + capped count + render of one page, and the streamed
Excel export of the whole filtered set (time, size, peak RSS growth). PostgreSQL runs in a schema of its
own, dropped afterwards. The hospital's bound: a query answer within 2 s at 10,000 records.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REPORT_TYPES = ["keydata.hospital_daily", "keydata.dept_daily", "keydata.monthly", "shangrao.setl_d",
                "shangrao.mdtrt_d", "twopath.filing", "ihs.A2000"]
TYPE_WEIGHTS = [10, 40, 1, 20, 20, 5, 4]
STATUSES = ["succeeded", "failed", "failed_will_retry", "rejected", "pending"]
STATUS_WEIGHTS = [930, 30, 20, 15, 5]
DEPARTMENTS = [f"{300 + i:04d}" for i in range(60)]
PASSWORD = "Bench-passw0rd-1"
# Every bench's PostgreSQL (each works in a schema of its own and drops it): this machine's database test.
PG_URL = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _id_number(rng: random.Random) -> str:
    return f"36010{rng.randint(2, 9)}19{rng.randint(50, 99)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}" \
           f"{rng.randint(0, 999):03d}{rng.choice('0123456789X')}"


def populate(engine, count: int, *, seed: int = 7, batch: int = 20_000) -> str:
    """Insert ``count`` uploads spread over the last year (ids in time order); returns one ID number
    that occurs exactly once, for the free-text search."""
    import sqlalchemy as sa

    from core.models import Upload

    rng = random.Random(seed)
    table = Upload.__table__
    end = datetime.utcnow()
    start = end - timedelta(days=365)
    step = (end - start) / max(count, 1)
    needle = "360199198001011234"
    rows = []
    with engine.begin() as conn:
        for i in range(count):
            report_type = rng.choices(REPORT_TYPES, TYPE_WEIGHTS)[0]
            status = rng.choices(STATUSES, STATUS_WEIGHTS)[0]
            created = start + step * i
            person = needle if i == count // 2 else _id_number(rng)
            msgid = f"{rng.getrandbits(128):032x}"
            business_key = f"{report_type}@{created:%Y%m%d%H%M%S}#{i}"
            failed = status != "succeeded"
            rows.append(dict(
                report_type=report_type, business_key=business_key, period=f"{created:%Y/%m/%d %H}:59:59",
                department=rng.choice(DEPARTMENTS), operation="new", status=status,
                attempts=rng.randint(1, 4) if failed else 1, auto_retries=0, delivery_uncertain=False,
                idempotency_key=msgid, rows=[{"visits": rng.randint(0, 500)}], result={},
                search_text=f"{business_key} {msgid} {person} APP{i:08d}",
                last_code="E500" if failed else "0", last_message="服务繁忙，请稍后重试" if failed else "上传成功",
                created_at=created, updated_at=created, finished_at=None if failed else created,
            ))
            if len(rows) >= batch:
                conn.execute(sa.insert(table), rows)
                rows.clear()
        if rows:
            conn.execute(sa.insert(table), rows)
    return needle


def _login(app):
    from core.db import db
    from web.users import create_user

    create_user("bench", "admin", PASSWORD)
    db.session.commit()
    client = app.test_client()
    html = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
    answer = client.post("/login", data={"username": "bench", "password": PASSWORD, "csrf_token": token})
    assert answer.status_code == 302, "login failed"
    return client


def _timed_get(client, url: str, repeat: int = 3) -> tuple[float, str]:
    times, text = [], ""
    for _ in range(repeat):
        started = time.perf_counter()
        answer = client.get(url)
        text = answer.get_data(as_text=True)
        times.append(time.perf_counter() - started)
        assert answer.status_code == 200, (url, answer.status_code)
    return statistics.median(times), text


def _count_label(html: str) -> str:
    match = re.search(r"(共|超过) <strong>([\d,]+)</strong> 条", html)
    return f"{match.group(1)} {match.group(2)}" if match else "?"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(url_db: str, count: int, *, export: bool) -> dict:
    import sqlalchemy as sa

    from core.db import db
    from web import create_app, search_index

    os.environ["DATABASE_URL"] = url_db
    app = create_app()
    results: dict = {"rows": count}
    with app.app_context():
        if db.engine.dialect.name == "postgresql":  # never touch another schema of a shared database
            schema = db.session.execute(sa.text("SELECT current_schema()")).scalar()
            assert schema and schema.startswith("bench_web_"), f"refusing to run in schema {schema!r}"
            db.session.rollback()
        db.drop_all()
        db.create_all()
        started = time.perf_counter()
        needle = populate(db.engine, count)
        results["insert_s"] = round(time.perf_counter() - started, 1)
        started = time.perf_counter()
        results["search_index"] = search_index.install(db.engine)
        results["search_index_build_s"] = round(time.perf_counter() - started, 1)
        with db.engine.begin() as conn:
            conn.execute(sa.text("ANALYZE"))
        client = _login(app)
        week_end = datetime.utcnow().date() - timedelta(days=30)
        week_start = week_end - timedelta(days=6)
        cases = {
            "page: no filter": "/uploads/",
            "page: type + failures": "/uploads/?report_type=keydata.dept_daily&status=failures",
            "page: one week + department": f"/uploads/?start={week_start}&end={week_end}&department=0310",
            "page: free text (ID number)": f"/uploads/?q={needle}",
            "page: free text, no match": "/uploads/?q=NO-SUCH-KEY-0000",
            "page: status rejected, oldest first": "/uploads/?status=rejected&order=asc",
        }
        for name, url in cases.items():
            seconds, html = _timed_get(client, url)
            results[name] = {"s": round(seconds, 3), "count": _count_label(html)}
        # Deep in the list: the 20th page by keyset cursors.
        url = "/uploads/"
        for step in range(19):
            answer = client.get(url)
            html = answer.get_data(as_text=True)
            match = re.search(r'rel="next" href="([^"]+)"', html)
            if answer.status_code != 200 or match is None:
                raise RuntimeError(f"page {step + 1} ({url}): HTTP {answer.status_code}, no next link\n{html[-3000:]}")
            url = match.group(1).replace("&amp;", "&")
        seconds, _ = _timed_get(client, url)
        results["page: 20th page (keyset)"] = {"s": round(seconds, 3), "count": ""}
        if export:
            for name, query in (("export: failures", "?status=failures"), ("export: everything", "")):
                before = _peak_rss_mb()
                started = time.perf_counter()
                answer = client.get("/uploads/export.xlsx" + query)
                size = sum(len(chunk) for chunk in answer.response)
                seconds = time.perf_counter() - started
                results[name] = {"s": round(seconds, 2), "MB": round(size / 1e6, 1),
                                 "peak_rss_growth_MB": round(max(0.0, _peak_rss_mb() - before), 1)}
        db.session.remove()
        db.drop_all()
        db.engine.dispose()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sizes", nargs="*", type=int, default=[10_000, 100_000])
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--pg-url", default=PG_URL)
    parser.add_argument("--no-export-above", type=int, default=10_000_000,
                        help="skip the Excel export for sizes above this")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    args.pg_url = _driver_url(args.pg_url)

    work = Path(tempfile.mkdtemp(prefix="baosong-bench-"))
    os.environ.setdefault("BAOSONG_INSTANCE", str(work))
    os.environ.setdefault("BAOSONG_SECRET_KEY", "y7Z0rYb1m0kqf8mKf4b1Qm9yXbC0Qv0sZ8t3pF6wq1U=")
    import logging

    logging.disable(logging.WARNING)
    targets: list[tuple[str, str]] = []
    if args.db in ("sqlite", "both"):
        targets.append(("SQLite", "sqlite"))
    if args.db in ("postgres", "both"):
        if _postgres_up(args.pg_url):
            targets.append(("PostgreSQL", "postgres"))
        else:
            print(f"PostgreSQL at {args.pg_url} not reachable: skipped")
    report: dict = {}
    for label, kind in targets:
        for size in args.sizes:
            if kind == "sqlite":
                url = f"sqlite:///{work / f'bench-{size}.db'}"
            else:
                # A schema of its own, chosen in the URL (engines are built when the app is created).
                schema = f"bench_web_{os.getpid()}"
                separator = "&" if "?" in args.pg_url else "?"
                url = f"{args.pg_url}{separator}options=-csearch_path%3D{schema}"
                _pg_schema(args.pg_url, schema, create=True)
            print(f"== {label}, {size:,} uploads ==", flush=True)
            try:
                result = measure(url, size, export=size <= args.no_export_above)
            finally:
                if kind == "postgres":
                    _pg_schema(args.pg_url, schema, create=False)
            report[f"{label} {size}"] = result
            _print(result)
    if args.json:
        Path(args.json).write_text(json.dumps(report, ensure_ascii=False, indent=1), "utf-8")
    return 0


def _driver_url(url: str) -> str:
    """SQLAlchemy 2.1 maps postgresql:// to psycopg 3; use psycopg2 when that is what is installed."""
    if url.startswith("postgresql://"):
        try:
            import psycopg  # noqa: F401
        except ImportError:
            return "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    return url


def _postgres_up(url: str) -> bool:
    import sqlalchemy as sa

    try:
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        engine.dispose()
        return True
    except Exception:
        return False


def _pg_schema(url: str, schema: str, *, create: bool) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        if create:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()


def _print(result: dict) -> None:
    print(f"  inserted in {result['insert_s']} s; free-text index: {result['search_index']} "
          f"(built in {result['search_index_build_s']} s)")
    for name, value in result.items():
        if isinstance(value, dict):
            details = ", ".join(f"{k}={v}" for k, v in value.items() if k != "s" and v != "")
            print(f"  {name:40} {value['s']:>8} s   {details}")


if __name__ == "__main__":
    sys.exit(main())
