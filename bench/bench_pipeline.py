"""Pipeline overhead per upload, excluding the network: claim, build, validate, encrypt, record.

Runs the real keydata and Shangrao plugins through ``core.pipeline.attempt`` on a SQLite ledger,
with a ``post`` hook that answers at once (so no network time is measured), for each crypto backend:
Baosong's ``core.crypto`` and, for comparison, ``gmssl`` swapped into the plugins' encrypt calls.

    python bench/bench_pipeline.py [--n 40]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
WORK = Path(tempfile.mkdtemp(prefix="baosong-bench-"))
os.environ.update(BAOSONG_INSTANCE=str(WORK), DATABASE_URL=f"sqlite:///{WORK / 'ledger.db'}",
                  HIS_DATABASE_URL=f"sqlite:///{WORK / 'his.db'}",
                  BAOSONG_SECRET_KEY="y7Z0rYb1m0kqf8mKf4b1Qm9yXbC0Qv0sZ8t3pF6wq1U=")

import requests  # noqa: E402

from core import (  # noqa: E402
    http,  # noqa: E402
    ledger,
    pipeline,
)
from core.app import create_app  # noqa: E402
from core.bootstrap import init_db  # noqa: E402
from core.crypto import generate_sm2_keypair  # noqa: E402
from core.db import db  # noqa: E402
from core.hook_types import UploadPlan  # noqa: E402
from core.plugins import registry  # noqa: E402
from core.scheduler import hospital_data  # noqa: E402
from core.settings import save_regulator_setting  # noqa: E402
from demo.hospital import generate  # noqa: E402


class InstantRegulator(requests.adapters.BaseAdapter):
    """A transport for http://bench.invalid mounted on core.http's session: answers every request at
    once, as a successful regulator would, so the real post hook runs but no network time is measured."""

    def send(self, request, **kwargs):
        answer = requests.Response()
        answer.status_code, answer._content = 200, b'{"code":200,"message":"success"}'
        answer.headers["Content-Type"], answer.request, answer.url = "application/json", request, request.url
        return answer

    def close(self):
        pass


def gmssl_backend():
    """sm2_encrypt / sm4_encrypt with gmssl's arithmetic (C1C3C2 with 04, ECB PKCS7 hex)."""
    from gmssl import sm2, sm4

    def sm2_encrypt(plaintext, public_key, profile):
        from core.crypto import normalize_public_key

        crypt = sm2.CryptSM2(private_key="", public_key="", mode=1)
        crypt.public_key = normalize_public_key(public_key)  # set directly: gmssl's lstrip("04") trap
        return "04" + crypt.encrypt(plaintext).hex()

    def sm4_encrypt(plaintext, key, profile):
        crypt = sm4.CryptSM4()
        crypt.set_key(bytes.fromhex(key), sm4.SM4_ENCRYPT)
        return crypt.crypt_ecb(plaintext).hex()

    return sm2_encrypt, sm4_encrypt


def swap_backend(name: str) -> None:
    import core.crypto as baosong
    import plugins.keydata.spec as keydata_spec
    import plugins.shangrao_insurance.plugin as shangrao

    if name == "baosong":
        keydata_spec.sm4_encrypt, shangrao.sm2_encrypt = baosong.sm4_encrypt, baosong.sm2_encrypt
    else:
        shangrao.sm2_encrypt, keydata_spec.sm4_encrypt = gmssl_backend()


def measure(report_type: str, template: UploadPlan, n: int) -> list[float]:
    rt = registry().report_type(report_type)
    times = []
    for i in range(n):
        plan = UploadPlan(business_key=f"{template.business_key}#bench{time.time_ns()}-{i}",
                          period=template.period, rows=template.rows, department=template.department,
                          idempotency_key=None if report_type.startswith("keydata") else
                          template.idempotency_key[:12] + os.urandom(12).hex())
        started = time.perf_counter()
        [upload_id] = ledger.record_plans(rt, [plan])
        status = pipeline.attempt(upload_id, 0)
        times.append((time.perf_counter() - started) * 1000)
        if status != "succeeded":
            from core.models import Upload

            raise SystemExit(f"{report_type}: {status}: {db.session.get(Upload, upload_id).last_message}")
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=40)
    args = parser.parse_args()
    generate(os.environ["HIS_DATABASE_URL"], start=date(2025, 2, 10), end=date(2025, 2, 17))
    http._session.mount("http://bench.invalid", InstantRegulator())
    app = create_app()
    _, public = generate_sm2_keypair()
    init_db(app)
    with app.app_context():
        for key, value in {"hospital_daily_url": "http://bench.invalid/h", "org_code": "H36110200001",
                           "auth_code": "bench-auth-code", "sm4_key": os.urandom(16).hex()}.items():
            save_regulator_setting("keydata", key, value)
        for key, value in {"base_url": "http://bench.invalid", "fixmedins_code": "H36110200001",
                           "fixmedins_name": "演示医院", "public_key": public, "infno_fee_list_d": "4101"}.items():
            save_regulator_setting("shangrao_insurance", key, value)
        db.session.commit()
        slot = datetime(2025, 2, 17, 9, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
        source = hospital_data()
        reg = registry()
        from core.settings import regulator_settings

        keydata_plan = reg.hook("keydata.hospital_daily", "schedule")(
            report_type=reg.report_type("keydata.hospital_daily"), slot=slot, source=source,
            settings=regulator_settings("keydata"))[0]
        fee_plans = reg.hook("shangrao.fee_list_d", "schedule")(
            report_type=reg.report_type("shangrao.fee_list_d"), slot=slot, source=source,
            settings=regulator_settings("shangrao_insurance"))
        batch = max(fee_plans, key=lambda p: len(json.dumps(p.rows, ensure_ascii=False).encode()))
        size = len(json.dumps(batch.rows, ensure_ascii=False, separators=(",", ":")).encode())
        print(f"keydata.hospital_daily payload: {len(json.dumps(keydata_plan.rows).encode())} B plaintext")
        print(f"shangrao.fee_list_d batch: {len(batch.rows)} rows, ~{size / 1024:.1f} KiB plaintext (SM2)")
        print(f"\n{'backend':10} {'upload':28} {'median ms':>10} {'p90 ms':>8} {'n':>4}")
        for backend in ("baosong", "gmssl"):
            swap_backend(backend)
            n_sm2 = args.n if backend == "baosong" else max(3, args.n // 10)
            for label, report_type, plan, n in (
                ("keydata hourly (SM4)", "keydata.hospital_daily", keydata_plan, args.n),
                (f"shangrao batch {size // 1024} KiB (SM2)", "shangrao.fee_list_d", batch, n_sm2),
            ):
                times = sorted(measure(report_type, plan, n))
                p90 = times[int(len(times) * 0.9) - 1] if len(times) >= 10 else times[-1]
                print(f"{backend:10} {label:28} {statistics.median(times):10.1f} {p90:8.1f} {n:4}")
        swap_backend("baosong")


if __name__ == "__main__":
    main()
