"""A synthetic hospital database (HIS) for demos, tests and plugin development.

``generate(url, start=..., end=...)`` drops and recreates every table below in the database at ``url`` (a
file path or any SQLAlchemy URL) and fills it with deterministic (per ``seed``) synthetic data of a mid-size
Shangrao (Jiangxi) hospital, scaled down: about 300 registrations a day, about 230 inpatient beds.
These are the tables every plugin may read; each installed plugin then adds the tables only it reads
(insurance records, drug applications...), built from these, through the hook ``seed_demo_hospital``
(see its ``demo_seed`` module).  ``python -m demo.hospital PATH`` makes the last three months up to now
(Asia/Shanghai).

Nothing here is real: names, ID numbers (well-formed, valid check digit), insurance numbers and codes are
made up; dictionaries follow the shape of the national ones (CT08.00.002, national medical-insurance
dictionaries) closely enough for plugins to map them, but plugins must not treat them as authoritative.

Conventions (plugin authors write SQL against this)
---------------------------------------------------
* Times are naive local Asia/Shanghai wall-clock times.  In SQLite they are TEXT ``'YYYY-MM-DD HH:MM:SS'``
  (so ``BETWEEN '2025-02-17 00:00:00' AND '2025-02-17 07:59:59'`` works); dates are TEXT ``'YYYY-MM-DD'``.
  In PostgreSQL they are ``timestamp without time zone`` / ``date``.
* Money is ``NUMERIC(16,2)``, unit prices ``NUMERIC(16,6)``, quantities ``NUMERIC(16,4)``, already rounded to
  that scale.  SQLite stores them as REAL, or INTEGER when whole (``35`` for 35.00): always format them with
  the scale the regulator wants.
* Events up to ``min(end 23:59:59, now)`` exist (``now`` defaults to the current Asia/Shanghai time); in-progress
  things (patients still in hospital, unsettled fees) look as they would at that moment.
* Flags are integers 0/1 unless a column holds a national code (then a string such as ``'0'``/``'1'``).
* ``created_at`` / ``updated_at``: when the row was written / last changed (``updated_at >= created_at``;
  some rows are changed later: cancellations, settlement, corrections, DRG coding).  Use ``updated_at`` as
  the watermark for incremental extraction.  Nothing is later than the generation cut-off (``demo_meta``).
* Cancelled / invalid rows are kept, flagged (``status``, ``vali_flag``), as a real HIS keeps them.
* Person demographics (name, ID number, gender, birth date, nation, phone, address) live only in
  ``patients`` (join on ``patient_id``); insurance fields use the national lower-case names (``psn_no``...).

Tables (key: PK = primary key, -> = refers to)
----------------------------------------------
hospital_info      one row: org_code PK (12 chars, e.g. H36110200001), org_name, admdvs (定点归属医保区划,
                   361102), poolarea_no (统筹区 361100), hosp_lv (national 医院等级 code, '03' 三级乙等),
                   hosp_grade (3: 三级 -> report the grade-4 surgery fields; 2: 二级 -> grade 3), address.
demo_meta          key PK, value: seed, start, end, data_until (the cut-off: no event is later), org_code.
departments        dept_code PK (local code, NOT the national CT08.00.002 code), dept_name (local Chinese name,
                   e.g. 心内科, 普外一病区, 眼耳鼻喉科), dept_type (clinic | ward | emergency | fever | checkup),
                   specialty (internal group: cardio, resp, gi, gensurg, ...), insu_caty (医保科别 code, the
                   insurance records' adm_caty; the mapping to CT08.00.002 is kept in the admin, not here),
                   active (0/1; inactive departments have no new activity), opened_on (date), created_at,
                   updated_at.
doctors            doctor_code PK, name, gender ('1' male '2' female), dept_code ->departments, title (主任医师..),
                   insu_dr_code (national 医保医师代码, e.g. D361102000123), active.
patients           patient_id PK (P00000001), name, gender ('1'/'2'), birth_date, id_type ('01' 居民身份证),
                   id_number (18-char resident ID, valid check digit), nation ('01' 汉族...), phone, address,
                   contact_name, contact_phone, insu_card_no (社保卡号, NULL for the uninsured), psn_no (医保人员
                   编号, 20 chars, NULL = uninsured), psn_insu_rlts_id (人员参保关系ID, 20 chars), insutype ('310'
                   职工基本医疗保险, '390' 城乡居民基本医疗保险), psn_type ('11' 在职, '12' 退休, '1501' 城乡居民,
                   '1502' 城乡居民(未成年)), insu_admdvs (参保所属医保区划: 361100 Shangrao, 360000 Jiangxi
                   province level, 360100/360200/360600 other Jiangxi cities, 330800/350700/341000 other
                   provinces), emp_no, emp_name (employer, employees only), cvlserv_flag ('0'/'1'),
                   flxempe_flag ('0'/'1'), created_at, updated_at.
registrations      reg_id PK (MZyyyymmddNNNNN), patient_id ->patients, dept_code, doctor_code, visit_type
                   (outpatient | emergency | fever | checkup; the indicator clinicPersonTimes counts
                   'outpatient' only), reg_time, status (valid | cancelled = 退号), cancel_time, fee_category (insured | self:
                   settled through the medical insurance or not),
                   reg_fee, diag_code/diag_name (ICD-10 main outpatient diagnosis), key_disease (0/1, diag_code
                   in key_diseases: keyDiseaseCount), created_at, updated_at (= cancel_time when cancelled).
prescriptions      rx_no PK (CFyyyymmddNNNNNN), reg_id ->registrations, patient_id, dept_code, doctor_code,
                   rx_time, rx_type (western | chinese_patent | herbal), item_count, amount, status (valid |
                   cancelled), created_at, updated_at.  Outpatient/emergency/fever prescriptions only.
infusions          infusion_id PK (integer), rx_no ->prescriptions, reg_id, patient_id, dept_code, drug_code
                   ->charge_items, drug_name, exec_time, day_no (1 = day of the visit, 2.. = return days), status
                   (done | cancelled).  One row per 门急诊 infusion dose event (indicator clinicMediFreq).
admissions         adm_id PK (ZY00000001, 住院号), patient_id, reg_id (the registration it came from, may be
                   NULL), dept_code (admitting ward), doctor_code, bed_no ->beds, admit_time, admit_diag_code,
                   admit_diag_name, source (outpatient | emergency | referral), status (in | discharged),
                   created_at, updated_at.  Stays admitted up to 40 days before ``start`` are included when
                   they end on/after ``start`` (the wards are not empty on day one).
discharges         adm_id PK ->admissions, patient_id, discharge_time, dept_code (discharging ward; differs from
                   admissions.dept_code after a transfer), doctor_code, bed_no, discharge_way (离院方式: '1' 医嘱
                   离院, '2' 医嘱转院, '3' 医嘱转社区/乡镇卫生院, '4' 非医嘱离院, '5' 死亡, '9' 其他),
                   main_diag_code, main_diag_name, key_disease (0/1), los_days, drg_code, drg_name,
                   drg_weight (DRG relative weight; monthly CMI = AVG(drg_weight) of the month's discharges;
                   NULL until coded), coded_at (病案编码 time, NULL if not yet coded), total_cost, created_at,
                   updated_at (= coded_at once coded).
surgeries          surgery_id PK (integer), adm_id ->admissions (NULL for outpatient minor surgery), reg_id (for
                   outpatient ones), patient_id, dept_code, surgeon_code ->doctors, oprn_code (ICD-9-CM-3),
                   oprn_name, grade (1-4 手术级别), interventional (0/1 介入), start_time, end_time, created_at.
                   A stay may have several surgeries: count DISTINCT adm_id for 台次 "按1人统计".
referrals          referral_id PK (integer), patient_id, direction (up | down), inbound (1 = the patient comes to
                   this hospital, 0 = sent away), partner_org_code, partner_org_name, partner_level (primary |
                   secondary | tertiary), partner_is_primary (0/1: 基层医疗卫生机构), visit_kind (outpatient |
                   emergency | inpatient), reg_id, adm_id, referral_time, status (done | cancelled), created_at.
                   Indicators: downPersonTimes = down & inbound; upPersonTimes = up & outbound;
                   downPriPersonTimes = down & outbound & partner_is_primary; upPriPersonTimes = up & inbound &
                   partner_is_primary.
beds               bed_no PK (e.g. 2101-03-2), dept_code (ward), room_no, bed_type (general | nursing 康复护理床 |
                   psychiatric 精神科床 | observation 急诊留观, not an inpatient bed), opened_on, closed_on (NULL =
                   open).  "截至上月底" = opened_on <= month end AND (closed_on IS NULL OR closed_on > month end).
charge_items       medins_list_codg PK (医药机构目录编码, e.g. YP0001), medins_list_name, hilist_code (医保目录
                   编码), hilist_name, med_list_codg (医疗目录编码), list_type ('101' 西药中成药, '102' 中药饮片,
                   '201' 医疗服务项目, '301' 医用耗材), med_chrgitm_type (national 医疗收费项目类别 '01' 床位费 ..
                   '14' 其他费), chrgitm_lv ('01' 甲类, '02' 乙类, '03' 丙类/自费), unit, spec, price (16,6).
key_diseases       diag_code PK, diag_name, category: the outpatient key diseases (门诊重点疾病).
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    Column,
    Date,
    DateTime,
    Engine,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    create_engine,
    event,
    make_url,
)
from sqlalchemy.dialects import sqlite

SHANGHAI = ZoneInfo("Asia/Shanghai")
DEFAULT_ORG_CODE = "H36110200001"
DEFAULT_ORG_NAME = "上饶市信江人民医院"
DEFAULT_ADMDVS = "361102"
POOLAREA = "361100"

# --------------------------------------------------------------------------------------------- schema

_SQLITE_DATETIME = sqlite.DATETIME(
    storage_format="%(year)04d-%(month)02d-%(day)02d %(hour)02d:%(minute)02d:%(second)02d",
    regexp=r"(\d+)-(\d+)-(\d+) (\d+):(\d+):(\d+)",
)
DT = DateTime().with_variant(_SQLITE_DATETIME, "sqlite")
MONEY = Numeric(16, 2)
PRICE = Numeric(16, 6)
QTY = Numeric(16, 4)

metadata = MetaData()


def _s(name: str, n: int = 30, **kw: Any) -> Column:
    return Column(name, String(n), **kw)


def _stamps() -> list[Column]:
    return [Column("created_at", DT, nullable=False), Column("updated_at", DT, nullable=False)]


hospital_info = Table(
    "hospital_info", metadata,
    _s("org_code", 12, primary_key=True), _s("org_name", 100), _s("admdvs", 6), _s("poolarea_no", 6),
    _s("hosp_lv", 6), Column("hosp_grade", Integer), _s("address", 200),
)
demo_meta = Table("demo_meta", metadata, _s("key", 40, primary_key=True), _s("value", 100))
departments = Table(
    "departments", metadata,
    _s("dept_code", 10, primary_key=True), _s("dept_name", 50, nullable=False), _s("dept_type", 10),
    _s("specialty", 20), _s("insu_caty", 10), Column("active", Integer), Column("opened_on", Date), *_stamps(),
)
doctors = Table(
    "doctors", metadata,
    _s("doctor_code", 10, primary_key=True), _s("name", 20), _s("gender", 1), _s("dept_code", 10),
    _s("title", 20), _s("insu_dr_code", 20), Column("active", Integer),
)
patients = Table(
    "patients", metadata,
    _s("patient_id", 12, primary_key=True), _s("name", 20), _s("gender", 1), Column("birth_date", Date),
    _s("id_type", 2), _s("id_number", 18), _s("nation", 2), _s("phone", 11), _s("address", 200),
    _s("contact_name", 20), _s("contact_phone", 11), _s("insu_card_no", 12), _s("psn_no", 30),
    _s("psn_insu_rlts_id", 20), _s("insutype", 6), _s("psn_type", 6), _s("insu_admdvs", 6),
    _s("emp_no", 40), _s("emp_name", 200), _s("cvlserv_flag", 3), _s("flxempe_flag", 3), *_stamps(),
)
registrations = Table(
    "registrations", metadata,
    _s("reg_id", 20, primary_key=True), _s("patient_id", 12, nullable=False), _s("dept_code", 10),
    _s("doctor_code", 10), _s("visit_type", 12), Column("reg_time", DT, nullable=False), _s("status", 10),
    Column("cancel_time", DT), _s("fee_category", 10), Column("reg_fee", MONEY), _s("diag_code", 20),
    _s("diag_name", 100), Column("key_disease", Integer), *_stamps(),
)
prescriptions = Table(
    "prescriptions", metadata,
    _s("rx_no", 20, primary_key=True), _s("reg_id", 20), _s("patient_id", 12), _s("dept_code", 10),
    _s("doctor_code", 10), Column("rx_time", DT, nullable=False), _s("rx_type", 20),
    Column("item_count", Integer), Column("amount", MONEY), _s("status", 10), *_stamps(),
)
infusions = Table(
    "infusions", metadata,
    Column("infusion_id", Integer, primary_key=True), _s("rx_no", 20), _s("reg_id", 20), _s("patient_id", 12),
    _s("dept_code", 10), _s("drug_code", 20), _s("drug_name", 100), Column("exec_time", DT, nullable=False),
    Column("day_no", Integer), _s("status", 10),
)
admissions = Table(
    "admissions", metadata,
    _s("adm_id", 12, primary_key=True), _s("patient_id", 12), _s("reg_id", 20), _s("dept_code", 10),
    _s("doctor_code", 10), _s("bed_no", 20), Column("admit_time", DT, nullable=False), _s("admit_diag_code", 20),
    _s("admit_diag_name", 100), _s("source", 12), _s("status", 12), *_stamps(),
)
discharges = Table(
    "discharges", metadata,
    _s("adm_id", 12, primary_key=True), _s("patient_id", 12), Column("discharge_time", DT, nullable=False),
    _s("dept_code", 10), _s("doctor_code", 10), _s("bed_no", 20), _s("discharge_way", 3),
    _s("main_diag_code", 20), _s("main_diag_name", 100), Column("key_disease", Integer),
    Column("los_days", Integer), _s("drg_code", 10), _s("drg_name", 100), Column("drg_weight", Numeric(8, 4)),
    Column("coded_at", DT), Column("total_cost", MONEY), *_stamps(),
)
surgeries = Table(
    "surgeries", metadata,
    Column("surgery_id", Integer, primary_key=True), _s("adm_id", 12), _s("reg_id", 20), _s("patient_id", 12),
    _s("dept_code", 10), _s("surgeon_code", 10), _s("oprn_code", 20), _s("oprn_name", 100),
    Column("grade", Integer), Column("interventional", Integer), Column("start_time", DT, nullable=False),
    Column("end_time", DT), Column("created_at", DT, nullable=False),
)
referrals = Table(
    "referrals", metadata,
    Column("referral_id", Integer, primary_key=True), _s("patient_id", 12), _s("direction", 4),
    Column("inbound", Integer), _s("partner_org_code", 20), _s("partner_org_name", 100), _s("partner_level", 10),
    Column("partner_is_primary", Integer), _s("visit_kind", 12), _s("reg_id", 20), _s("adm_id", 12),
    Column("referral_time", DT, nullable=False), _s("status", 10), Column("created_at", DT, nullable=False),
)
beds = Table(
    "beds", metadata,
    _s("bed_no", 20, primary_key=True), _s("dept_code", 10), _s("room_no", 10), _s("bed_type", 12),
    Column("opened_on", Date), Column("closed_on", Date),
)
charge_items = Table(
    "charge_items", metadata,
    _s("medins_list_codg", 20, primary_key=True), _s("medins_list_name", 100), _s("hilist_code", 50),
    _s("hilist_name", 200), _s("med_list_codg", 50), _s("list_type", 6), _s("med_chrgitm_type", 6),
    _s("chrgitm_lv", 3), _s("unit", 10), _s("spec", 50), Column("price", PRICE),
)
key_diseases = Table(
    "key_diseases", metadata, _s("diag_code", 20, primary_key=True), _s("diag_name", 100), _s("category", 20),
)

# Created after the rows are inserted (denser b-trees, faster load).
INDEXES: list[tuple[str, str, tuple[str, ...]]] = [
    ("ix_registrations_time", "registrations", ("reg_time",)),
    ("ix_registrations_dept_time", "registrations", ("dept_code", "reg_time")),
    ("ix_prescriptions_time", "prescriptions", ("rx_time",)),
    ("ix_infusions_time", "infusions", ("exec_time",)),
    ("ix_admissions_time", "admissions", ("admit_time",)),
    ("ix_discharges_time", "discharges", ("discharge_time",)),
    ("ix_surgeries_adm", "surgeries", ("adm_id",)),
    ("ix_referrals_time", "referrals", ("referral_time",)),
]

# ------------------------------------------------------------------------------------ reference data

# code, name, type, specialty, insu_caty, active, daily registrations (clinics) or beds (wards), stay days
_DEPARTMENTS: list[tuple[str, str, str, str, str, int, int, float]] = [
    ("0101", "心内科", "clinic", "cardio", "A03.04", 1, 24, 0),
    ("0102", "呼吸内科门诊", "clinic", "resp", "A03.01", 1, 20, 0),
    ("0103", "消化内科", "clinic", "gi", "A03.02", 1, 16, 0),
    ("0104", "神经内科", "clinic", "neuro", "A03.03", 1, 14, 0),
    ("0105", "内分泌代谢科", "clinic", "endo", "A03.07", 1, 15, 0),
    ("0201", "普外科门诊", "clinic", "gensurg", "A04.01", 1, 12, 0),
    ("0202", "骨科门诊", "clinic", "ortho", "A04.03", 1, 16, 0),
    ("0301", "妇科门诊", "clinic", "gyn", "A05.01", 1, 16, 0),
    ("0302", "产科门诊", "clinic", "obs", "A05.02", 1, 14, 0),
    ("0401", "儿科", "clinic", "peds", "A07", 1, 27, 0),
    ("0501", "眼耳鼻喉科", "clinic", "ent_eye", "A11", 1, 16, 0),
    ("0502", "口腔科", "clinic", "dental", "A12", 1, 12, 0),
    ("0701", "中医内科", "clinic", "tcm", "A50.01", 1, 14, 0),
    ("0801", "康复医学科", "clinic", "rehab", "A21", 1, 6, 0),
    ("0901", "心理科", "clinic", "psych", "A15.06", 1, 7, 0),
    ("1001", "肿瘤科", "clinic", "onc", "A19", 1, 8, 0),
    ("1101", "便民门诊", "clinic", "general", "A03.11", 1, 9, 0),
    ("1102", "体检中心", "checkup", "checkup", "A69", 1, 27, 0),
    ("1103", "核酸采样点", "clinic", "general", "A69", 0, 0, 0),
    ("1201", "急诊科", "emergency", "emerg", "A20", 1, 36, 0),
    ("1301", "发热门诊", "fever", "fever", "A16.02", 1, 18, 0),
    ("2101", "心内科病区", "ward", "cardio", "A03.04", 1, 21, 7),
    ("2102", "呼吸与危重症医学科病区", "ward", "resp", "A03.01", 1, 21, 8),
    ("2103", "消化神经内科病区", "ward", "gi", "A03.02", 1, 20, 8),
    ("2201", "普外一病区", "ward", "gensurg", "A04.01", 1, 18, 7),
    ("2202", "普外二病区", "ward", "gensurg", "A04.01", 1, 15, 7),
    ("2203", "骨科病区", "ward", "ortho", "A04.03", 1, 21, 10),
    ("2301", "妇科病区", "ward", "gyn", "A05.01", 1, 13, 5),
    ("2302", "产科病区", "ward", "obs", "A05.02", 1, 14, 4),
    ("2401", "儿科病区", "ward", "peds", "A07", 1, 17, 5),
    ("2501", "重症医学科", "ward", "icu", "A28", 1, 6, 6),
    ("2601", "康复医学科病区", "ward", "rehab", "A21", 1, 17, 20),
    ("2701", "精神心理病区", "ward", "psych", "A15", 1, 14, 26),
    ("2801", "肿瘤科病区", "ward", "onc", "A19", 1, 17, 9),
    ("2901", "老年病区（已撤并）", "ward", "cardio", "A03.10", 0, 8, 0),
]
_SHANGRAO = [  # resident-ID region code, address prefix, weight
    ("361102", "江西省上饶市信州区", 30), ("361103", "江西省上饶市广丰区", 10), ("361104", "江西省上饶市广信区", 14),
    ("361123", "江西省上饶市玉山县", 7), ("361124", "江西省上饶市铅山县", 6), ("361125", "江西省上饶市横峰县", 3),
    ("361126", "江西省上饶市弋阳县", 4), ("361127", "江西省上饶市余干县", 4), ("361128", "江西省上饶市鄱阳县", 4),
    ("361129", "江西省上饶市万年县", 3), ("361130", "江西省上饶市婺源县", 3), ("361181", "江西省上饶市德兴市", 3),
]
_ELSEWHERE = [  # region code, address, insurance admdvs, weight
    ("360102", "江西省南昌市东湖区", "360100", 4), ("360602", "江西省鹰潭市月湖区", "360600", 3),
    ("360203", "江西省景德镇市珠山区", "360200", 2), ("330802", "浙江省衢州市柯城区", "330800", 2),
    ("350702", "福建省南平市延平区", "350700", 1), ("341002", "安徽省黄山市屯溪区", "341000", 1),
]
_STREETS = ["中山路", "解放路", "胜利路", "凤凰大道", "滨江西路", "五三大道", "茶圣路", "信江西路", "水南街", "东市街",
            "兴园大道", "庆丰路", "广信大道", "紫阳大道", "书院路", "北门路"]
_SURNAMES = ("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢"
             "姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤")
_MALE_CHARS = "伟强磊军勇杰涛斌超明辉刚平华建国文志宇浩俊鹏飞峰龙波林亮成东海洋晨阳鑫斌健荣新春生根发金水"
_FEMALE_CHARS = "芳娟敏静丽艳娜秀英霞婷玲燕兰萍红梅莉雪琳颖倩欣怡佳慧悦晶丹琴凤菊桂云珍"
_EMPLOYERS = [
    "上饶市城市建设投资开发集团有限公司", "江西晶科能源有限公司", "上饶市第一中学", "信州区人民政府办公室", "上饶市公安局",
    "江西汉腾汽车有限公司", "上饶银行股份有限公司", "中国移动通信集团江西有限公司上饶分公司", "上饶市供电公司",
    "广丰区卷烟厂", "上饶师范学院", "江西博能实业集团有限公司", "上饶市自来水有限责任公司", "玉山县南山实业有限公司",
    "信州区东市街道办事处", "上饶市人民检察院", "江西凤凰光学股份有限公司", "上饶市交通运输局", "婺源县旅游集团",
    "上饶市万达广场商业管理有限公司",
]
_TITLES = ["主任医师", "副主任医师", "主治医师", "住院医师"]

_DIAG: dict[str, list[tuple[str, str, float]]] = {
    "cardio": [("I10.x00", "高血压", 4), ("I25.103", "冠状动脉粥样硬化性心脏病", 3), ("I48.x00", "心房颤动", 1),
               ("I50.900", "心力衰竭", 1), ("R00.200", "心悸", 1), ("E78.500", "高脂血症", 2)],
    "resp": [("J06.900", "急性上呼吸道感染", 4), ("J20.900", "急性支气管炎", 3), ("J18.900", "肺炎", 2),
             ("J44.900", "慢性阻塞性肺疾病", 2), ("J45.900", "支气管哮喘", 1)],
    "gi": [("K29.700", "胃炎", 4), ("K21.000", "胃食管反流病伴食管炎", 2), ("K58.900", "肠易激综合征", 1),
           ("K80.200", "胆囊结石", 1), ("K74.600", "肝硬化", 1), ("I63.900", "脑梗死", 1)],
    "neuro": [("I63.900", "脑梗死", 3), ("G43.900", "偏头痛", 2), ("R51.x00", "头痛", 2), ("G47.000", "失眠", 2),
              ("R42.x00", "头晕", 2)],
    "endo": [("E11.900", "2型糖尿病", 5), ("E05.900", "甲状腺功能亢进症", 1), ("E03.900", "甲状腺功能减退症", 1),
             ("E78.500", "高脂血症", 1), ("M81.900", "骨质疏松", 1)],
    "gensurg": [("K40.900", "腹股沟疝", 2), ("K80.200", "胆囊结石", 2), ("K35.800", "急性阑尾炎", 2),
                ("L02.900", "皮肤脓肿", 1), ("C16.900", "胃恶性肿瘤", 1), ("C50.900", "乳房恶性肿瘤", 1),
                ("E04.100", "甲状腺结节", 2)],
    "ortho": [("M17.900", "膝关节骨关节病", 3), ("M51.202", "腰椎间盘突出", 3), ("S72.000", "股骨颈骨折", 1),
              ("S52.500", "桡骨远端骨折", 1), ("M75.100", "肩袖损伤", 1)],
    "gyn": [("N76.000", "急性阴道炎", 3), ("N83.200", "卵巢囊肿", 2), ("D25.900", "子宫平滑肌瘤", 2),
            ("N92.000", "月经过多", 1), ("N97.900", "女性不孕症", 1)],
    "obs": [("Z34.900", "正常妊娠监督", 5), ("O24.400", "妊娠期糖尿病", 1), ("O14.900", "子痫前期", 0.5)],
    "peds": [("J06.900", "急性上呼吸道感染", 4), ("J20.900", "急性支气管炎", 2), ("A09.900", "感染性腹泻", 2),
             ("J18.000", "支气管肺炎", 2), ("R50.900", "发热", 2), ("L20.900", "特应性皮炎", 1)],
    "ent_eye": [("H10.900", "结膜炎", 2), ("H52.100", "近视", 2), ("J31.000", "慢性鼻炎", 2),
                ("J35.000", "慢性扁桃体炎", 1), ("H66.900", "中耳炎", 1), ("H25.900", "老年性白内障", 1)],
    "dental": [("K02.900", "龋病", 3), ("K04.000", "牙髓炎", 2), ("K05.100", "慢性牙龈炎", 2),
               ("K07.300", "牙列不齐", 1)],
    "tcm": [("R53.x00", "乏力", 2), ("G47.000", "失眠", 2), ("K29.700", "胃炎", 2), ("M54.500", "腰痛", 2),
            ("I10.x00", "高血压", 1)],
    "rehab": [("I69.300", "脑梗死后遗症", 3), ("M54.500", "腰痛", 2), ("G81.900", "偏瘫", 1),
              ("M17.900", "膝关节骨关节病", 1)],
    "psych": [("F32.900", "抑郁发作", 3), ("F41.100", "广泛性焦虑障碍", 3), ("F51.000", "非器质性失眠症", 2),
              ("F20.900", "精神分裂症", 1)],
    "onc": [("C34.900", "肺恶性肿瘤", 3), ("C16.900", "胃恶性肿瘤", 2), ("C50.900", "乳房恶性肿瘤", 2),
            ("C18.900", "结肠恶性肿瘤", 1), ("C22.000", "肝细胞癌", 1), ("Z51.100", "肿瘤化学治疗疗程", 2)],
    "general": [("J06.900", "急性上呼吸道感染", 3), ("I10.x00", "高血压", 2), ("E11.900", "2型糖尿病", 2),
                ("K29.700", "胃炎", 1), ("R51.x00", "头痛", 1)],
    "checkup": [("Z00.000", "一般性医学检查", 1)],
    "emerg": [("R10.400", "腹痛", 3), ("T14.000", "浅表损伤", 3), ("S06.000", "脑震荡", 1), ("R07.400", "胸痛", 2),
              ("I21.900", "急性心肌梗死", 0.4), ("A09.900", "感染性腹泻", 2), ("T65.900", "中毒", 0.4),
              ("J06.900", "急性上呼吸道感染", 2), ("R55.x00", "晕厥", 1)],
    "fever": [("J06.900", "急性上呼吸道感染", 5), ("J11.100", "流行性感冒", 3), ("J20.900", "急性支气管炎", 2),
              ("R50.900", "发热", 3), ("J18.900", "肺炎", 1)],
    "icu": [("J96.000", "急性呼吸衰竭", 2), ("A41.900", "脓毒症", 2), ("I21.900", "急性心肌梗死", 1),
            ("I61.900", "脑出血", 1), ("S06.500", "创伤性硬膜下出血", 1)],
}
_WARD_DIAG_OVERRIDE = {
    "obs": [("O80.000", "单胎顺产", 5), ("O82.000", "剖宫产单胎分娩", 3), ("O24.400", "妊娠期糖尿病", 0.5)],
}
_KEY_DISEASES = [
    ("I10.x00", "高血压", "心脑血管"), ("I25.103", "冠状动脉粥样硬化性心脏病", "心脑血管"),
    ("I63.900", "脑梗死", "心脑血管"), ("I21.900", "急性心肌梗死", "心脑血管"), ("E11.900", "2型糖尿病", "内分泌"),
    ("J44.900", "慢性阻塞性肺疾病", "呼吸"), ("J45.900", "支气管哮喘", "呼吸"), ("C34.900", "肺恶性肿瘤", "肿瘤"),
    ("C16.900", "胃恶性肿瘤", "肿瘤"), ("C50.900", "乳房恶性肿瘤", "肿瘤"), ("C22.000", "肝细胞癌", "肿瘤"),
    ("C18.900", "结肠恶性肿瘤", "肿瘤"),
]
_KEY_CODES = {c for c, _, _ in _KEY_DISEASES}
# surgery: code, name, grade, interventional
_SURGERY: dict[str, tuple[float, list[tuple[str, str, int, int]]]] = {
    "cardio": (0.35, [("00.6600x008", "经皮冠状动脉球囊扩张成形术", 4, 1), ("36.0601", "冠状动脉药物洗脱支架置入术", 4, 1),
                      ("37.2200", "左心导管检查", 3, 1), ("37.8100", "单腔永久起搏器置入术", 3, 1)]),
    "resp": (0.12, [("33.2300x001", "支气管镜活组织检查", 2, 1), ("34.0401", "胸腔闭式引流术", 2, 0)]),
    "gi": (0.25, [("45.4200", "内镜下结肠息肉切除术", 3, 1), ("51.8800x001", "内镜下胆总管取石术(ERCP)", 4, 1),
                  ("45.1601", "胃镜下活组织检查", 1, 1)]),
    "gensurg": (0.75, [("51.2300", "腹腔镜下胆囊切除术", 3, 0), ("53.0200", "腹股沟疝修补术", 2, 0),
                       ("47.0100", "腹腔镜下阑尾切除术", 2, 0), ("43.7x00", "胃部分切除术伴胃空肠吻合术", 4, 0),
                       ("06.2x00", "单侧甲状腺叶切除术", 3, 0), ("85.4300", "乳腺癌改良根治术", 4, 0)]),
    "ortho": (0.70, [("81.5400", "全膝关节置换", 4, 0), ("81.5100", "全髋关节置换", 4, 0),
                     ("79.3500", "股骨骨折切开复位内固定术", 3, 0), ("80.5100", "椎间盘切除术", 3, 0),
                     ("80.6x00", "关节镜下膝半月板切除术", 3, 0), ("79.3200", "桡骨骨折切开复位内固定术", 2, 0)]),
    "gyn": (0.65, [("68.4100", "腹腔镜下全子宫切除术", 4, 0), ("65.2500", "腹腔镜下卵巢囊肿剔除术", 3, 0),
                   ("68.2900x005", "宫腔镜下子宫内膜病损切除术", 2, 0), ("69.0900", "刮宫术", 1, 0)]),
    "obs": (0.38, [("74.1x00", "子宫下段剖宫产术", 3, 0), ("75.6200", "产科会阴裂伤修补术", 1, 0)]),
    "peds": (0.03, [("28.2x00", "扁桃体切除术", 2, 0)]),
    "icu": (0.40, [("31.1x00", "暂时性气管切开术", 2, 0), ("38.9300x003", "中心静脉置管术", 1, 0)]),
    "onc": (0.15, [("86.0700x002", "完全植入式输液港置入术", 2, 0), ("50.2401", "经皮肝病损射频消融术", 4, 1)]),
}
_OUTPATIENT_SURGERY = {"gensurg": ("86.2200", "伤口清创术", 1), "dental": ("23.0900", "牙拔除术", 1),
                       "emerg": ("86.5900", "皮肤缝合术", 1)}
_DRG: dict[str, list[tuple[str, str, float]]] = {
    "cardio": [("FV23", "高血压，伴一般并发症或合并症", 0.62), ("FT29", "心绞痛", 0.71), ("FR23", "心力衰竭", 0.98)],
    "resp": [("ES23", "呼吸系统感染/炎症，伴一般并发症", 0.92), ("ET23", "慢性气道阻塞病", 0.88), ("EX13", "上呼吸道感染", 0.45)],
    "gi": [("GS13", "胃肠出血", 0.85), ("GZ13", "其他消化系统诊断", 0.58), ("BR23", "脑缺血性疾患", 0.96)],
    "gensurg": [("GE19", "腹股沟及腹疝手术", 0.93)],
    "ortho": [("IU23", "骨病及其他关节病", 0.66), ("IS23", "前臂、腕、手或足损伤", 0.55)],
    "gyn": [("NZ13", "女性生殖系统其他疾患", 0.52)],
    "obs": [("OC13", "阴道分娩", 0.48)],
    "peds": [("PS13", "新生儿及儿童呼吸道感染", 0.42), ("GZ15", "儿童消化系统疾患", 0.38)],
    "icu": [("AH11", "气管切开伴呼吸机支持≥96小时", 6.8), ("ES21", "呼吸系统感染，伴严重并发症", 2.1)],
    "rehab": [("XR13", "康复", 1.12)],
    "psych": [("TS13", "抑郁症", 1.35), ("TR13", "精神分裂症", 1.62)],
    "onc": [("RE13", "恶性增生性疾患的化学治疗", 0.78), ("ER13", "呼吸系统肿瘤", 1.18)],
}
_SURGICAL_DRG = {1: ("QB19", "小手术", 0.7), 2: ("QC19", "中等手术", 1.1), 3: ("QD19", "较大手术", 1.7),
                 4: ("QE19", "复杂大手术", 3.2)}
_PARTNERS = [  # code, name, level
    ("H36010000006", "南昌大学第一附属医院", "tertiary"), ("H36010000012", "江西省人民医院", "tertiary"),
    ("H33010000003", "浙江大学医学院附属第一医院", "tertiary"), ("H36110400021", "上饶市广信区人民医院", "secondary"),
    ("H36112300008", "玉山县人民医院", "secondary"), ("H36110200105", "信州区东市街道社区卫生服务中心", "primary"),
    ("H36110400233", "广信区茶亭镇卫生院", "primary"), ("H36112300117", "玉山县冰溪镇卫生院", "primary"),
    ("H36112400096", "铅山县河口镇中心卫生院", "primary"), ("H36110200131", "信州区朝阳镇卫生院", "primary"),
]

# charge items: code, name, hilist_code, list_type, med_chrgitm_type, chrgitm_lv, unit, spec, price, tags
_ITEMS: list[tuple[str, str, str, str, str, str, str, str, float, str]] = [
    ("XM0001", "普通门诊诊察费", "001102000010000", "201", "02", "01", "次", "", 15.0, "consult"),
    ("XM0002", "急诊诊察费", "001102000020000", "201", "02", "01", "次", "", 20.0, "consult_er"),
    ("XM0003", "挂号费", "001101000010000", "201", "13", "03", "次", "", 1.0, "reg"),
    ("XM0101", "血细胞分析(五分类)", "002501010010000", "201", "04", "01", "项", "", 20.0, "lab"),
    ("XM0102", "C反应蛋白测定", "002503030200000", "201", "04", "01", "项", "", 15.0, "lab"),
    ("XM0103", "肝功能检查", "002503020010000", "201", "04", "01", "项", "", 60.0, "lab"),
    ("XM0104", "肾功能检查", "002503030010000", "201", "04", "01", "项", "", 45.0, "lab"),
    ("XM0105", "葡萄糖测定", "002503040010000", "201", "04", "01", "项", "", 6.0, "lab"),
    ("XM0106", "糖化血红蛋白测定", "002503040080000", "201", "04", "02", "项", "", 60.0, "lab"),
    ("XM0201", "胸部CT平扫", "002103030010000", "201", "03", "01", "部位", "", 260.0, "exam"),
    ("XM0202", "彩色多普勒超声检查", "002203030010000", "201", "03", "01", "部位", "", 120.0, "exam"),
    ("XM0203", "常规心电图检查", "003101010010000", "201", "03", "01", "次", "", 25.0, "exam"),
    ("XM0204", "数字化摄影(DR)", "002101010020000", "201", "03", "01", "曝光次数", "", 90.0, "exam"),
    ("XM0205", "颅脑磁共振平扫", "002104010010000", "201", "03", "02", "部位", "", 520.0, "exam"),
    ("XM0301", "静脉输液(第一组)", "001206010060000", "201", "05", "01", "组", "", 8.0, "ivfee"),
    ("XM0302", "雾化吸入", "001206010210000", "201", "05", "01", "次", "", 6.0, "treat"),
    ("XM0303", "普通针刺", "004301000010000", "201", "05", "01", "次", "", 18.0, "treat_tcm"),
    ("XM0304", "运动疗法", "004200000010000", "201", "05", "02", "次", "", 45.0, "treat_rehab"),
    ("XM0305", "心理咨询", "003111010080000", "201", "05", "03", "次", "", 80.0, "treat_psych"),
    ("XM0306", "洁治(龈上)", "003107000020000", "201", "05", "03", "每牙", "", 8.5, "treat_dental"),
    ("XM0401", "床位费(三人间)", "001103000010000", "201", "01", "01", "日", "", 35.0, "bed"),
    ("XM0402", "重症监护床位费", "001103000050000", "201", "01", "01", "日", "", 180.0, "bed_icu"),
    ("XM0403", "一级护理", "001201000010000", "201", "07", "01", "日", "", 30.0, "nurse"),
    ("XM0404", "特级护理", "001201000030000", "201", "07", "01", "小时", "", 6.5, "nurse_icu"),
    ("XM0501", "手术费(一级)", "003300000010000", "201", "06", "01", "次", "", 300.0, "op1"),
    ("XM0502", "手术费(二级)", "003300000020000", "201", "06", "01", "次", "", 800.0, "op2"),
    ("XM0503", "手术费(三级)", "003300000030000", "201", "06", "01", "次", "", 1800.0, "op3"),
    ("XM0504", "手术费(四级)", "003300000040000", "201", "06", "01", "次", "", 3500.0, "op4"),
    ("XM0505", "全身麻醉", "003302010010000", "201", "06", "01", "2小时", "", 600.0, "anes"),
    ("HC0001", "一次性使用输液器", "C0301011000000100032", "301", "08", "01", "套", "带针", 2.5, "mat_iv"),
    ("HC0002", "静脉留置针", "C0302011300000100521", "301", "08", "02", "支", "22G", 18.0, "mat"),
    ("HC0003", "冠状动脉药物洗脱支架", "C0201012010100102345", "301", "08", "02", "个", "3.0*18mm", 700.0, "mat_stent"),
    ("HC0004", "人工膝关节假体", "C0301051000000201388", "301", "08", "02", "套", "", 5120.0, "mat_joint"),
    ("HC0005", "腔镜用直线切割吻合器", "C0401021000000300916", "301", "08", "03", "把", "60mm", 2860.0, "mat_op"),
    ("HC0006", "医用敷料", "C1402040000000101544", "301", "08", "01", "片", "10*10cm", 3.2, "mat"),
    ("YP0001", "苯磺酸氨氯地平片", "XC08CAA040A001010104021", "101", "09", "01", "片", "5mg*28片", 0.045714, "cardio"),
    ("YP0002", "阿托伐他汀钙片", "XC10AAA050A001010102887", "101", "09", "01", "片", "20mg*7片", 0.458571, "cardio"),
    ("YP0003", "阿司匹林肠溶片", "XB01ACA060A012010100234", "101", "09", "01", "片", "100mg*30片", 0.118333, "cardio"),
    ("YP0004", "琥珀酸美托洛尔缓释片", "XC07ABM117A012010101512", "101", "09", "02", "片", "47.5mg*7片", 2.135714,
     "cardio"),
    ("YP0005", "盐酸二甲双胍片", "XA10BAE054A001010104496", "101", "09", "01", "片", "0.5g*20片", 0.051500, "endo"),
    ("YP0006", "阿卡波糖片", "XA10BFA016A001010101943", "101", "09", "01", "片", "50mg*30片", 0.181000, "endo"),
    ("YP0007", "甘精胰岛素注射液", "XA10AEG015B002010100483", "101", "09", "02", "支", "3ml:300单位", 69.800000,
     "endo"),
    ("YP0008", "头孢呋辛酯片", "XJ01DCT037A001010103385", "101", "09", "01", "片", "0.25g*12片", 0.545833,
     "resp,peds,ent_eye,gensurg,general,emerg,fever"),
    ("YP0009", "阿莫西林胶囊", "XJ01CAA041E001010102003", "101", "09", "01", "粒", "0.25g*24粒", 0.072917,
     "resp,peds,dental,ent_eye,general,fever"),
    ("YP0010", "吸入用布地奈德混悬液", "XR03BAB087L015010101221", "101", "09", "02", "支", "2ml:1mg", 5.840000,
     "resp,peds,fever"),
    ("YP0011", "盐酸氨溴索口服溶液", "XR05CBA125X001010102054", "101", "09", "02", "瓶", "100ml:0.6g", 11.500000,
     "resp,peds,fever"),
    ("YP0012", "奥美拉唑肠溶胶囊", "XA02BCA129E001010102367", "101", "09", "01", "粒", "20mg*14粒", 0.127857,
     "gi,tcm,general,onc"),
    ("YP0013", "铝碳酸镁咀嚼片", "XA02ADL011A005010101839", "101", "09", "02", "片", "0.5g*20片", 0.599000, "gi"),
    ("YP0014", "双歧杆菌三联活菌胶囊", "XA07FAS050E001010100874", "101", "09", "02", "粒", "210mg*24粒", 0.987500,
     "gi,peds"),
    ("YP0015", "布洛芬混悬液", "XM01AEB093X001010103102", "101", "09", "01", "瓶", "100ml:2g", 9.860000,
     "peds,fever,emerg"),
    ("YP0016", "蒙脱石散", "XA07BCM071P001010101672", "101", "09", "01", "袋", "3g*10袋", 0.860000, "peds,emerg"),
    ("YP0017", "小儿豉翘清热颗粒", "ZA01AAX0219010101889", "101", "11", "02", "袋", "2g*6袋", 3.216667, "peds"),
    ("YP0018", "连花清瘟胶囊", "ZA01BAL0003010102154", "101", "11", "02", "粒", "0.35g*24粒", 0.590417,
     "fever,resp,general"),
    ("YP0019", "玻璃酸钠滴眼液", "XS01XAB007G010010102378", "101", "09", "02", "支", "5ml:5mg", 24.600000, "ent_eye"),
    ("YP0020", "塞来昔布胶囊", "XM01AHS036E001010101187", "101", "09", "02", "粒", "0.2g*6粒", 1.883333,
     "ortho,rehab"),
    ("YP0021", "盐酸舍曲林片", "XN06ABS068A001010102675", "101", "09", "02", "片", "50mg*14片", 1.132143, "psych"),
    ("YP0022", "右佐匹克隆片", "XN05CFY020A001010100953", "101", "09", "02", "片", "3mg*6片", 1.950000,
     "psych,neuro,tcm"),
    ("YP0023", "甲硝唑片", "XP01ABJ038A001010101126", "101", "09", "01", "片", "0.2g*21片", 0.024286,
     "dental,gyn"),
    ("YP0024", "替吉奥胶囊", "XL01BCT069E001010100386", "101", "09", "02", "粒", "20mg*42粒", 6.476190, "onc"),
    ("YP0025", "甲钴胺片", "XB03BAJ083A001010102218", "101", "09", "02", "片", "0.5mg*20片", 0.496000,
     "neuro,endo,rehab,ortho"),
    ("YP0026", "保妇康栓", "ZF01AAB0057030101346", "101", "11", "02", "粒", "1.74g*8粒", 3.987500, "gyn"),
    ("YP0027", "多维元素片(29)", "XA11AAD179A001010100667", "101", "09", "03", "片", "60片", 1.498333, "obs"),
    ("YP0101", "0.9%氯化钠注射液", "XB05BBL106B002010100541", "101", "09", "01", "袋", "100ml:0.9g", 2.950000, "iv_base"),
    ("YP0102", "5%葡萄糖注射液", "XB05BAP087B002010100612", "101", "09", "01", "袋", "250ml:12.5g", 3.600000,
     "iv_base"),
    ("YP0103", "注射用头孢曲松钠", "XJ01DDT045B001010100738", "101", "09", "01", "支", "1.0g", 4.120000, "iv"),
    ("YP0104", "注射用阿莫西林钠克拉维酸钾", "XJ01CRA052B001010101264", "101", "09", "02", "支", "1.2g", 8.750000, "iv"),
    ("YP0105", "注射用奥美拉唑钠", "XA02BCA129B001010100952", "101", "09", "02", "支", "40mg", 6.900000, "iv"),
    ("YP0106", "注射用七叶皂苷钠", "XC05CXQ011B001010100279", "101", "09", "03", "支", "10mg", 21.300000, "iv"),
    ("ZY0001", "黄芪", "T000700452", "102", "10", "01", "g", "切片", 0.120000, "herbal"),
    ("ZY0002", "党参", "T000700237", "102", "10", "01", "g", "段", 0.285000, "herbal"),
    ("ZY0003", "当归", "T000700198", "102", "10", "01", "g", "片", 0.352000, "herbal"),
    ("ZY0004", "炒白术", "T000700144", "102", "10", "01", "g", "片", 0.158000, "herbal"),
    ("ZY0005", "茯苓", "T000700611", "102", "10", "01", "g", "块", 0.094000, "herbal"),
    ("ZY0006", "炙甘草", "T000700523", "102", "10", "01", "g", "片", 0.086500, "herbal"),
    ("ZY0007", "川芎", "T000700174", "102", "10", "01", "g", "片", 0.132000, "herbal"),
    ("ZY0008", "柴胡", "T000700162", "102", "10", "01", "g", "段", 0.412000, "herbal"),
    ("ZY0009", "陈皮", "T000700191", "102", "10", "01", "g", "丝", 0.068000, "herbal"),
    ("ZY0010", "酸枣仁", "T000700834", "102", "10", "02", "g", "炒", 0.962000, "herbal"),
]
# hour-of-day weights (0..23)
_HOURS = {
    "clinic": [0, 0, 0, 0, 0, 0, 0, .35, 1.7, 2.1, 1.9, 1.3, .35, .3, 1.4, 1.4, 1.1, .45, .06, .05, .04, 0, 0, 0],
    "general": [0, 0, 0, 0, 0, 0, 0, 0, .5, .6, .6, .5, .4, .4, .5, .5, .6, .8, 1.5, 1.6, 1.3, .8, 0, 0],
    "checkup": [0, 0, 0, 0, 0, 0, 0, 1.6, 2.4, 1.8, .9, .2, 0, 0, .2, .2, .1, 0, 0, 0, 0, 0, 0, 0],
    "emergency": [.55, .45, .38, .32, .3, .32, .4, .6, .9, 1.1, 1.1, 1.0, .95, .9, 1.0, 1.05, 1.1, 1.2, 1.35, 1.45,
                  1.45, 1.35, 1.1, .8],
    "fever": [.5, .4, .3, .25, .25, .3, .4, .6, 1.0, 1.2, 1.2, 1.0, .9, .9, 1.0, 1.0, 1.1, 1.3, 1.6, 1.8, 1.8, 1.6,
              1.2, .8],
    "admit": [.15, .1, .1, .08, .08, .1, .15, .3, 1.4, 2.2, 2.0, 1.5, .6, .5, 1.2, 1.4, 1.2, .8, .5, .4, .4, .35,
              .25, .2],
    "discharge": [0, 0, 0, 0, 0, 0, 0, .2, 1.0, 2.4, 2.6, 1.8, .6, .4, 1.0, 1.2, 1.0, .5, .15, .05, 0, 0, 0, 0],
    "surgery": [.05, .05, .03, .03, .03, .03, .05, .1, 2.0, 2.2, 1.8, 1.2, .6, .7, 1.8, 1.7, 1.3, .8, .3, .2, .15,
                .1, .08, .06],
}
_ID_WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
_ID_CHECK = "10X98765432"


def id_check_digit(first17: str) -> str:
    """GB 11643 check character of an 18-char resident ID number."""
    return _ID_CHECK[sum(int(c) * w for c, w in zip(first17, _ID_WEIGHTS, strict=True)) % 11]


def valid_id_number(value: str) -> bool:
    return len(value) == 18 and value[:17].isdigit() and id_check_digit(value[:17]) == value[17]


def _r2(x: float) -> float:
    return round(x + 1e-9, 2)


# ------------------------------------------------------------------------- for the plugins' seeds

# What each charge item is used for, as the generator draws them: a specialty ("cardio", "resp", ...,
# "general") for the drugs it prescribes, or a use: "consult", "consult_er", "lab", "exam", "iv" (drug
# infused), "iv_base" (its carrier), "ivfee", "bed", "bed_icu", "nurse", "nurse_icu", "op1".."op4",
# "anes", "mat*" (materials), "herbal", "treat*".  Plugins seeding their own tables draw from it.
CHARGE_ITEM_USES: dict[str, list[str]] = {}
for _item in _ITEMS:
    for _tag in _item[9].split(","):
        CHARGE_ITEM_USES.setdefault(_tag, []).append(_item[0])


def random_name(rng: random.Random, gender: str) -> str:
    """A plausible Chinese name ('1' male, '2' female)."""
    chars = _MALE_CHARS if gender == "1" else _FEMALE_CHARS
    given = rng.choice(chars) + (rng.choice(chars) if rng.random() < 0.7 else "")
    return rng.choice(_SURNAMES[:40] if rng.random() < 0.7 else _SURNAMES) + given


def random_phone(rng: random.Random) -> str:
    return f"1{rng.choice('3578')}{rng.randrange(10**9):09d}"


def random_id_number(rng: random.Random) -> str:
    """An 18-char resident ID number (valid check digit) of someone born 1960..2000 in the region."""
    region = rng.choices(_SHANGRAO, weights=[w[-1] for w in _SHANGRAO])[0][0]
    birth = date(1960, 1, 1) + timedelta(days=rng.randrange(40 * 365))
    first17 = f"{region}{birth:%Y%m%d}{rng.randrange(1000):03d}"
    return first17 + id_check_digit(first17)


# ------------------------------------------------------------------------------------------ generator


class _Gen:
    def __init__(self, start: date, end: date, seed: int, org_code: str, org_name: str, cutoff: datetime):
        self.rng = random.Random(seed)
        self.start, self.end, self.seed = start, end, seed
        self.org_code, self.org_name = org_code, org_name
        self.cutoff = cutoff
        self.rows: dict[str, list[dict[str, Any]]] = {t.name: [] for t in metadata.sorted_tables}
        self.depts = {d[0]: d for d in _DEPARTMENTS}
        self.dept_doctors: dict[str, list[str]] = {}
        self.doctor_name: dict[str, str] = {}
        self.items = {i[0]: i for i in _ITEMS}
        self.items_by_tag: dict[str, list[tuple]] = {}
        for item in _ITEMS:
            for tag in item[9].split(","):
                self.items_by_tag.setdefault(tag, []).append(item)
        self.pools: dict[str, list[dict[str, Any]]] = {"child": [], "female": [], "male": []}
        self.patient_seq = 0
        self.seq: dict[str, int] = {}
        self.ward_beds: dict[str, list[str]] = {}
        self.reg_index: dict[tuple[date, str], list[tuple[datetime, str, dict[str, Any]]]] = {}

    # -- small helpers
    def next(self, key: str) -> int:
        self.seq[key] = self.seq.get(key, 0) + 1
        return self.seq[key]

    def poisson(self, lam: float) -> int:
        if lam <= 0:
            return 0
        if lam > 40:
            return max(0, round(self.rng.gauss(lam, math.sqrt(lam))))
        limit, k, p = math.exp(-lam), 0, 1.0
        while True:
            p *= self.rng.random()
            if p <= limit:
                return k
            k += 1

    def at_hour(self, day: date, hours: Sequence[float]) -> datetime:
        hour = self.rng.choices(range(24), weights=hours)[0]
        return datetime(day.year, day.month, day.day, hour, self.rng.randrange(60), self.rng.randrange(60))

    def pick(self, weighted: Sequence[tuple]) -> tuple:
        return self.rng.choices(weighted, weights=[w[-1] for w in weighted])[0]

    def name(self, gender: str) -> str:
        return random_name(self.rng, gender)

    def phone(self) -> str:
        return random_phone(self.rng)

    # -- static data
    def static(self) -> None:
        rng = self.rng
        created = datetime(2015, 3, 1, 9, 0, 0)
        self.rows["hospital_info"].append({
            "org_code": self.org_code, "org_name": self.org_name, "admdvs": DEFAULT_ADMDVS, "poolarea_no": POOLAREA,
            "hosp_lv": "03", "hosp_grade": 3, "address": "江西省上饶市信州区凤凰大道188号"})
        for key, value in (("seed", self.seed), ("start", self.start), ("end", self.end),
                           ("data_until", self.cutoff.strftime("%Y-%m-%d %H:%M:%S")), ("org_code", self.org_code)):
            self.rows["demo_meta"].append({"key": key, "value": str(value)})
        doctor_no = 0
        for code, name, dtype, spec, caty, active, size, _los in _DEPARTMENTS:
            opened = date(2015, 3, 1) if code not in ("1301", "1103") else date(2020, 2, 1)
            updated = created if active else datetime(2023, 6, 30, 17, 30, 0)
            self.rows["departments"].append({
                "dept_code": code, "dept_name": name, "dept_type": dtype, "specialty": spec, "insu_caty": caty,
                "active": active, "opened_on": opened, "created_at": created, "updated_at": updated})
            n_doc = {"clinic": 4, "checkup": 3, "emergency": 8, "fever": 4, "ward": 5}[dtype] + rng.randrange(3)
            self.dept_doctors[code] = []
            for _ in range(n_doc):
                doctor_no += 1
                gender = rng.choice("12")
                doc = f"{1000 + doctor_no}"
                self.doctor_name[doc] = self.name(gender)
                self.rows["doctors"].append({
                    "doctor_code": doc, "name": self.doctor_name[doc], "gender": gender, "dept_code": code,
                    "title": rng.choices(_TITLES, weights=[1, 2, 3, 3])[0],
                    "insu_dr_code": f"D{DEFAULT_ADMDVS}{rng.randrange(10**6):06d}", "active": active})
                if active:
                    self.dept_doctors[code].append(doc)
            if dtype == "ward":
                self.ward_beds[code] = []
                bed_type = {"rehab": "nursing", "psych": "psychiatric"}.get(spec, "general")
                for i in range(size):
                    room = f"{code[2:]}{i // 3 + 1:02d}"
                    bed_no = f"{code}-{i // 3 + 1:02d}-{i % 3 + 1}"
                    opened_on, closed_on = date(2015, 3, 1), None
                    if not active:
                        closed_on = date(2023, 6, 30)
                    elif i >= size - 2 and spec in ("rehab", "psych"):  # recently added beds
                        opened_on = self.start + timedelta(days=(self.end - self.start).days // 2)
                    self.rows["beds"].append({"bed_no": bed_no, "dept_code": code, "room_no": room,
                                              "bed_type": bed_type, "opened_on": opened_on, "closed_on": closed_on})
                    if active:
                        self.ward_beds[code].append(bed_no)
            if dtype == "emergency":
                for i in range(6):
                    self.rows["beds"].append({"bed_no": f"{code}-LG-{i + 1}", "dept_code": code, "room_no": "留观",
                                              "bed_type": "observation", "opened_on": date(2015, 3, 1),
                                              "closed_on": None})
        for code, name, hilist, ltype, ctype, lv, unit, spec, price, _tags in _ITEMS:
            self.rows["charge_items"].append({
                "medins_list_codg": code, "medins_list_name": name, "hilist_code": hilist,
                "hilist_name": name if ltype != "102" else f"{name}(饮片)", "med_list_codg": hilist,
                "list_type": ltype, "med_chrgitm_type": ctype, "chrgitm_lv": lv, "unit": unit, "spec": spec,
                "price": price})
        for code, name, cat in _KEY_DISEASES:
            self.rows["key_diseases"].append({"diag_code": code, "diag_name": name, "category": cat})

    # -- patients
    def new_patient(self, kind: str, age_range: tuple[int, int], when: datetime, existing: bool) -> dict[str, Any]:
        rng = self.rng
        self.patient_seq += 1
        pid = f"P{self.patient_seq:08d}"
        gender = {"female": "2", "male": "1"}.get(kind) or rng.choice("12")
        age = rng.randint(*age_range) if kind != "child" else rng.randint(0, 13)
        birth = when.date() - timedelta(days=int(age * 365.25) + rng.randrange(365))
        if rng.random() < 0.86:
            region, prefix, _w = self.pick(_SHANGRAO)
            insu_admdvs = "360000" if rng.random() < 0.04 else "361100"
        else:
            region, prefix, insu_admdvs, _w = self.pick(_ELSEWHERE)
        seq3 = rng.randrange(100) * 10 + rng.randrange(5) * 2 + (1 if gender == "1" else 0)
        first17 = f"{region}{birth:%Y%m%d}{seq3:03d}"
        address = f"{prefix}{rng.choice(_STREETS)}{rng.randint(1, 399)}号"
        if rng.random() < 0.5:
            address += f"{rng.randint(1, 30)}栋{rng.randint(1, 6)}0{rng.randint(1, 4)}室"
        if existing:
            created = datetime.combine(self.start - timedelta(days=rng.randint(30, 3000)), datetime.min.time())
            created += timedelta(seconds=rng.randint(8 * 3600, 17 * 3600))
        else:
            created = when - timedelta(minutes=rng.randint(3, 25))
        updated = created
        if existing and rng.random() < 0.15:
            updated = created + timedelta(days=rng.randint(1, 900))
            updated = min(updated, datetime.combine(self.start, datetime.min.time()))
        row: dict[str, Any] = {
            "patient_id": pid, "name": self.name(gender), "gender": gender, "birth_date": birth, "id_type": "01",
            "id_number": first17 + id_check_digit(first17),
            "nation": "01" if rng.random() < 0.97 else rng.choice(["03", "04", "05", "06", "09"]),
            "phone": self.phone(), "address": address, "contact_name": self.name(rng.choice("12")),
            "contact_phone": self.phone(), "insu_card_no": None, "psn_no": None, "psn_insu_rlts_id": None,
            "insutype": None, "psn_type": None, "insu_admdvs": None, "emp_no": None, "emp_name": None,
            "cvlserv_flag": None, "flxempe_flag": None, "created_at": created, "updated_at": updated,
            "_age": age,
        }
        if rng.random() < 0.93:
            n = self.patient_seq
            employee = 18 <= age <= 75 and rng.random() < (0.5 if insu_admdvs != "360000" else 1.0)
            row.update({
                "insu_card_no": f"{rng.choice('ABCDEFGHJK')}{rng.randrange(10**8):08d}",
                "psn_no": f"{insu_admdvs}{n * 7919 % 10**14:014d}",
                "psn_insu_rlts_id": f"{insu_admdvs[:4]}{n * 104729 % 10**16:016d}",
                "insutype": "310" if employee else "390",
                "psn_type": ("12" if age >= 60 else "11") if employee else ("1502" if age < 18 else "1501"),
                "insu_admdvs": insu_admdvs, "cvlserv_flag": "1" if employee and rng.random() < 0.08 else "0",
                "flxempe_flag": "1" if employee and rng.random() < 0.1 else "0",
            })
            if employee:
                e = rng.randrange(len(_EMPLOYERS))
                row["emp_no"], row["emp_name"] = f"{insu_admdvs}{e + 1:08d}", _EMPLOYERS[e]
        self.rows["patients"].append(row)
        self.pools["child" if age < 14 else ("female" if gender == "2" else "male")].append(row)
        return row

    def patient_for(self, spec: str, when: datetime) -> dict[str, Any]:
        rng = self.rng
        if spec in ("peds",):
            kind = "child"
        elif spec in ("gyn", "obs"):
            kind = "female"
        elif spec in ("fever", "emerg", "ent_eye", "dental") and rng.random() < (0.3 if spec == "fever" else 0.12):
            kind = "child"
        else:
            kind = "female" if rng.random() < 0.53 else "male"
        lo, hi = {"cardio": (40, 92), "neuro": (30, 90), "endo": (28, 85), "obs": (20, 42), "gyn": (18, 72),
                  "onc": (35, 85), "psych": (14, 70), "rehab": (25, 88), "checkup": (20, 65), "icu": (25, 92),
                  "ortho": (16, 90)}.get(spec, (14, 88))
        pool = self.pools[kind]
        if pool and rng.random() < 0.7:
            for _ in range(4):
                p = pool[rng.randrange(len(pool))]
                if p["created_at"] <= when and (kind == "child" or lo <= p["_age"] <= hi):
                    return p
        return self.new_patient(kind, (lo, hi), when, existing=False)

    def age_at(self, patient: dict[str, Any], when: datetime) -> float:
        return round((when.date() - patient["birth_date"]).days / 365.25, 1)

    # -- outpatient
    def outpatient(self) -> None:
        rng = self.rng
        days = (self.end - self.start).days + 1
        wave_center = rng.uniform(0.25, 0.85) * days
        for offset in range(days):
            day = self.start + timedelta(days=offset)
            wd = day.weekday()
            winter = 1.0 + 0.6 * math.cos((day.timetuple().tm_yday - 15) / 365.25 * 2 * math.pi)
            wave = 1.0 + 1.8 * math.exp(-(((offset - wave_center) / 7.0) ** 2))
            events: list[tuple[datetime, str]] = []
            for code, _name, dtype, spec, _caty, active, base, _los in _DEPARTMENTS:
                if dtype == "ward" or not active:
                    continue
                if dtype in ("clinic", "checkup"):
                    factor = [1.08, 1.0, 0.97, 0.98, 1.02, 0.55, 0.38][wd]
                    if dtype == "checkup":
                        factor = [1.1, 1.0, 1.0, 1.0, 1.0, 0.15, 0.0][wd]
                    if spec == "general":
                        factor = [1.0, 1.0, 1.0, 1.0, 1.1, 1.3, 1.2][wd]
                    if spec in ("resp", "peds"):
                        factor *= 0.8 + 0.25 * winter
                    hours = _HOURS["general" if spec == "general" else ("checkup" if dtype == "checkup" else "clinic")]
                elif dtype == "emergency":
                    factor, hours = [1.0, 0.95, 0.95, 0.95, 1.0, 1.2, 1.2][wd], _HOURS["emergency"]
                else:
                    factor, hours = [1.0, 1.0, 1.0, 1.0, 1.05, 1.2, 1.2][wd] * (0.55 + 0.3 * winter) * wave, \
                        _HOURS["fever"]
                n = self.poisson(base * factor)
                for _ in range(n):
                    t = self.at_hour(day, hours)
                    if t <= self.cutoff:
                        events.append((t, code))
            events.sort()
            for t, code in events:
                self.visit(t, code)

    def visit(self, t: datetime, dept: str) -> None:
        rng = self.rng
        _code, _name, dtype, spec, _caty, _a, _b, _l = self.depts[dept]
        visit_type = {"clinic": "outpatient", "checkup": "checkup"}.get(dtype, dtype)
        p = self.patient_for(spec, t)
        doctor = rng.choice(self.dept_doctors[dept])
        diag_code, diag_name, _w = self.pick(_DIAG[spec])
        reg_id = f"MZ{t:%Y%m%d}{self.next('reg' + t.strftime('%Y%m%d')):05d}"
        insured = p["psn_no"] is not None and dtype != "checkup" and rng.random() < 0.92
        cancelled = dtype != "checkup" and rng.random() < 0.025
        cancel_time = t + timedelta(minutes=rng.randint(3, 90)) if cancelled else None
        if cancel_time and cancel_time > self.cutoff:
            cancelled, cancel_time = False, None
        reg_fee = {"emergency": 10.0, "fever": 10.0, "checkup": 0.0}.get(dtype, rng.choice([1.0, 1.0, 5.0, 10.0]))
        self.rows["registrations"].append({
            "reg_id": reg_id, "patient_id": p["patient_id"], "dept_code": dept, "doctor_code": doctor,
            "visit_type": visit_type, "reg_time": t, "status": "cancelled" if cancelled else "valid",
            "cancel_time": cancel_time, "fee_category": "insured" if insured else "self", "reg_fee": reg_fee,
            "diag_code": None if cancelled else diag_code, "diag_name": None if cancelled else diag_name,
            "key_disease": 0 if cancelled else int(diag_code in _KEY_CODES), "created_at": t,
            "updated_at": cancel_time or t})
        if cancelled:
            return
        self.referral_outpatient(p, t, reg_id, visit_type)
        if dtype in ("clinic", "emergency"):
            self.reg_index.setdefault((t.date(), spec if dtype == "clinic" else "emerg"), []).append((t, reg_id, p))
        if spec in _OUTPATIENT_SURGERY and rng.random() < 0.04:
            code, name, grade = _OUTPATIENT_SURGERY[spec]
            start = t + timedelta(minutes=rng.randint(20, 90))
            if start <= self.cutoff:
                self.rows["surgeries"].append({
                    "surgery_id": self.next("surgery"), "adm_id": None, "reg_id": reg_id,
                    "patient_id": p["patient_id"], "dept_code": dept, "surgeon_code": doctor, "oprn_code": code,
                    "oprn_name": name, "grade": grade, "interventional": 0, "start_time": start,
                    "end_time": start + timedelta(minutes=rng.randint(10, 40)),
                    "created_at": start + timedelta(minutes=rng.randint(40, 90))})
        seen = t + timedelta(minutes=rng.randint(4, 30))  # by the doctor
        if dtype == "checkup":
            return
        n_rx = rng.choices([0, 1, 2, 3], weights={"dental": [5, 4, 1, 0], "rehab": [6, 3, 1, 0],
                                                   "psych": [2, 6, 2, 0]}.get(spec, [2, 6, 2.2, 0.6]))[0]
        for _ in range(n_rx):
            rx_time = seen + timedelta(minutes=rng.randint(0, 15))
            if rx_time > self.cutoff:
                break
            self.prescription(p, reg_id, dept, doctor, spec, rx_time, visit_type)

    def prescription(self, p: dict[str, Any], reg_id: str, dept: str, doctor: str, spec: str, when: datetime,
                     visit_type: str) -> None:
        rng = self.rng
        rx_no = f"CF{when:%Y%m%d}{self.next('rx' + when.strftime('%Y%m%d')):06d}"
        herbal = spec == "tcm" and rng.random() < 0.6
        lines: list[tuple[str, float]] = []
        if herbal:
            doses = rng.choice([5, 7, 7, 14])
            for item in rng.sample(self.items_by_tag["herbal"], rng.randint(6, 9)):
                lines.append((item[0], rng.choice([6, 9, 10, 12, 12.5, 15, 20, 30]) * doses))
            rx_type = "herbal"
        else:
            pool = self.items_by_tag.get(spec) or self.items_by_tag["general"]
            for item in rng.sample(pool, min(len(pool), rng.randint(1, 3))):
                unit = item[6]
                qty = rng.choice([14, 21, 28, 30, 42]) if unit in ("片", "粒") else rng.choice([1, 1, 2, 3, 6])
                lines.append((item[0], qty))
            rx_type = "chinese_patent" if all(self.items[c][4] == "11" for c, _ in lines) else "western"
        amount = sum(_r2(q * self.items[c][8]) for c, q in lines)
        infusion = visit_type in ("emergency", "fever", "outpatient") and rng.random() < {
            "emergency": 0.28, "fever": 0.3, "peds": 0.18, "resp": 0.16, "gi": 0.06, "onc": 0.2}.get(
            spec if visit_type == "outpatient" else visit_type, 0.03)
        iv_lines: list[tuple[str, float]] = []
        days = doses_per_day = 0
        if infusion:
            days = rng.choices([1, 2, 3], weights=[5, 3, 2])[0]
            doses_per_day = rng.choices([1, 2, 3], weights=[5, 4, 1])[0]
            drug = rng.choice(self.items_by_tag["iv"])
            iv_lines = [(drug[0], days * doses_per_day), (rng.choice(self.items_by_tag["iv_base"])[0],
                                                          days * doses_per_day)]
            amount += sum(_r2(q * self.items[c][8]) for c, q in iv_lines)
        cancelled = rng.random() < 0.01
        updated = when + timedelta(minutes=rng.randint(5, 60)) if cancelled else when
        if updated > self.cutoff:
            cancelled, updated = False, when
        self.rows["prescriptions"].append({
            "rx_no": rx_no, "reg_id": reg_id, "patient_id": p["patient_id"], "dept_code": dept,
            "doctor_code": doctor, "rx_time": when, "rx_type": rx_type, "item_count": len(lines) + len(iv_lines),
            "amount": _r2(amount), "status": "cancelled" if cancelled else "valid", "created_at": when,
            "updated_at": updated})
        if cancelled:
            return
        if infusion:
            drug_code = iv_lines[0][0]
            for day_no in range(1, days + 1):
                if day_no == 1:
                    t = when + timedelta(minutes=rng.randint(15, 50))
                else:
                    t = when.replace(hour=max(8, min(when.hour, 17))) + timedelta(
                        days=day_no - 1, minutes=rng.randint(-40, 40))
                for _ in range(doses_per_day):
                    if t > self.cutoff:
                        break
                    self.rows["infusions"].append({
                        "infusion_id": self.next("infusion"), "rx_no": rx_no, "reg_id": reg_id,
                        "patient_id": p["patient_id"], "dept_code": dept, "drug_code": drug_code,
                        "drug_name": self.items[drug_code][1], "exec_time": t, "day_no": day_no,
                        "status": "cancelled" if rng.random() < 0.01 else "done"})
                    t += timedelta(minutes=rng.randint(45, 110))

    def referral(self, p: dict[str, Any], direction: str, inbound: int, level: str, kind: str, when: datetime,
                 reg_id: str | None = None, adm_id: str | None = None) -> None:
        partner = self.rng.choice([x for x in _PARTNERS if x[2] == level])
        self.rows["referrals"].append({
            "referral_id": self.next("referral"), "patient_id": p["patient_id"], "direction": direction,
            "inbound": inbound, "partner_org_code": partner[0], "partner_org_name": partner[1],
            "partner_level": level, "partner_is_primary": int(level == "primary"), "visit_kind": kind,
            "reg_id": reg_id, "adm_id": adm_id, "referral_time": when,
            "status": "cancelled" if self.rng.random() < 0.04 else "done",
            "created_at": when + timedelta(minutes=self.rng.randint(1, 30))})

    def referral_outpatient(self, p: dict[str, Any], t: datetime, reg_id: str, visit_type: str) -> None:
        rng = self.rng
        r = rng.random()
        kind = "emergency" if visit_type == "emergency" else "outpatient"
        if r < 0.006:
            self.referral(p, "up", 1, "primary", kind, t, reg_id=reg_id)  # 基层转入
        elif r < 0.008:
            self.referral(p, "up", 1, "secondary", kind, t, reg_id=reg_id)
        elif r < 0.0105:
            self.referral(p, "up", 0, "tertiary", kind, t + timedelta(minutes=40), reg_id=reg_id)
        elif r < 0.0125:
            self.referral(p, "down", 0, "primary", kind, t + timedelta(minutes=30), reg_id=reg_id)
        elif r < 0.0135:
            self.referral(p, "down", 1, "tertiary", kind, t, reg_id=reg_id)

    # -- inpatient
    def inpatient(self) -> None:
        first = self.start - timedelta(days=40)
        days = (self.end - first).days + 1
        start_dt = datetime.combine(self.start, datetime.min.time())
        stays: list[tuple[datetime, str]] = []
        for offset in range(days):
            day = first + timedelta(days=offset)
            wd = day.weekday()
            for code, _n, dtype, _spec, _c, active, n_beds, los in _DEPARTMENTS:
                if dtype != "ward" or not active:
                    continue
                lam = n_beds * 0.88 / los * [1.15, 1.1, 1.05, 1.0, 1.0, 0.75, 0.6][wd]
                for _ in range(self.poisson(lam)):
                    t = self.at_hour(day, _HOURS["admit"])
                    if t <= self.cutoff:
                        stays.append((t, code))
        stays.sort()
        for t, ward in stays:
            self.stay(t, ward, start_dt)

    def stay(self, t: datetime, ward: str, start_dt: datetime) -> None:
        rng = self.rng
        _code, ward_name, _dt, spec, caty, _a, _b, los_mean = self.depts[ward]
        los = max(1, round(rng.lognormvariate(math.log(los_mean), 0.45)))
        if spec == "obs":
            los = rng.choice([2, 3, 3, 4, 5, 6])
        out_day = t.date() + timedelta(days=los)
        discharge_t = self.at_hour(out_day, _HOURS["discharge"])
        if rng.random() < 0.05:  # died or left at night
            discharge_t = self.at_hour(out_day, _HOURS["emergency"])
        if discharge_t <= t:
            discharge_t = t + timedelta(hours=rng.randint(20, 30))
        discharged = discharge_t <= self.cutoff
        if t < start_dt and (not discharged or discharge_t < start_dt):
            return  # warm-up stays only matter if they end inside the range... or are still in
        source = rng.choices(["outpatient", "emergency", "referral"], weights=[6, 3, 0.5])[0]
        if spec in ("icu",):
            source = "emergency"
        reg_id = None
        candidates = [r for r in self.reg_index.get((t.date(), "emerg" if source == "emergency" else spec), [])
                      if r[0] < t and (spec != "peds" or r[2]["_age"] < 14) and (spec != "obs" or r[2]["gender"] == "2")]
        if source != "referral" and candidates:
            _rt, reg_id, p = rng.choice(candidates)
        else:
            p = self.patient_for(spec, t)
        adm_id = f"ZY{self.next('adm'):08d}"
        doctor = rng.choice(self.dept_doctors[ward])
        bed = rng.choice(self.ward_beds[ward])
        diag_list = _WARD_DIAG_OVERRIDE.get(spec) or _DIAG[spec]
        diag_code, diag_name, _w = self.pick(diag_list)
        if source == "referral":
            if spec in ("rehab", "onc", "ortho") and rng.random() < 0.5:
                self.referral(p, "down", 1, "tertiary", "inpatient", t - timedelta(minutes=30), adm_id=adm_id)
            else:
                self.referral(p, "up", 1, rng.choice(["primary", "primary", "secondary"]), "inpatient",
                              t - timedelta(minutes=30), adm_id=adm_id)
        dischg_ward = ward
        if spec == "icu" and rng.random() < 0.5:
            dischg_ward = rng.choice(["2101", "2102", "2201", "2203"])
        elif spec not in ("obs", "psych", "rehab") and rng.random() < 0.03:
            dischg_ward = rng.choice(["2501", "2601"])
        status = "discharged" if discharged else "in"
        created = t + timedelta(minutes=rng.randint(2, 15))
        self.rows["admissions"].append({
            "adm_id": adm_id, "patient_id": p["patient_id"], "reg_id": reg_id, "dept_code": ward,
            "doctor_code": doctor, "bed_no": bed, "admit_time": t, "admit_diag_code": diag_code,
            "admit_diag_name": diag_name, "source": source, "status": status, "created_at": created,
            "updated_at": discharge_t if discharged else created})
        # surgeries
        ops: list[dict[str, Any]] = []
        prob, catalogue = _SURGERY.get(spec, (0.0, []))
        if (diag_code == "O82.000") or (rng.random() < prob and diag_code != "O80.000"):
            n_ops = rng.choices([1, 2, 3], weights=[85, 12, 3])[0]
            for i in range(n_ops):
                if diag_code == "O82.000":
                    op = catalogue[0]
                else:
                    op = rng.choice(catalogue)
                if i == 0 and spec == "icu":
                    op_day = t.date()
                else:
                    op_day = t.date() + timedelta(days=min(los - 1, rng.randint(0, 2) + i * 2))
                start = self.at_hour(op_day, _HOURS["surgery"])
                if start <= t:
                    start = t + timedelta(hours=rng.randint(1, 5))
                if discharged and start >= discharge_t:
                    start = discharge_t - timedelta(hours=rng.randint(18, 30))
                    if start <= t:
                        continue
                if start > self.cutoff:
                    continue
                end: datetime | None = start + timedelta(minutes=rng.randint(30, 60 * op[2] + 60))
                if end > self.cutoff:  # still in the theatre
                    end = None
                row = {"surgery_id": self.next("surgery"), "adm_id": adm_id, "reg_id": None,
                       "patient_id": p["patient_id"], "dept_code": ward, "surgeon_code": doctor,
                       "oprn_code": op[0], "oprn_name": op[1], "grade": op[2], "interventional": op[3],
                       "start_time": start, "end_time": end,
                       "created_at": min(self.cutoff, (end or start) + timedelta(minutes=rng.randint(10, 180)))}
                self.rows["surgeries"].append(row)
                ops.append(row)
        # discharge
        way = "1"
        if discharged:
            way = rng.choices(["1", "2", "3", "4", "5", "9"], weights=[88, 3, 3.5, 2.5, 0.8 if spec != "icu" else 8,
                                                                   0.5])[0]
            if way == "2":
                level = "tertiary" if rng.random() < 0.75 else "secondary"
                self.referral(p, "up" if level == "tertiary" else "down", 0, level, "inpatient", discharge_t,
                              adm_id=adm_id)
            elif way == "3":
                self.referral(p, "down", 0, "primary", "inpatient", discharge_t, adm_id=adm_id)
            if ops:
                top = max(o["grade"] for o in ops)
                drg_code, drg_name, weight = _SURGICAL_DRG[top]
                drg_code = {"cardio": "F", "gensurg": "G", "ortho": "I", "gyn": "N", "obs": "O", "gi": "G"}.get(
                    spec, "Q") + drg_code[1:]
            else:
                drg_code, drg_name, weight = rng.choice(_DRG.get(spec, _DRG["gi"]))
            weight = round(weight * rng.uniform(0.85, 1.2) * (1.4 if way == "5" else 1.0), 4)
            coded = discharge_t + timedelta(days=rng.randint(1, 6), hours=rng.randint(0, 8))
            coded_ok = coded <= self.cutoff
            final_diag = diag_list[0] if diag_code == "Z51.100" else (diag_code, diag_name)
            total = 0.0
            self.rows["discharges"].append({
                "adm_id": adm_id, "patient_id": p["patient_id"], "discharge_time": discharge_t,
                "dept_code": dischg_ward, "doctor_code": rng.choice(self.dept_doctors[dischg_ward]),
                "bed_no": rng.choice(self.ward_beds[dischg_ward]), "discharge_way": way,
                "main_diag_code": final_diag[0], "main_diag_name": final_diag[1],
                "key_disease": int(final_diag[0] in _KEY_CODES), "los_days": max(1, (discharge_t.date() - t.date()).days),
                "drg_code": drg_code if coded_ok else None, "drg_name": drg_name if coded_ok else None,
                "drg_weight": weight if coded_ok else None, "coded_at": coded if coded_ok else None,
                "total_cost": total, "created_at": discharge_t + timedelta(minutes=rng.randint(1, 20)),
                "updated_at": coded if coded_ok else discharge_t + timedelta(minutes=20)})
            disc_row = self.rows["discharges"][-1]
            disc_row["updated_at"] = max(disc_row["updated_at"], disc_row["created_at"])
        else:
            disc_row = None
        if disc_row is not None:  # the HIS's own figure for the stay's charges (住院总费用)
            daily = rng.uniform(800, 3000) * (3 if spec == "icu" else 1)
            theatre = sum({1: 300, 2: 800, 3: 2400, 4: 4100}[o["grade"]] for o in ops)
            disc_row["total_cost"] = _r2(daily * max(1, los) ** 0.8 + theatre)

    def clamp(self) -> None:
        """Nothing is recorded after the cut-off, and updated_at >= created_at everywhere."""
        cutoff = self.cutoff
        for rows in self.rows.values():
            if not rows or "created_at" not in rows[0]:
                continue
            for r in rows:
                if r["created_at"] > cutoff:
                    r["created_at"] = cutoff
                if "updated_at" in r:
                    r["updated_at"] = max(r["created_at"], min(r["updated_at"], cutoff))

    def run(self) -> None:
        self.static()
        expected = sum(d[6] for d in _DEPARTMENTS if d[2] != "ward") * ((self.end - self.start).days + 1)
        for _ in range(max(200, int(expected * 0.4))):
            self.new_patient(self.rng.choices(["child", "female", "male"], weights=[2, 5, 4])[0], (14, 90),
                             datetime.combine(self.start, datetime.min.time()), existing=True)
        self.outpatient()
        self.inpatient()
        self.clamp()


# --------------------------------------------------------------------------------------------- public


def _engine_for(url: str) -> Engine:
    from core.hisdb import with_installed_driver

    engine = create_engine(with_installed_driver(make_url(url if "://" in url else f"sqlite:///{Path(url).resolve()}")))
    if engine.dialect.name == "sqlite":
        @event.listens_for(engine, "connect")
        def _fast(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=OFF")
            cur.execute("PRAGMA synchronous=OFF")
            cur.close()
    return engine


def _remove_sqlite_file(url: str) -> None:
    if "://" not in url:
        path: str | None = url
    else:
        u = make_url(url)
        path = u.database if u.get_backend_name() == "sqlite" and u.database not in (None, "", ":memory:") else None
        if path and path.startswith("file:"):
            path = None
    if path:
        for suffix in ("", "-journal", "-wal", "-shm"):
            Path(path + suffix).unlink(missing_ok=True)


def _sqlite_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat(" ", "seconds")
    if isinstance(value, date):
        return value.isoformat()
    return value


def insert_rows(conn: Any, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` (dicts by column name, missing ones NULL) into ``table`` on ``conn``, fast on SQLite."""
    names = [c.name for c in table.columns]
    if conn.dialect.name == "sqlite":  # fast path: the DBAPI directly, values already in storage format
        sql = f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
        conn.exec_driver_sql(sql, [tuple(_sqlite_value(r.get(n)) for n in names) for r in rows])
        return
    clean = [{n: r.get(n) for n in names} for r in rows]
    for i in range(0, len(clean), 20000):
        conn.execute(table.insert(), clean[i:i + 20000])


