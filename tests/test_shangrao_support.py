"""Shared helpers for the Shangrao tests (no tests here): sample rows, a configured sandbox, sending."""

from __future__ import annotations

from types import SimpleNamespace

import requests
import sqlalchemy as sa

from core import ledger
from core.db import db
from core.hook_types import UploadPlan
from core.models import Upload
from core.plugins import registry
from core.settings import save_regulator_setting


def fee_row(n: int, **changes) -> dict:
    row = {
        "BKKP_SN": f"BK{n:010d}", "MDTRT_ID": f"MD{n // 5:08d}", "FEE_OCUR_TIME": "2025-03-01 09:15:00",
        "SETL_ID": f"ST{n // 5:08d}", "RX_DRORD_NO": f"RX{n:06d}", "FIXMEDINS_CODE": "H36110200001",
        "FIXMEDINS_NAME": "上饶市信江人民医院", "PSN_NO": f"36110000{n:06d}", "PSN_INSU_RLTS_ID": f"R{n:08d}",
        "INSU_ADMDVS": "361102", "PAY_LOC": "2", "MED_TYPE": "11", "CNT": 2, "PRIC": 12.5,
        "DET_ITEM_FEE_SUMAMT": 25.0, "CHRGITM_LV": "01", "HILIST_CODE": "XA01AAA001", "HILIST_NAME": "阿莫西林胶囊",
        "LIST_TYPE": "101", "MED_LIST_CODG": "XA01AAA001", "MEDINS_LIST_CODG": f"YP{n % 97:05d}",
        "MEDINS_LIST_NAME": "阿莫西林胶囊(0.25g*24粒)", "MED_CHRGITM_TYPE": "09", "CRTE_TIME": "2025-03-01 09:15:03",
    }
    row.update(changes)
    return {k: v for k, v in row.items() if v is not None}


def setl_row(n: int, **changes) -> dict:
    row = {
        "SETL_ID": f"ST{n:08d}", "MDTRT_ID": f"MD{n:08d}", "PSN_NO": f"36110000{n:06d}", "PSN_NAME": "张三",
        "PSN_CERT_TYPE": "01", "CERTNO": "361102199001011234", "GEND": "1", "NATY": "01", "BRDY": "1990-01-01",
        "AGE": 35.0, "INSUTYPE": "310", "PSN_TYPE": "1101", "FIXMEDINS_CODE": "H36110200001",
        "FIXMEDINS_NAME": "上饶市信江人民医院", "SETL_TIME": "2025-03-01 10:00:00", "MED_TYPE": "11",
        "MEDFEE_SUMAMT": 125.5, "FULAMT_OWNPAY_AMT": 0, "OVERLMT_SELFPAY": 0, "PRESELFPAY_AMT": 0,
        "INSCP_AMT": 125.5, "HIFP_PAY": 80.0, "POOL_PROP_SELFPAY": 0.7, "FUND_PAY_SUMAMT": 80.0,
        "PSN_PAY": 45.5, "ACCT_PAY": 45.5, "CRTE_TIME": "2025-03-01 10:00:01",
    }
    row.update(changes)
    return {k: v for k, v in row.items() if v is not None}


def configure_sandbox(serve, **client_overrides) -> SimpleNamespace:
    """A sandbox regulator on a real HTTP server, with the client settings pointing at it."""
    sandbox = registry().sandboxes["shangrao"]
    base_url = "http://127.0.0.1:0"  # replaced below once the server has its port
    client, config = sandbox.demo_config(base_url)
    app = sandbox.make_app(config)
    url = serve(app)
    # initial_since: the demo starts at yesterday; tests read their demo data from 2025.
    values = {**client["shangrao_insurance"], "base_url": url, "initial_since": "", **client_overrides}
    for key, value in values.items():
        save_regulator_setting("shangrao_insurance", key, value)
    db.session.commit()
    return SimpleNamespace(url=url, app=app, state=app.config["SANDBOX_STATE"], config=config, client=values)


def records(url: str, service: str, **params) -> dict:
    answer = requests.get(f"{url}/_sandbox/records", params={"service": service, **params}, timeout=10)
    answer.raise_for_status()
    return answer.json()


def faults(url: str, **body) -> dict:
    answer = requests.post(f"{url}/_sandbox/faults", json=body, timeout=10)
    answer.raise_for_status()
    return answer.json()


def plan_batch(service: str, rows: list[dict], msgid: str, key: str = "b1") -> int:
    """Record one batch in the ledger the way planning does (rows frozen, msgid fixed)."""
    report_type = registry().report_type(f"shangrao.{service}")
    [upload_id] = ledger.record_plans(report_type, [UploadPlan(business_key=f"{service}:{key}", period="p",
                                                                rows=rows, idempotency_key=msgid)])
    return upload_id


def upload(upload_id: int) -> Upload:
    db.session.expire_all()
    return db.session.execute(sa.select(Upload).where(Upload.id == upload_id)).scalar_one()
