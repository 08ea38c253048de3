"""The demo hospital's two-channel drug applications (双通道特药) (``seed_demo_hospital(connection, start,
end)``, called after ``demo.hospital`` has written its tables, on the same connection).

Insured oncology-clinic patients with a cancer diagnosis in the range (about 2.5 a week, at least 3) get an
application for a special drug that fits the diagnosis, by two of the oncology doctors, sometimes through
an agent (代办人). Reproducible: ``random.Random`` seeded with the demo's seed. Same conventions as
``demo.hospital`` (naive Asia/Shanghai times, nothing after ``data_until``).

Tables:

twopath_drugs      med_list_codg PK (中心药品项目编码, 23 chars), med_list_name, generic_name, spec, manufacturer,
                   indication (ICD-10 prefixes, comma separated), active.
twopath_applications  appy_id PK (SQ...), patient_id ->patients, appy_date, cond_abst (诊断依据), diag_code,
                   diag_name, begndate, enddate, doctor_code, doctor2_code (医师1/2 ->doctors), agnter_name,
                   agnter_cert_type, agnter_certno, agnter_tel, agnter_rlts, agnter_addr (代办人, often NULL),
                   status (draft | pending = ready for 2511 | submitted | approved | revoked), two_path_reg_sn
                   (once submitted), created_at, updated_at.
twopath_application_drugs  id PK, appy_id ->twopath_applications, med_list_codg ->twopath_drugs,
                   med_list_name.
"""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Column, Date, Integer, MetaData, String, Table, text

from demo.hospital import DT, random_id_number, random_name, random_phone, write_tables

metadata = MetaData()


def _s(name: str, n: int = 30, **kw: Any) -> Column:
    return Column(name, String(n), **kw)


twopath_drugs = Table(
    "twopath_drugs", metadata,
    _s("med_list_codg", 30, primary_key=True), _s("med_list_name", 50), _s("generic_name", 50), _s("spec", 50),
    _s("manufacturer", 100), _s("indication", 100), Column("active", Integer),
)
twopath_applications = Table(
    "twopath_applications", metadata,
    _s("appy_id", 20, primary_key=True), _s("patient_id", 12), Column("appy_date", Date), _s("cond_abst", 300),
    _s("diag_code", 20), _s("diag_name", 100), Column("begndate", Date), Column("enddate", Date),
    _s("doctor_code", 10), _s("doctor2_code", 10), _s("agnter_name", 50), _s("agnter_cert_type", 3),
    _s("agnter_certno", 30), _s("agnter_tel", 50), _s("agnter_rlts", 3), _s("agnter_addr", 200),
    _s("status", 10), _s("two_path_reg_sn", 30),
    Column("created_at", DT, nullable=False), Column("updated_at", DT, nullable=False),
)
twopath_application_drugs = Table(
    "twopath_application_drugs", metadata,
    Column("id", Integer, primary_key=True), _s("appy_id", 20), _s("med_list_codg", 30), _s("med_list_name", 50),
)

DRUGS = [  # code, name, generic, spec, manufacturer, indication, active
    ("XL01EBA404A001010184372", "甲磺酸奥希替尼片", "奥希替尼", "80mg*30片", "阿斯利康制药有限公司", "C34", 1),
    ("XL01EDA386E001010178814", "盐酸阿来替尼胶囊", "阿来替尼", "150mg*224粒", "罗氏制药", "C34", 1),
    ("XL01FFX221B002010182255", "信迪利单抗注射液", "信迪利单抗", "10ml:100mg", "信达生物制药(苏州)有限公司",
     "C34,C16,C22", 1),
    ("XL01FFK110B001010182640", "注射用卡瑞利珠单抗", "卡瑞利珠单抗", "200mg", "苏州盛迪亚生物医药有限公司", "C22,C34", 1),
    ("XL01EXA377A001010179905", "甲磺酸阿帕替尼片", "阿帕替尼", "0.25g*10片", "江苏恒瑞医药股份有限公司", "C16", 1),
    ("XL01EFP036E001010180133", "哌柏西利胶囊", "哌柏西利", "125mg*21粒", "辉瑞制药有限公司", "C50", 1),
    ("XL01FDP207B002010181746", "帕妥珠单抗注射液", "帕妥珠单抗", "14ml:420mg", "罗氏制药", "C50", 1),
    ("XL01EHP312A001010183358", "马来酸吡咯替尼片", "吡咯替尼", "160mg*14片", "江苏恒瑞医药股份有限公司", "C50", 1),
    ("XL01EXF220E001010180911", "呋喹替尼胶囊", "呋喹替尼", "5mg*7粒", "和记黄埔医药(上海)有限公司", "C18", 1),
    ("XL01EXL171E001010178026", "甲磺酸仑伐替尼胶囊", "仑伐替尼", "4mg*30粒", "卫材(中国)药业有限公司", "C22", 1),
    ("XL01EBD318A001010177452", "达可替尼片", "达可替尼", "45mg*30片", "辉瑞制药有限公司", "C34", 0),
]
_FINDINGS = ["EGFR 19外显子缺失突变阳性", "HER2阳性(3+)", "ECOG评分1分", "既往一线治疗后进展", "PD-L1 TPS≥50%"]