def write_tables(conn: Any, tables: MetaData, rows: dict[str, list[dict[str, Any]]],
                 indexes: list[tuple[str, str, tuple[str, ...]]] = ()) -> None:
    """Create ``tables`` afresh on ``conn`` and insert each one's generated rows in primary-key order
    (reproducible files), then the ``indexes`` (name, table, columns)."""
    tables.drop_all(conn)
    tables.create_all(conn)
    for table in tables.sorted_tables:
        table_rows = rows.get(table.name)
        if table_rows:
            pk = [c.name for c in table.primary_key.columns]
            table_rows.sort(key=lambda r: tuple(r[k] for k in pk))
            insert_rows(conn, table, table_rows)
    for name, table_name, columns in indexes:
        conn.exec_driver_sql(f"CREATE INDEX {name} ON {table_name} ({', '.join(columns)})")


def now_shanghai() -> datetime:
    """The current Asia/Shanghai wall-clock time, naive, to the second."""
    return datetime.now(SHANGHAI).replace(tzinfo=None, microsecond=0)


def generate(
    url: str,
    *,
    start: date,
    end: date,
    seed: int = 7,
    org_code: str = DEFAULT_ORG_CODE,
    org_name: str = DEFAULT_ORG_NAME,
    now: datetime | None = None,
    plugin_seeds: bool = True,
) -> dict[str, int]:
    """(Re)create the demo hospital database at ``url`` (file path or SQLAlchemy URL) for ``start``..``end``.

    No event is later than ``min(end 23:59:59, now)``; ``now`` defaults to the current Asia/Shanghai time,
    so a range in the past is fully deterministic for a seed.  Then every installed plugin adds its own
    tables and rows (hook ``seed_demo_hospital``) in the same transaction.  Returns the row count per table.
    """
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    if len(org_code) != 12:
        raise ValueError(f"org_code must be 12 characters (定点医药机构编号), got {org_code!r}")
    cutoff = min(datetime.combine(end, datetime.max.time()), now or now_shanghai()).replace(microsecond=0)
    if cutoff < datetime.combine(start, datetime.min.time()):
        raise ValueError(f"start {start} is in the future")
    gen = _Gen(start, end, seed, org_code, org_name, cutoff)
    gen.run()
    _remove_sqlite_file(url)
    engine = _engine_for(url)
    try:
        with engine.begin() as conn:
            write_tables(conn, metadata, gen.rows, INDEXES)
            seeded = _plugin_seeds(conn, start, end) if plugin_seeds else {}
    finally:
        engine.dispose()
    return {**{t.name: len(gen.rows[t.name]) for t in metadata.sorted_tables}, **seeded}


