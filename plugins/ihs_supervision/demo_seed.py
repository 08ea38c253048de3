"""The demo hospital grows what an internet hospital has (``seed_demo_hospital(connection, start, end)``,
called after ``demo.hospital`` has written its tables, on the same connection).

Tables (times naive Asia/Shanghai; TEXT 'YYYY-MM-DD HH:MM:SS' in SQLite; nothing after the demo's
``data_until``):

ihs_hospitals          hosp_id PK, hosp_name, address, phone, area (行政区划), level (A1000 hospLevel),
                       hosp_type (hospType), category (hospCategory), license_no, organ_code, legal_name,
                       legal_id_card, is_self (1 = this hospital, 0 = a partner 协作医院), created_at, updated_at.
ihs_staff              staff_code PK (= doctors.doctor_code), staff_type (1 医师 .. 5), status (0 有效 1 无效),
                       cert_type, cert_no, tech_title, rank, mobile, license_no, license_date, practice_no,
                       practice_address, practice_category, practice_scope, first_date, current_date, valid_date,
                       created_at, updated_at. Name, sex and department come from ``doctors``.
ihs_revisit_orders     order_id PK, flow_no, patient_id, dept_code, doctor_code, create_time, channel_type,
                       pay_type, amount (分), status (text), created_at, updated_at.
ihs_revisit_services   order_id PK ->ihs_revisit_orders, start_time, end_time, description, chief_complaint,
                       present_history, suggestion, diagnose, recipe_id, record_id, last_record_id,
                       last_visit_date, created_at, updated_at.
ihs_revisit_process    id PK, order_id, seq, process_time, role (1 患者 2 医生), content, atta_id: the
                       question-and-answer of an online re-visit.
ihs_consultations      consult_id PK, flow_no, apply_hosp_id ->ihs_hospitals (a partner), apply_time,
                       start_time, end_time, status, amount (分), consult_type, consult_flag, patient_id,
                       chief_complaint, present_history, created_at, updated_at.
ihs_attachments        atta_id PK, atta_service (01 医院 02 医务人员 11 在线复诊 13 远程会诊), owner_step,
                       owner_key (the record it belongs to), file_type, content (hex), size_bytes, big (1:
                       sent through A0001), created_at, updated_at.
"""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Column, Integer, MetaData, Numeric, String, Table, Text, text

from demo.hospital import DT

metadata = MetaData()


def _s(name: str, n: int = 32, **kw: Any) -> Column:
    return Column(name, String(n), **kw)


def _stamps() -> list[Column]:
    return [Column("created_at", DT, nullable=False), Column("updated_at", DT, nullable=False)]


hospitals = Table(
    "ihs_hospitals", metadata, _s("hosp_id", primary_key=True), _s("hosp_name"), _s("address"), _s("phone", 16),
    Column("area", Integer), Column("level", Integer), _s("hosp_type", 3), Column("category", Integer),
    _s("license_no"), _s("organ_code", 18), _s("legal_name", 16), _s("legal_id_card", 18), Column("is_self", Integer),
    *_stamps(),
)
staff = Table(
    "ihs_staff", metadata, _s("staff_code", 10, primary_key=True), Column("staff_type", Integer),
    Column("status", Integer), Column("cert_type", Integer), _s("cert_no"), Column("tech_title", Integer),
    Column("rank", Integer), _s("mobile", 16), _s("license_no"), _s("license_date", 10), _s("practice_no"),
    _s("practice_address"), _s("practice_category", 16), _s("practice_scope"), _s("first_date", 10),
    _s("current_date", 10), _s("valid_date", 10), *_stamps(),
)
orders = Table(
    "ihs_revisit_orders", metadata, _s("order_id", 64, primary_key=True), _s("flow_no", 64), _s("patient_id", 12),
    _s("dept_code", 10), _s("doctor_code", 10), Column("create_time", DT), Column("channel_type", Integer),
    Column("pay_type", Integer), Column("amount", Numeric(10, 2)), _s("status", 16), Column("age", Numeric(10, 1)),
    *_stamps(),
)
services = Table(
    "ihs_revisit_services", metadata, _s("order_id", 64, primary_key=True), Column("start_time", DT),
    Column("end_time", DT), _s("description", 128), _s("chief_complaint", 64), _s("present_history", 64),
    _s("suggestion", 128), _s("diagnose", 64), _s("recipe_id", 64), _s("record_id", 64), _s("last_record_id", 64),
    _s("last_visit_date", 10), *_stamps(),
)
process = Table(
    "ihs_revisit_process", metadata, Column("id", Integer, primary_key=True), _s("order_id", 64),
    Column("seq", Integer), Column("process_time", DT), Column("role", Integer), _s("content", 500),
    _s("atta_id", 128),
)
consultations = Table(
    "ihs_consultations", metadata, _s("consult_id", 64, primary_key=True), _s("flow_no", 64),
    _s("apply_hosp_id"), Column("apply_time", DT), Column("start_time", DT), Column("end_time", DT),
    _s("status", 16), Column("amount", Numeric(10, 2)), Column("consult_type", Integer),
    Column("consult_flag", Integer), _s("patient_id", 12), Column("age", Numeric(10, 1)), _s("chief_complaint", 64), _s("present_history", 64),
    *_stamps(),
)
attachments = Table(
    "ihs_attachments", metadata, _s("atta_id", 128, primary_key=True), _s("atta_service", 2), _s("owner_step", 40),
    _s("owner_key", 64), _s("file_type", 8), Column("content", Text), Column("size_bytes", Integer),
    Column("big", Integer), *_stamps(),
)

