"""The key-data plugin's own tables: the national department dictionary and the department mapping.

``keydata_national_departments``
    CT08.00.002 (document 六) as shipped in ``ct08_00_002.json``: ``code`` (primary key), ``name`` (the
    code's meaning, sent as departName), ``parent`` (the code one level up, e.g. A03 for A03.04, or NULL),
    ``position`` (order in the document). Loaded idempotently by ``ensure_setup()``; never edited by hand.

``keydata_department_mappings``
    One row per hospital department: ``local_code`` (unique; the HIS code sent as departNoExp),
    ``local_name`` (departNameExp), ``national_code`` (a CT08.00.002 code, or NULL while unmapped),
    ``updated_by``, ``updated_at`` (UTC). A department with no row, or a row whose national_code is NULL,
    is unmapped: its dept_daily record is held back, never sent with a guessed code. The mapping UI
    (fuzzy suggestions, Excel import) edits this table, preferably through ``set_mapping``.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from core import clock
from core.db import db
from core.errors import ConfigurationError
from plugins.keydata import spec


def _now() -> datetime:
    return clock.utc_naive(clock.now())


class KeydataNationalDepartment(db.Model):
    __tablename__ = "keydata_national_departments"

    code: Mapped[str] = mapped_column(sa.String(20), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    parent: Mapped[str | None] = mapped_column(sa.String(20))
    position: Mapped[int] = mapped_column(default=0)


class KeydataDepartmentMapping(db.Model):
    __tablename__ = "keydata_department_mappings"

    id: Mapped[int] = mapped_column(primary_key=True)
    local_code: Mapped[str] = mapped_column(sa.String(64), unique=True)
    local_name: Mapped[str] = mapped_column(sa.String(200), default="")
    national_code: Mapped[str | None] = mapped_column(sa.String(20))
    updated_by: Mapped[str | None] = mapped_column(sa.String(80))
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime, default=_now, onupdate=_now)


def ensure_setup() -> None:
    """Load CT08.00.002 into its table when it is not all there. Idempotent and cheap (one COUNT when
    all is in place); called when planning, by the dictionary provider and by the seed."""
    loaded = db.session.scalar(sa.select(sa.func.count()).select_from(KeydataNationalDepartment))
    if loaded != len(spec.dictionary_entries()):
        load_dictionary()


def load_dictionary() -> int:
    """Bring the table in line with the shipped file; returns how many rows were added or changed."""
    existing = {row.code: row for row in db.session.execute(sa.select(KeydataNationalDepartment)).scalars()}
    changed = 0
    for position, entry in enumerate(spec.dictionary_entries()):
        row = existing.get(entry["code"])
        if row is None:
            db.session.add(KeydataNationalDepartment(code=entry["code"], name=entry["name"],
                                                     parent=entry["parent"], position=position))
            changed += 1
        elif (row.name, row.parent, row.position) != (entry["name"], entry["parent"], position):
            row.name, row.parent, row.position = entry["name"], entry["parent"], position
            changed += 1
    db.session.commit()
    return changed


def national_departments() -> dict[str, str]:
    """CT08.00.002 as {code: meaning}, from the database (the provider registered with the core)."""
    ensure_setup()
    rows = db.session.execute(
        sa.select(KeydataNationalDepartment.code, KeydataNationalDepartment.name)
        .order_by(KeydataNationalDepartment.position)
    )
    return {code: name for code, name in rows}


def mappings() -> dict[str, KeydataDepartmentMapping]:
    ensure_setup()
    return {m.local_code: m for m in db.session.execute(sa.select(KeydataDepartmentMapping)).scalars()}


def set_mapping(local_code: str, local_name: str, national_code: str | None, actor: str) -> KeydataDepartmentMapping:
    """Map (or, with None, unmap) one hospital department. The caller commits."""
    ensure_setup()
    if national_code is not None and db.session.get(KeydataNationalDepartment, national_code) is None:
        raise ConfigurationError(f"科室代码 {national_code} 不在 CT08.00.002 中")
    row = db.session.execute(
        sa.select(KeydataDepartmentMapping).filter_by(local_code=local_code)
    ).scalar_one_or_none()
    if row is None:
        row = KeydataDepartmentMapping(local_code=local_code)
        db.session.add(row)
    row.local_name = local_name
    row.national_code = national_code
    row.updated_by = actor
    row.updated_at = _now()
    return row