def _plugin_seeds(conn: Any, start: date, end: date) -> dict[str, int]:
    """Each plugin's own demo HIS tables and rows (hook ``seed_demo_hospital``)."""
    from core.plugins import registry

    return registry().seed_demo_hospital(conn, start, end)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo.hospital", description=__doc__.split("\n\n")[0])
    parser.add_argument("target", help="SQLite file path or SQLAlchemy URL (it is dropped and recreated)")
    parser.add_argument("--days", type=int, default=92, help="days up to today (Asia/Shanghai), default 92")
    parser.add_argument("--start", type=date.fromisoformat, help="first day (YYYY-MM-DD); overrides --days")
    parser.add_argument("--end", type=date.fromisoformat, help="last day (YYYY-MM-DD), default today")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--org-code", default=DEFAULT_ORG_CODE)
    args = parser.parse_args(argv)
    end = args.end or now_shanghai().date()
    start = args.start or end - timedelta(days=args.days - 1)
    began = time.monotonic()
    counts = generate(args.target, start=start, end=end, seed=args.seed, org_code=args.org_code)
    width = max(len(k) for k in counts)
    for name, count in counts.items():
        print(f"{name:<{width}}  {count:>8}")
    print(f"{start}..{end} seed={args.seed}: {sum(counts.values())} rows in {time.monotonic() - began:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
