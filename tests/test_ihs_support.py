"""Shared helpers for the IHS tests (no tests here): a configured sandbox, the worked example, rows."""

from __future__ import annotations

from datetime import datetime
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import requests
import sqlalchemy as sa

from core import ledger, pipeline
from core import settings as core_settings
from core.db import db
from core.hook_types import UploadPlan
from core.models import Upload, UploadStatus
from core.plugins import registry
from core.scheduler import run_slot
from core.settings import save_regulator_setting
from plugins.ihs_supervision import catalogue, gate
from plugins.ihs_supervision import sandbox as ihs_sandbox

SHANGHAI = ZoneInfo("Asia/Shanghai")
REGULATOR = "ihs_supervision"
SLOT = datetime(2025, 2, 19, 0, 0, tzinfo=SHANGHAI)  # after the session's demo hospital (to 2025-02-18)


def configure_sandbox(serve, *, example: bool = True, sandbox_config: dict | None = None, **client_overrides):
    """The sandbox on a real HTTP server, the client's settings pointing at it, and (by default) the
    vendor's worked example entered and verified."""
    sandbox = registry().sandboxes[REGULATOR]
    client, config = sandbox.demo_config("http://127.0.0.1:0")
    config = {**config, **(sandbox_config or {})}
    app = sandbox.make_app(config)
    url = serve(app)
    values = {**client[REGULATOR], "base_url": url, **client_overrides}
    for key, value in values.items():
        save_regulator_setting(REGULATOR, key, value)
    db.session.commit()
    if example:
        enter_example(ihs_sandbox.example_for(config["key"]), config["key"])
    return SimpleNamespace(url=url, app=app, state=app.config["SANDBOX_STATE"], config=config, client=values)


def current_settings():
    return core_settings.regulator_settings(REGULATOR)


def enter_example(example: dict, key: str, verify: bool = True):
    gate.save_example(example, key, "tester")
    state = gate.verify(current_settings(), "tester") if verify else gate.state(current_settings())
    db.session.commit()
    return state


def records(url: str, code: str, **params) -> dict:
    answer = requests.get(f"{url}/_sandbox/records", params={"code": code, **params}, timeout=10)
    answer.raise_for_status()
    return answer.json()


def sandbox_log(url: str) -> list[dict]:
    return requests.get(f"{url}/_sandbox/log", timeout=10).json()["batches"]


def faults(url: str, **body) -> dict:
    answer = requests.post(f"{url}/_sandbox/faults", json=body, timeout=10)
    answer.raise_for_status()
    return answer.json()


def plan_rows(code: str, rows: list[dict], key: str = "b1", depends_on=None) -> int:
    report_type = registry().report_type(f"ihs.{code}")
    [upload_id] = ledger.record_plans(report_type, [UploadPlan(
        business_key=f"{code}:{key}", period="p", rows=rows, depends_on=list(depends_on or []))])
    return upload_id


def plan_all(slot: datetime = SLOT) -> dict[str, list[int]]:
    """Plan every defined interface for one slot, in call order."""
    return {item.code: run_slot(item.report_type, slot, enqueue=False) for item in catalogue.interfaces()}


def upload(upload_id: int) -> Upload:
    db.session.expire_all()
    return db.session.get(Upload, upload_id)


def runnable_ids() -> list[int]:
    db.session.expire_all()
    return list(db.session.execute(
        sa.select(Upload.id).where(Upload.report_type.like("ihs.%"),
                                   Upload.status.in_(ledger.RUNNABLE)).order_by(Upload.id)).scalars())


def drain(order: str = "forward", rounds: int = 20) -> None:
    """Attempt every runnable IHS upload until none is left (or ``rounds`` passes), in id order or
    in reverse (dependents before what they depend on)."""
    for _ in range(rounds):
        ids = runnable_ids()
        if not ids:
            return
        for upload_id in reversed(ids) if order == "reverse" else ids:
            item = upload(upload_id)
            if item.status == UploadStatus.FAILED:
                ledger.mark_for_manual_retry(item)
                db.session.commit()
            pipeline.attempt(upload_id, item.attempts)


def hospital_row(**changes) -> dict:
    row = {"hospId": "H36110200001", "hospName": "上饶市信江人民医院", "hospAddress": "凤凰大道188号",
           "hospPhone": "0793-8222120", "hospArea": 361102, "hospLevel": 32, "hospType": "011", "hospCategory": 1}
    row.update(changes)
    return row


def department_row(code: str = "0101", **changes) -> dict:
    row = {"deptCode": code, "deptName": "心内科", "parentId": "-1", "hasChild": 0, "status": 0}
    row.update(changes)
    return row
