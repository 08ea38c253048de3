"""Demo data for the key-data plugin: CT08.00.002 in the database and a partial department mapping.

About two thirds of the demo hospital's departments are mapped; the others (内分泌代谢科, 眼耳鼻喉科,
心理科, 便民门诊, 发热门诊, some wards...) stay unmapped so the mapping page has suggestions to make and
the dept_daily report shows held-back records.
"""

from __future__ import annotations

from core.db import db
from plugins.keydata import models

# demo hospital local code -> CT08.00.002 code (23 of its 35 departments)
DEMO_MAPPING = {
    "0101": "A03.04", "0102": "A03.01", "0103": "A03.02", "0104": "A03.03",
    "0201": "A04.01", "0202": "A04.03", "0301": "A05.01", "0302": "A05.02",
    "0401": "A07", "0502": "A12", "0701": "A50.01", "0801": "A21", "1001": "A19", "1201": "A20",
    "2101": "A03.04", "2102": "A03.01", "2201": "A04.01", "2203": "A04.03", "2301": "A05.01",
    "2401": "A07", "2501": "A28", "2601": "A21", "2801": "A19",
}


def seed_mappings(actor: str = "演示数据") -> int:
    """Map the demo departments listed above that the hospital database has; returns how many."""
    from core.plugins import registry
    from core.scheduler import hospital_data

    models.ensure_setup()
    report_type = registry().report_type("keydata.dept_daily")
    departments = hospital_data().query(report_type, "department_list")
    count = 0
    for row in departments:
        code = str(row["departNoExp"])
        if code in DEMO_MAPPING:
            models.set_mapping(code, str(row["departNameExp"]), DEMO_MAPPING[code], actor)
            count += 1
    db.session.commit()
    return count