_PARTNERS = [  # 协作医院 (partner hospitals that apply for remote consultations)
    ("H36112300011", "玉山县人民医院", "玉山县冰溪镇博士大道8号", "0793-2222120", 361123, 23, "011"),
    ("H36112400021", "铅山县人民医院", "铅山县河口镇新建路32号", "0793-5322120", 361124, 23, "011"),
    ("H36110300031", "广丰区中医医院", "广丰区永丰街道解放路5号", "0793-2612120", 361103, 22, "012"),
]
_COMPLAINTS = [
    ("高血压复诊", "血压控制可，偶有头晕", "高血压病3年，规律服药", "原发性高血压", "继续原方案，低盐饮食"),
    ("糖尿病复诊", "空腹血糖7.2", "2型糖尿病5年，二甲双胍治疗", "2型糖尿病", "调整二甲双胍剂量，复查糖化"),
    ("慢性胃炎复诊", "上腹隐痛减轻", "慢性胃炎1年", "慢性浅表性胃炎", "继续抑酸治疗两周"),
    ("哮喘复诊", "夜间偶有喘息", "支气管哮喘2年", "支气管哮喘", "按需使用吸入剂，避免过敏原"),
    ("冠心病复诊", "活动后胸闷好转", "冠心病支架术后1年", "冠状动脉粥样硬化性心脏病", "继续双抗，定期复查"),
]
_QA = [
    (1, "医生您好，我上次开的药快吃完了，想复诊续方。"),
    (2, "您好，最近有没有不舒服？把最近的检查结果发我看看。"),
    (1, "最近感觉还好，这是上周的化验单。"),
    (2, "指标基本平稳，按原方案继续用药，注意复查。"),
]
_STATUS = ("已完成", "已完成", "已完成", "已取消")


def _meta(connection) -> dict[str, str]:
    return {k: v for k, v in connection.execute(text("SELECT key, value FROM demo_meta")).all()}