def _dt(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def seed_demo_hospital(connection, start: date, end: date) -> dict[str, int]:
    """Create and fill the two-channel tables (deterministic per the demo's seed); returns the row count
    per table."""
    meta = {k: v for k, v in connection.execute(text("SELECT key, value FROM demo_meta")).all()}
    cutoff = datetime.fromisoformat(meta.get("data_until") or f"{end} 23:59:59")
    rng = random.Random(f"twopath-{meta.get('seed', '7')}")
    poolarea = connection.execute(text("SELECT poolarea_no FROM hospital_info")).scalar_one()
    rows: dict[str, list[dict[str, Any]]] = {t.name: [] for t in metadata.sorted_tables}
    for code, name, generic, spec, maker, indication, active in DRUGS:
        rows["twopath_drugs"].append({
            "med_list_codg": code, "med_list_name": name, "generic_name": generic, "spec": spec,
            "manufacturer": maker, "indication": indication, "active": active})

    doctors = [code for (code,) in connection.execute(text(
        "SELECT d.doctor_code FROM doctors d JOIN departments p ON p.dept_code = d.dept_code "
        "WHERE p.specialty = 'onc' AND d.active = 1 ORDER BY d.doctor_code"))]
    candidates = connection.execute(text(
        "SELECT r.patient_id, r.reg_time, r.diag_code, r.diag_name, p.address FROM registrations r "
        "JOIN departments d ON d.dept_code = r.dept_code JOIN patients p ON p.patient_id = r.patient_id "
        "WHERE d.specialty = 'onc' AND d.dept_type = 'clinic' AND r.status = 'valid' AND r.diag_code LIKE 'C%' "
        "AND p.psn_no IS NOT NULL ORDER BY r.reg_time, r.reg_id")).all()
    drugs = [d for d in DRUGS if d[6]]
    weeks = max(1, ((end - start).days + 1) / 7)
    target = max(3, round(weeks * 2.5))
    seen: set[str] = set()
    for patient_id, reg_time, diag_code, diag_name, address in candidates:
        if len(seen) >= target or len(doctors) < 2:
            break
        if patient_id in seen or rng.random() < 0.3:
            continue
        fits = [d for d in drugs if diag_code[:3] in d[5].split(",")]
        if not fits:
            continue
        seen.add(patient_id)
        t = _dt(reg_time) + timedelta(minutes=rng.randint(20, 120))
        if t > cutoff:
            continue
        status = rng.choices(["draft", "pending", "submitted", "approved", "revoked"], weights=[1, 4, 2, 3, 0.5])[0]
        updated = t + timedelta(days=rng.randint(1, 12)) if status not in ("draft", "pending") else t
        if updated > cutoff:
            status, updated = "pending", t
        appy_id = f"SQ{t:%Y%m%d}{len(rows['twopath_applications']) + 1:04d}"
        d1, d2 = rng.sample(doctors, 2)
        agent = rng.random() < 0.3
        rows["twopath_applications"].append({
            "appy_id": appy_id, "patient_id": patient_id, "appy_date": t.date(),
            "cond_abst": f"{diag_name}，病理确诊，" + rng.choice(_FINDINGS),
            "diag_code": diag_code, "diag_name": diag_name, "begndate": t.date(),
            "enddate": t.date() + timedelta(days=rng.choice([90, 180, 365]) - 1), "doctor_code": d1,
            "doctor2_code": d2 if rng.random() < 0.7 else None,
            "agnter_name": random_name(rng, rng.choice("12")) if agent else None,
            "agnter_cert_type": "01" if agent else None,
            "agnter_certno": random_id_number(rng) if agent else None,
            "agnter_tel": random_phone(rng) if agent else None,
            "agnter_rlts": rng.choice(["1", "2", "3"]) if agent else None,
            "agnter_addr": address if agent else None, "status": status,
            "two_path_reg_sn": f"{poolarea}{updated:%Y%m%d}{rng.randrange(10**10):010d}"
            if status in ("submitted", "approved", "revoked") else None,
            "created_at": t, "updated_at": updated})
        for d in rng.sample(fits, min(len(fits), rng.choice([1, 1, 2]))):
            rows["twopath_application_drugs"].append({
                "id": len(rows["twopath_application_drugs"]) + 1, "appy_id": appy_id, "med_list_codg": d[0],
                "med_list_name": d[1]})

    write_tables(connection, metadata, rows)
    return {name: len(items) for name, items in rows.items()}
