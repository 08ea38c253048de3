"""CT08.00.002 offered to the core (hook ``register_dictionaries``): the codes for payload validation and
the hospital's local departments -> national codes mapping, kept in this plugin's tables
(``models.KeydataDepartmentMapping``), which the admin's generic mapping page edits."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from core import clock
from core.db import db
from core.hook_types import CodeDictionary, LocalCode, LocalMapping, MappedCode
from core.models import HeldBack
from plugins.keydata import models, spec

DEPT_REPORT_TYPE = f"keydata.{spec.DEPT_DAILY}"


def _report_type():
    from core.plugins import registry

    return registry().report_type(DEPT_REPORT_TYPE)


def local_departments() -> list[LocalCode]:
    """Every department the HIS knows (dept_daily's ``department_list`` query, as the plugin reads it)."""
    from core.scheduler import hospital_data

    out = []
    for row in hospital_data().query(_report_type(), "department_list"):
        code = row.get("departNoExp", row.get("dept_code"))
        if code in (None, ""):
            continue
        active = row.get("active", 1)
        out.append(LocalCode(str(code), str(row.get("departNameExp", row.get("dept_name")) or ""),
                             active in (1, "1", True, None)))
    return out


def stored_mappings() -> dict[str, MappedCode]:
    return {code: MappedCode(m.local_code, m.local_name, m.national_code, m.updated_by, m.updated_at)
            for code, m in models.mappings().items()}


def held_departments() -> dict[str, int]:
    """Unresolved held-back dept_daily records per local department code."""
    rows = db.session.execute(
        sa.select(HeldBack.record_key, sa.func.count()).where(
            HeldBack.report_type == DEPT_REPORT_TYPE, HeldBack.resolved.is_(False), HeldBack.record_key.is_not(None))
        .group_by(HeldBack.record_key)
    )
    return {str(key): count for key, count in rows}


def departments_today() -> set[str]:
    """Local department codes with registrations today (their dept_daily record is due this hour)."""
    from core.scheduler import hospital_data

    now = clock.local_now()
    start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    rows = hospital_data().query(_report_type(), "departments", start=f"{start:%Y-%m-%d %H:%M:%S}",
                                 end=f"{now + timedelta(seconds=1):%Y-%m-%d %H:%M:%S}")
    return {str(row["departNoExp"]) for row in rows if row.get("departNoExp") not in (None, "")}


def entries() -> list[dict]:
    models.ensure_setup()
    return [{"code": c, "name": n, "parent": p} for c, n, p in db.session.execute(
        sa.select(models.KeydataNationalDepartment.code, models.KeydataNationalDepartment.name,
                  models.KeydataNationalDepartment.parent).order_by(models.KeydataNationalDepartment.position))]


CT08 = CodeDictionary(
    name=spec.DICTIONARY,
    title="国家标准科室代码",
    codes=models.national_departments,
    entries=entries,
    mapping=LocalMapping(
        local_codes=local_departments, mappings=stored_mappings, save=models.set_mapping,
        held=held_departments, in_use=departments_today, local_label="院内科室", national_label="国家科室",
        used_by="科室就诊日报使用；未对照科室的记录暂缓上报", held_by=("keydata.dept_daily",),
    ),
)