def _as_datetime(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.strptime(str(value)[:19], "%Y-%m-%d %H:%M:%S")


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def _age(born: date, at: datetime) -> float:
    return round((at.date() - born).days / 365.25, 1)


def _file(rng: random.Random, size: int) -> str:
    return rng.randbytes(size).hex()


def seed_demo_hospital(connection, start: date, end: date) -> dict[str, int]:
    """Create and fill the internet-hospital tables for ``start``..``end`` (deterministic per the demo's
    seed); returns the row count per table."""
    meta = _meta(connection)
    rng = random.Random(f"ihs-{meta.get('seed', '7')}")
    cutoff = _as_datetime(meta.get("data_until") or f"{end} 23:59:59")
    metadata.drop_all(connection)
    metadata.create_all(connection)
    rows: dict[str, list[dict[str, Any]]] = {t.name: [] for t in metadata.sorted_tables}
    base = datetime(2019, 6, 1, 9, 0, 0)

    org_code, org_name, address = connection.execute(
        text("SELECT org_code, org_name, address FROM hospital_info")).one()
    rows["ihs_hospitals"].append({
        "hosp_id": org_code, "hosp_name": org_name, "address": str(address)[:32], "phone": "0793-8222120",
        "area": 361102, "level": 32, "hosp_type": "011", "category": 1, "license_no": "PDY36110236110211A1001",
        "organ_code": "12361100491500123X", "legal_name": "周建国", "legal_id_card": None, "is_self": 1,
        "created_at": base, "updated_at": base})
    for hosp_id, name, addr, phone, area, level, kind in _PARTNERS:
        rows["ihs_hospitals"].append({
            "hosp_id": hosp_id, "hosp_name": name, "address": addr, "phone": phone, "area": area, "level": level,
            "hosp_type": kind, "category": 1, "license_no": None, "organ_code": None, "legal_name": None,
            "legal_id_card": None, "is_self": 0, "created_at": base, "updated_at": base})
    rows["ihs_attachments"].append({
        "atta_id": f"ATT-H-{org_code}-1", "atta_service": "01", "owner_step": "hospital", "owner_key": org_code,
        "file_type": "pdf", "content": _file(rng, 2048), "size_bytes": 2048, "big": 0, "created_at": base,
        "updated_at": base})

    doctors = connection.execute(text(
        "SELECT d.doctor_code, d.title, d.active, d.dept_code FROM doctors d ORDER BY d.doctor_code")).all()
    titles = {"主任医师": (231, 1), "副主任医师": (232, 2), "主治医师": (233, 3), "住院医师": (234, 4)}
    for code, title, active, _dept in doctors:
        tech, rank = titles.get(title, (234, 4))
        first = date(2008 + rng.randrange(12), rng.randrange(1, 13), rng.randrange(1, 28))
        rows["ihs_staff"].append({
            "staff_code": code, "staff_type": 1, "status": 0 if active else 1, "cert_type": 1,
            "cert_no": f"3611{rng.randrange(10**13):013d}X"[:18], "tech_title": tech, "rank": rank,
            "mobile": f"139{rng.randrange(10**8):08d}", "license_no": f"1103611{rng.randrange(10**8):08d}",
            "license_date": first.isoformat(), "practice_no": f"1103611{rng.randrange(10**8):08d}",
            "practice_address": org_name, "practice_category": "临床", "practice_scope": "内科专业",
            "first_date": first.isoformat(), "current_date": "2024-01-01", "valid_date": "2029-01-01",
            "created_at": base, "updated_at": base})

    clinic_doctors = connection.execute(text(
        "SELECT d.doctor_code, d.dept_code FROM doctors d JOIN departments p ON p.dept_code = d.dept_code "
        "WHERE d.active = 1 AND p.active = 1 AND p.dept_type = 'clinic' ORDER BY d.doctor_code")).all()
    patients = [(pid, _as_date(born)) for pid, born in connection.execute(text(
        "SELECT patient_id, birth_date FROM patients ORDER BY patient_id LIMIT 400")).all()]
    order_no = consult_no = process_id = 0
    day = start
    while day <= end:
        for _ in range(rng.randint(4, 8)):
            moment = datetime.combine(day, datetime.min.time()) + timedelta(minutes=rng.randrange(8 * 60, 21 * 60))
            finished = moment + timedelta(minutes=rng.randint(10, 40))
            if finished > cutoff:
                continue
            order_no += 1
            doctor, dept = rng.choice(clinic_doctors)
            order_id = f"RV{day:%Y%m%d}{order_no:06d}"
            status = rng.choice(_STATUS)
            patient, born = rng.choice(patients)
            rows["ihs_revisit_orders"].append({
                "order_id": order_id, "flow_no": f"FL{order_id}", "patient_id": patient, "age": _age(born, moment),
                "dept_code": dept, "doctor_code": doctor, "create_time": moment, "channel_type": rng.choice((1, 2)),
                "pay_type": rng.choice((1, 2, 3)), "amount": rng.choice((1000, 2000, 2500)), "status": status,
                "created_at": moment, "updated_at": moment})
            if status != "已完成":
                continue
            summary, description, history, diagnose, suggestion = rng.choice(_COMPLAINTS)
            rows["ihs_revisit_services"].append({
                "order_id": order_id, "start_time": moment + timedelta(minutes=2), "end_time": finished,
                "description": description, "chief_complaint": summary, "present_history": history,
                "suggestion": suggestion, "diagnose": diagnose, "recipe_id": f"CF{order_id}",
                "record_id": f"BL{order_id}", "last_record_id": None, "last_visit_date": None,
                "created_at": finished, "updated_at": finished})
            for seq, (role, content) in enumerate(_QA, start=1):
                process_id += 1
                atta_id = None
                if seq == 3 and rng.random() < 0.3:
                    atta_id = f"ATT-{order_id}-{seq}"
                    size = rng.choice((1500, 3000))
                    rows["ihs_attachments"].append({
                        "atta_id": atta_id, "atta_service": "11", "owner_step": "revisit_service",
                        "owner_key": order_id, "file_type": "jpg", "content": _file(rng, size), "size_bytes": size,
                        "big": 1 if size > 2000 else 0, "created_at": finished, "updated_at": finished})
                rows["ihs_revisit_process"].append({
                    "id": process_id, "order_id": order_id, "seq": seq,
                    "process_time": moment + timedelta(minutes=2 + seq * 3), "role": role, "content": content,
                    "atta_id": atta_id})
        if rng.random() < 0.5:
            apply = datetime.combine(day, datetime.min.time()) + timedelta(hours=rng.randint(9, 15))
            ended = apply + timedelta(hours=2, minutes=rng.randint(0, 50))
            if ended <= cutoff:
                consult_no += 1
                summary, _description, history, _diagnose, _suggestion = rng.choice(_COMPLAINTS)
                consult_id = f"HZ{day:%Y%m%d}{consult_no:05d}"
                patient, born = rng.choice(patients)
                rows["ihs_consultations"].append({
                    "consult_id": consult_id, "flow_no": f"FL{consult_id}", "apply_hosp_id": rng.choice(_PARTNERS)[0],
                    "apply_time": apply, "start_time": apply + timedelta(hours=1), "end_time": ended,
                    "status": "已完成", "amount": 30000, "consult_type": rng.choice((0, 1, 2)),
                    "consult_flag": 1, "patient_id": patient, "age": _age(born, apply), "chief_complaint": summary,
                    "present_history": history, "created_at": ended, "updated_at": ended})
        day += timedelta(days=1)

    for table in metadata.sorted_tables:
        if rows[table.name]:
            connection.execute(table.insert(), rows[table.name])
    return {name: len(items) for name, items in rows.items()}
