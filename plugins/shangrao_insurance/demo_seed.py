"""The demo hospital's medical-insurance records (``seed_demo_hospital(connection, start, end)``, called
after ``demo.hospital`` has written its tables, on the same connection).

Built from the shared tables: every insured registration (``registrations.fee_category = 'insured'``) and
about 95% of the insured patients' stays get a visit (就诊), fee items (the consultation, the
prescriptions of the visit, tests; in hospital bed, nursing, orders, tests, operations day by day) and,
once over, a settlement; some outpatient diagnoses are filed chronic diseases (门诊慢特病, med_type 14).
Reproducible: ``random.Random`` seeded with the demo's seed. Same conventions as ``demo.hospital``
(naive Asia/Shanghai times, NUMERIC money, nothing after ``data_until``, ``updated_at`` the watermark).

Tables (national lower-case field names of the Jiangxi medical-insurance platform; person demographics
live only in ``patients``, join on ``patient_id``):

insu_visits        mdtrt_id PK (就诊ID, 28 chars) + the mdtrt_d fields under their national lower-case names:
                   medins_setl_id, psn_no, psn_insu_rlts_id, insutype, psn_type, cvlserv_flag, cvlserv_lv,
                   sp_psn_type, sp_psn_type_lv, clct_grde, flxempe_flag, nwb_flag, insu_admdvs, emp_no, emp_name,
                   emp_type, econ_type, afil_indu, afil_rlts, emp_mgt_type, pay_loc ('2' 本地, '3' 省内异地, '4'
                   跨省异地), hosp_lv, fix_blng_admdvs, lmtpric_hosp_lv, dedc_hosp_lv, begntime, endtime,
                   mdtrt_cert_type ('01' 电子凭证 '02' 身份证 '03' 社保卡), mdtrt_cert_no, med_type ('11' 普通门诊,
                   '13' 急诊, '14' 门诊慢特病, '21' 普通住院, '52' 生育住院), rloc_type, ars_year_ipt_flag,
                   pre_pay_flag, year, refl_old_mdtrt_id, ipt_otp_no (reg_id or adm_id), medrcdno, chfpdr_code,
                   chfpdr_name, adm_diag_dscr, adm_dept_codg, adm_dept_name, adm_bed, wardarea_bed,
                   traf_dept_flag, dscg_maindiag_code, dscg_maindiag_name, dscg_dept_codg, dscg_dept_name,
                   dscg_bed, dscg_way, main_cond_dscr, dise_no, dise_name, oprn_oprt_code, oprn_oprt_name,
                   otp_diag_info, inhosp_stas ('1' 在院, '0' 出院), die_date, ipt_days, geso_val, birctrl_type,
                   fetts, fetus_cnt, matn_type, prey_time, latechb_flag, pret_flag, fpsc_no, birctrl_matn_date,
                   cop_flag, trt_dcla_detl_sn, vali_flag ('1' valid, '0' = cancelled visit), memo, rid,
                   crter_id, crter_name, crte_optins_no, opter_id, opter_name, opt_time, optins_no, poolarea_no,
                   adm_caty, dscg_caty, ttp_pay_flag, ttp_pay_prop, dise_type_code, same_dise_adm_flag,
                   quts_type, dept_scene_id; plus patient_id ->patients (PSN_NAME, CERTNO, PSN_CERT_TYPE, GEND,
                   NATY, BRDY, TEL, ADDR, CONER_NAME come from there), age (4,1 at begntime), reg_id, adm_id,
                   created_at (CRTE_TIME), updated_at (UPDT_TIME).  FIXMEDINS_CODE/NAME: hospital_info.
insu_settlements   setl_id PK (28 chars) + setl_d fields: mdtrt_id ->insu_visits, patient_id, psn_no,
                   psn_insu_rlts_id, insutype, psn_type, age, fix_blng_admdvs, setl_time, med_type,
                   medfee_sumamt, fulamt_ownpay_amt, overlmt_selfpay, preselfpay_amt, inscp_amt, hifp_pay,
                   pool_prop_selfpay (5,4 ratio), fund_pay_sumamt, psn_pay, acct_pay (all 16,2; medfee_sumamt =
                   SUM of its fee items), medins_setl_id, clr_type, vali_flag ('1'; '0' = reversed: a new
                   settlement then replaces it and the fee items point to the new one), created_at,
                   updated_at.
insu_fee_items     bkkp_sn PK (记账流水号) + fee_list_d fields: mdtrt_id ->insu_visits, setl_id (NULL until
                   settled), fee_ocur_time, rx_drord_no (rx_no or inpatient order no), medins_list_codg
                   ->charge_items (HILIST_CODE/NAME, LIST_TYPE, MED_LIST_CODG, MEDINS_LIST_NAME,
                   MED_CHRGITM_TYPE, CHRGITM_LV come from there), cnt (16,4), pric (16,6),
                   det_item_fee_sumamt (16,2 = ROUND(cnt*pric, 2)), created_at (CRTE_TIME), updated_at (set
                   when settled or corrected).  PSN_NO, PSN_INSU_RLTS_ID, INSU_ADMDVS, PAY_LOC, MED_TYPE:
                   join insu_visits.
chronic_disease_catalog  opsp_dise_code PK (门诊慢特病病种, e.g. M03900), opsp_dise_name, icd_prefix.
chronic_disease_diagnoses  id PK, patient_id, opsp_dise_code, opsp_dise_name, icd_code, diag_date
                   (hosp_ide_date), doctor_code (diag_dr_codg = doctors.insu_dr_code), dept_code, begndate,
                   enddate, filing_status (pending = candidate for 2503 | filed | revoked), trt_dcla_detl_sn
                   (when filed), created_at, updated_at.
"""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Column, Date, Integer, MetaData, Numeric, String, Table, text

from demo.hospital import CHARGE_ITEM_USES, DT, MONEY, PRICE, QTY, write_tables

metadata = MetaData()


def _s(name: str, n: int = 30, **kw: Any) -> Column:
    return Column(name, String(n), **kw)


def _stamps() -> list[Column]:
    return [Column("created_at", DT, nullable=False), Column("updated_at", DT, nullable=False)]


_VISIT_STR_COLS: list[tuple[str, int]] = [
    ("medins_setl_id", 30), ("psn_no", 30), ("psn_insu_rlts_id", 20), ("insutype", 6), ("psn_type", 6),
    ("cvlserv_flag", 3), ("cvlserv_lv", 6), ("sp_psn_type", 6), ("sp_psn_type_lv", 3), ("clct_grde", 3),
    ("flxempe_flag", 3), ("nwb_flag", 3), ("insu_admdvs", 6), ("emp_no", 40), ("emp_name", 200),
    ("emp_type", 6), ("econ_type", 6), ("afil_indu", 6), ("afil_rlts", 6), ("emp_mgt_type", 6), ("pay_loc", 6),
    ("hosp_lv", 6), ("fix_blng_admdvs", 6), ("lmtpric_hosp_lv", 6), ("dedc_hosp_lv", 6),
    ("mdtrt_cert_type", 3), ("mdtrt_cert_no", 50), ("med_type", 6), ("rloc_type", 6),
    ("ars_year_ipt_flag", 6), ("pre_pay_flag", 6), ("year", 4), ("refl_old_mdtrt_id", 30), ("ipt_otp_no", 30),
    ("medrcdno", 30), ("chfpdr_code", 30), ("chfpdr_name", 20), ("adm_diag_dscr", 200), ("adm_dept_codg", 30),
    ("adm_dept_name", 100), ("adm_bed", 30), ("wardarea_bed", 50), ("traf_dept_flag", 6),
    ("dscg_maindiag_code", 20), ("dscg_maindiag_name", 100), ("dscg_dept_codg", 30), ("dscg_dept_name", 100),
    ("dscg_bed", 30), ("dscg_way", 3), ("main_cond_dscr", 1000), ("dise_no", 30), ("dise_name", 500),
    ("oprn_oprt_code", 30), ("oprn_oprt_name", 500), ("otp_diag_info", 200), ("inhosp_stas", 3),
    ("birctrl_type", 6), ("matn_type", 6), ("latechb_flag", 3), ("pret_flag", 3), ("fpsc_no", 50),
    ("cop_flag", 3), ("trt_dcla_detl_sn", 30), ("vali_flag", 3), ("memo", 1000), ("rid", 40), ("crter_id", 40),
    ("crter_name", 50), ("crte_optins_no", 40), ("opter_id", 40), ("opter_name", 40), ("optins_no", 20),
    ("poolarea_no", 20), ("adm_caty", 10), ("dscg_caty", 10), ("ttp_pay_flag", 3), ("dise_type_code", 3),
    ("same_dise_adm_flag", 5), ("quts_type", 6), ("dept_scene_id", 6), ("patient_id", 12), ("reg_id", 20),
    ("adm_id", 12),
]
insu_visits = Table(
    "insu_visits", metadata,
    _s("mdtrt_id", 30, primary_key=True),
    *[_s(name, n) for name, n in _VISIT_STR_COLS],
    Column("age", Numeric(4, 1)), Column("begntime", DT, nullable=False), Column("endtime", DT),
    Column("die_date", Date), Column("ipt_days", Integer), Column("geso_val", Integer), Column("fetts", Integer),
    Column("fetus_cnt", Integer), Column("prey_time", DT), Column("birctrl_matn_date", Date),
    Column("opt_time", DT), Column("ttp_pay_prop", Numeric(5, 4)), *_stamps(),
)
insu_settlements = Table(
    "insu_settlements", metadata,
    _s("setl_id", 30, primary_key=True), _s("mdtrt_id", 30, nullable=False), _s("patient_id", 12),
    _s("psn_no", 30), _s("psn_insu_rlts_id", 30), _s("insutype", 6), _s("psn_type", 6),
    Column("age", Numeric(4, 1)), _s("fix_blng_admdvs", 6), Column("setl_time", DT, nullable=False),
    _s("med_type", 6), Column("medfee_sumamt", MONEY), Column("fulamt_ownpay_amt", MONEY),
    Column("overlmt_selfpay", MONEY), Column("preselfpay_amt", MONEY), Column("inscp_amt", MONEY),
    Column("hifp_pay", MONEY), Column("pool_prop_selfpay", Numeric(5, 4)), Column("fund_pay_sumamt", MONEY),
    Column("psn_pay", MONEY), Column("acct_pay", MONEY), _s("medins_setl_id", 30), _s("clr_type", 6),
    _s("vali_flag", 3), *_stamps(),
)
insu_fee_items = Table(
    "insu_fee_items", metadata,
    _s("bkkp_sn", 30, primary_key=True), _s("mdtrt_id", 30, nullable=False), _s("setl_id", 30),
    Column("fee_ocur_time", DT, nullable=False), _s("rx_drord_no", 30), _s("medins_list_codg", 20),
    Column("cnt", QTY), Column("pric", PRICE), Column("det_item_fee_sumamt", MONEY), *_stamps(),
)
chronic_disease_catalog = Table(
    "chronic_disease_catalog", metadata,
    _s("opsp_dise_code", 30, primary_key=True), _s("opsp_dise_name", 100), _s("icd_prefix", 20),
)
chronic_disease_diagnoses = Table(
    "chronic_disease_diagnoses", metadata,
    Column("id", Integer, primary_key=True), _s("patient_id", 12), _s("opsp_dise_code", 30),
    _s("opsp_dise_name", 100), _s("icd_code", 20), Column("diag_date", Date), _s("doctor_code", 10),
    _s("dept_code", 10), Column("begndate", Date), Column("enddate", Date), _s("filing_status", 10),
    _s("trt_dcla_detl_sn", 30), *_stamps(),
)
INDEXES: list[tuple[str, str, tuple[str, ...]]] = [
    ("ix_insu_visits_updated", "insu_visits", ("updated_at",)),
    ("ix_insu_settlements_updated", "insu_settlements", ("updated_at",)),
    ("ix_insu_settlements_mdtrt", "insu_settlements", ("mdtrt_id",)),
    ("ix_insu_fee_items_updated", "insu_fee_items", ("updated_at",)),
]

CHRONIC = [  # opsp_dise_code, name, ICD prefix
    ("M03900", "高血压", "I10"), ("M01600", "糖尿病", "E11"), ("M03300", "冠心病", "I25"),
    ("M05300", "慢性阻塞性肺疾病", "J44"), ("M04800", "脑血管意外后遗症", "I69"), ("M00500", "恶性肿瘤门诊治疗", "C"),
    ("M02300", "精神分裂症", "F20"), ("M07800", "慢性肾功能衰竭", "N18"),
]


def _r2(x: float) -> float:
    return round(x + 1e-9, 2)


def _dt(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def _date(value: Any) -> date | None:
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def _rows(connection, sql: str) -> list[dict[str, Any]]:
    return [dict(r) for r in connection.execute(text(sql)).mappings()]


class _Insurance:
    def __init__(self, connection, rng: random.Random, cutoff: datetime):
        self.conn, self.rng, self.cutoff = connection, rng, cutoff
        self.rows: dict[str, list[dict[str, Any]]] = {t.name: [] for t in metadata.sorted_tables}
        self.seq: dict[str, int] = {}
        self.chronic_filed: dict[tuple[str, str], dict[str, Any]] = {}  # (patient_id, icd prefix) -> row
        info = _rows(connection, "SELECT org_code, admdvs, poolarea_no, hosp_lv FROM hospital_info")[0]
        self.org_code, self.admdvs, self.poolarea, self.hosp_lv = (
            info["org_code"], info["admdvs"], info["poolarea_no"], info["hosp_lv"])
        self.patients = {p["patient_id"]: p for p in _rows(connection, """
            SELECT patient_id, birth_date, id_number, insu_card_no, psn_no, psn_insu_rlts_id, insutype, psn_type,
                   insu_admdvs, emp_no, emp_name, cvlserv_flag, flxempe_flag FROM patients""")}
        for p in self.patients.values():
            p["birth_date"] = _date(p["birth_date"])
        self.depts = {d["dept_code"]: d for d in _rows(
            connection, "SELECT dept_code, dept_name, dept_type, specialty, insu_caty FROM departments")}
        self.doctor_name = {d["doctor_code"]: d["name"] for d in _rows(connection, "SELECT doctor_code, name FROM doctors")}
        self.items = {i["medins_list_codg"]: (float(i["price"]), i["chrgitm_lv"], i["unit"], i["med_chrgitm_type"])
                      for i in _rows(connection, "SELECT medins_list_codg, price, chrgitm_lv, unit, med_chrgitm_type "
                                                 "FROM charge_items")}
        self.uses = {tag: [c for c in codes if c in self.items] for tag, codes in CHARGE_ITEM_USES.items()}

    def next(self, key: str) -> int:
        self.seq[key] = self.seq.get(key, 0) + 1
        return self.seq[key]

    def mdtrt_id(self, when: datetime) -> str:
        return f"{self.poolarea}M{when:%Y%m%d%H%M%S}{self.next('mdtrt'):07d}"

    def setl_id(self, when: datetime) -> str:
        return f"{self.poolarea}S{when:%Y%m%d%H%M%S}{self.next('setl'):07d}"

    def pool(self, spec: str) -> list[str]:
        return self.uses.get(spec) or self.uses["general"]

    # -- visits, fees, settlements
    def visit(self, p: dict[str, Any], begin: datetime, med_type: str, dept: str, doctor: str,
              **extra: Any) -> dict[str, Any]:
        rng = self.rng
        admdvs = p["insu_admdvs"]
        pay_loc = "2" if admdvs.startswith(self.poolarea[:4]) else ("3" if admdvs[:2] == self.poolarea[:2] else "4")
        cert_type = rng.choices(["01", "02", "03"], weights=[5, 2, 3])[0]
        cert_no = {"01": f"E{rng.getrandbits(96):024X}", "02": p["id_number"], "03": p["insu_card_no"]}[cert_type]
        employee = p["insutype"] == "310"
        d = self.depts[dept]
        row: dict[str, Any] = {name: None for name, _ in _VISIT_STR_COLS}
        row.update({
            "mdtrt_id": self.mdtrt_id(begin), "psn_no": p["psn_no"], "psn_insu_rlts_id": p["psn_insu_rlts_id"],
            "insutype": p["insutype"], "psn_type": p["psn_type"], "cvlserv_flag": p["cvlserv_flag"],
            "cvlserv_lv": "1" if p["cvlserv_flag"] == "1" else None, "sp_psn_type": None,
            "clct_grde": None if employee else "1",
            "flxempe_flag": p["flxempe_flag"], "nwb_flag": "0", "insu_admdvs": admdvs, "emp_no": p["emp_no"],
            "emp_name": p["emp_name"], "emp_type": "10" if employee else None,
            "econ_type": "160" if employee else None, "afil_indu": "9900" if employee else None,
            "afil_rlts": "9" if employee else None,
            "emp_mgt_type": "1" if employee else None, "pay_loc": pay_loc, "hosp_lv": self.hosp_lv,
            "fix_blng_admdvs": self.admdvs, "lmtpric_hosp_lv": self.hosp_lv, "dedc_hosp_lv": self.hosp_lv,
            "mdtrt_cert_type": cert_type, "mdtrt_cert_no": cert_no, "med_type": med_type, "rloc_type": None,
            "ars_year_ipt_flag": "0", "pre_pay_flag": "0", "year": str(begin.year), "medrcdno": p["patient_id"],
            "chfpdr_code": doctor, "chfpdr_name": self.doctor_name.get(doctor), "adm_dept_codg": dept,
            "adm_dept_name": d["dept_name"], "adm_caty": d["insu_caty"], "inhosp_stas": "0", "vali_flag": "1",
            "rid": f"{rng.getrandbits(128):032x}",
            "crter_id": "SF" + doctor, "crter_name": "收费员", "crte_optins_no": self.admdvs,
            "opter_id": "SF" + doctor, "opter_name": "收费员", "optins_no": self.admdvs,
            "poolarea_no": admdvs if pay_loc == "2" else self.poolarea, "ttp_pay_flag": "0", "dept_scene_id": None,
            "patient_id": p["patient_id"], "age": round((begin.date() - p["birth_date"]).days / 365.25, 1),
            "begntime": begin, "endtime": None, "die_date": None, "ipt_days": None, "geso_val": None,
            "fetts": None, "fetus_cnt": None, "prey_time": None, "birctrl_matn_date": None, "opt_time": begin,
            "ttp_pay_prop": None, "created_at": begin + timedelta(seconds=rng.randint(5, 90)),
        })
        row.update(extra)
        row["updated_at"] = row["created_at"]
        self.rows["insu_visits"].append(row)
        return row

    def fee(self, visit: dict[str, Any], item_code: str, cnt: float, when: datetime, rx: str | None,
            created: datetime) -> dict[str, Any]:
        pric = self.items[item_code][0]
        row = {
            "bkkp_sn": f"JZ{when:%Y%m%d}{self.next('bkkp'):08d}", "mdtrt_id": visit["mdtrt_id"], "setl_id": None,
            "fee_ocur_time": when, "rx_drord_no": rx, "medins_list_codg": item_code, "cnt": round(cnt, 4),
            "pric": pric, "det_item_fee_sumamt": _r2(round(cnt, 4) * pric), "created_at": created,
            "updated_at": created,
        }
        if self.rng.random() < 0.03:  # corrected later (quantity fixed by the ward / pharmacy)
            fixed = created + timedelta(minutes=self.rng.randint(20, 36 * 60))
            if fixed <= self.cutoff:
                row["cnt"] = round(max(1.0, cnt - 1) if cnt >= 2 else cnt, 4)
                row["det_item_fee_sumamt"] = _r2(row["cnt"] * pric)
                row["updated_at"] = fixed
        self.rows["insu_fee_items"].append(row)
        return row

    def settle(self, visit: dict[str, Any], fees: list[dict[str, Any]], when: datetime, inpatient: bool) -> None:
        """Settle a visit at ``when`` (if not after the cut-off); a few settlements are reversed and redone."""
        rng = self.rng
        if when > self.cutoff or not fees:
            return
        total = own = cls_b = 0.0
        for f in fees:
            amt = f["det_item_fee_sumamt"]
            total += amt
            lv = self.items[f["medins_list_codg"]][1]
            own += amt if lv == "03" else 0
            cls_b += amt if lv == "02" else 0
        total, own = _r2(total), _r2(own)
        pre = _r2(cls_b * 0.1)
        over = _r2(total * rng.uniform(0.005, 0.04)) if rng.random() < 0.06 else 0.0
        inscp = _r2(max(0.0, total - own - pre - over))
        employee = visit["insutype"] == "310"
        if inpatient:
            ratio = (0.90 if visit["psn_type"] == "12" else 0.85) if employee else 0.70
            deductible = 600.0 if employee else 800.0
        else:
            ratio, deductible = (0.60 if employee else 0.50), 0.0
        if visit["pay_loc"] != "2":
            ratio -= 0.1
        hifp = _r2(max(0.0, inscp - deductible) * ratio)
        fund = _r2(hifp + (_r2((inscp - hifp) * 0.3) if visit["cvlserv_flag"] == "1" else 0.0))
        psn = _r2(total - fund)
        acct = _r2(min(psn, rng.choice([0.0, psn, psn * 0.5, 200.0]))) if employee else 0.0
        row = {
            "setl_id": self.setl_id(when), "mdtrt_id": visit["mdtrt_id"], "patient_id": visit["patient_id"],
            "psn_no": visit["psn_no"], "psn_insu_rlts_id": visit["psn_insu_rlts_id"], "insutype": visit["insutype"],
            "psn_type": visit["psn_type"], "age": visit["age"], "fix_blng_admdvs": self.admdvs,
            "setl_time": when, "med_type": visit["med_type"], "medfee_sumamt": total, "fulamt_ownpay_amt": own,
            "overlmt_selfpay": over, "preselfpay_amt": pre, "inscp_amt": inscp, "hifp_pay": hifp,
            "pool_prop_selfpay": round(ratio, 4), "fund_pay_sumamt": fund, "psn_pay": psn, "acct_pay": acct,
            "medins_setl_id": f"{self.org_code}{when:%Y%m%d}{self.next('msetl'):08d}",
            "clr_type": "21" if inpatient else "11", "vali_flag": "1",
            "created_at": when + timedelta(seconds=rng.randint(1, 20)),
        }
        row["updated_at"] = row["created_at"]
        self.rows["insu_settlements"].append(row)
        final = row
        if rng.random() < 0.01:  # reversed (e.g. wrong med_type) and settled again
            redo = row["created_at"] + timedelta(minutes=rng.randint(10, 3 * 24 * 60))
            if redo <= self.cutoff:
                row["vali_flag"], row["updated_at"] = "0", redo
                final = dict(row, setl_id=self.setl_id(redo), setl_time=redo, vali_flag="1",
                             medins_setl_id=f"{self.org_code}{redo:%Y%m%d}{self.next('msetl'):08d}",
                             created_at=redo + timedelta(seconds=5), updated_at=redo + timedelta(seconds=5))
                self.rows["insu_settlements"].append(final)
        visit["medins_setl_id"] = final["medins_setl_id"]
        visit["endtime"] = visit["endtime"] or when
        visit["updated_at"] = max(visit["updated_at"], final["created_at"])
        for f in fees:
            f["setl_id"] = final["setl_id"]
            f["updated_at"] = max(f["updated_at"], final["created_at"])

    # -- chronic diseases (门诊慢特病)
    def chronic_for(self, p: dict[str, Any], diag_code: str, t: datetime, doctor: str,
                    dept: str) -> dict[str, Any] | None:
        rng = self.rng
        chronic = next((c for c in CHRONIC if diag_code.startswith(c[2])), None)
        if chronic is None:
            return None
        key = (p["patient_id"], chronic[2])
        row = self.chronic_filed.get(key)
        if row is None and rng.random() < 0.5:
            earlier = rng.random() < 0.6
            diag_day = t.date() - timedelta(days=rng.randint(40, 900)) if earlier else t.date()
            status = "filed" if earlier else rng.choices(["pending", "filed", "revoked"], weights=[8, 3, 0.4])[0]
            created = datetime.combine(diag_day, t.time()) + timedelta(minutes=20)
            updated = created + timedelta(days=rng.randint(1, 10)) if status != "pending" else created
            if updated > self.cutoff:
                status, updated = "pending", created
            row = {
                "id": self.next("chronic"), "patient_id": p["patient_id"], "opsp_dise_code": chronic[0],
                "opsp_dise_name": chronic[1], "icd_code": diag_code, "diag_date": diag_day,
                "doctor_code": doctor, "dept_code": dept, "begndate": diag_day,
                "enddate": diag_day + timedelta(days=rng.choice([365, 730]) - 1), "filing_status": status,
                "trt_dcla_detl_sn": f"{self.poolarea}{diag_day:%Y%m%d}{rng.randrange(10**10):010d}"
                if status != "pending" else None,
                "created_at": created, "updated_at": updated}
            self.chronic_filed[key] = row
            self.rows["chronic_disease_diagnoses"].append(row)
        return row

    # -- outpatient: the insured registrations, their prescriptions and tests
    def outpatient(self) -> None:
        rng = self.rng
        prescriptions: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for rx in _rows(self.conn, "SELECT rx_no, reg_id, rx_time, rx_type, item_count FROM prescriptions "
                                   "WHERE status = 'valid' ORDER BY rx_time, rx_no"):
            prescriptions[rx["reg_id"]].append(rx)
        infused: dict[str, list[str]] = defaultdict(list)
        for row in _rows(self.conn, "SELECT rx_no, drug_code FROM infusions ORDER BY infusion_id"):
            infused[row["rx_no"]].append(row["drug_code"])
        for reg in _rows(self.conn, """
                SELECT reg_id, patient_id, dept_code, doctor_code, visit_type, reg_time, status, cancel_time,
                       diag_code, diag_name FROM registrations WHERE fee_category = 'insured'
                ORDER BY reg_time, reg_id"""):
            p = self.patients[reg["patient_id"]]
            if p["psn_no"] is None:
                continue
            t, dept, doctor = _dt(reg["reg_time"]), reg["dept_code"], reg["doctor_code"]
            cancelled = reg["status"] == "cancelled"
            med_type = "13" if reg["visit_type"] == "emergency" else "11"
            extra: dict[str, Any] = {"ipt_otp_no": reg["reg_id"], "reg_id": reg["reg_id"], "otp_diag_info": None}
            chronic = None if cancelled or not reg["diag_code"] else self.chronic_for(
                p, reg["diag_code"], t, doctor, dept)
            if chronic is not None and chronic["filing_status"] == "filed" and rng.random() < 0.8:
                med_type = "14"
                extra.update(dise_no=chronic["opsp_dise_code"], dise_name=chronic["opsp_dise_name"],
                             trt_dcla_detl_sn=chronic["trt_dcla_detl_sn"])
            if not cancelled:
                extra["otp_diag_info"] = f"{reg['diag_code']}:{reg['diag_name']}"
            visit = self.visit(p, t, med_type, dept, doctor, **extra)
            if cancelled:
                visit["vali_flag"], visit["updated_at"], visit["memo"] = "0", _dt(reg["cancel_time"]), "退号"
                continue
            fees: list[dict[str, Any]] = []
            seen = t + timedelta(minutes=rng.randint(4, 30))
            if seen <= self.cutoff:
                consult = "XM0002" if reg["visit_type"] in ("emergency", "fever") else "XM0001"
                fees.append(self.fee(visit, consult, 1, t, None, t + timedelta(seconds=rng.randint(20, 120))))
            spec = self.depts[dept]["specialty"]
            for rx in prescriptions.get(reg["reg_id"], []):
                self.prescription(visit, rx, spec, infused.get(rx["rx_no"], []), fees)
            if rng.random() < 0.35:
                lab_time = seen + timedelta(minutes=rng.randint(1, 10))
                if lab_time <= self.cutoff:
                    for code in rng.sample(self.uses["lab"] + self.uses["exam"], rng.randint(1, 3)):
                        fees.append(self.fee(visit, code, 1, lab_time, None, lab_time + timedelta(minutes=1)))
            if fees:
                last = max(f["fee_ocur_time"] for f in fees)
                self.settle(visit, fees, last + timedelta(minutes=rng.randint(2, 25)), inpatient=False)

    def prescription(self, visit: dict[str, Any], rx: dict[str, Any], spec: str, infused: list[str],
                     fees: list[dict[str, Any]]) -> None:
        """The fee items of one prescription: its ``item_count`` lines of the kind (``rx_type``) the
        department prescribes; an infusion (rows in ``infusions``) adds its drug, carrier, fee and set."""
        rng = self.rng
        when, rx_no = _dt(rx["rx_time"]), rx["rx_no"]
        lines: list[tuple[str, float]] = []
        n = max(1, int(rx["item_count"] or 1) - (2 if infused else 0))
        if rx["rx_type"] == "herbal":
            doses = rng.choice([5, 7, 7, 14])
            for code in rng.sample(self.uses["herbal"], min(n, len(self.uses["herbal"]))):
                lines.append((code, rng.choice([6, 9, 10, 12, 12.5, 15, 20, 30]) * doses))
        else:
            pool = self.pool(spec)
            if rx["rx_type"] == "chinese_patent":
                pool = [c for c in pool if self.items[c][3] == "11"] or pool
            for code in rng.sample(pool, min(len(pool), n)):
                unit = self.items[code][2]
                lines.append((code, rng.choice([14, 21, 28, 30, 42]) if unit in ("片", "粒") else rng.choice([1, 1, 2, 3, 6])))
        if infused:
            doses = len(infused)
            lines += [(infused[0], doses), (rng.choice(self.uses["iv_base"]), doses), ("XM0301", doses),
                      ("HC0001", doses)]
        created = when + timedelta(seconds=rng.randint(30, 400))
        for code, qty in lines:
            fees.append(self.fee(visit, code, qty, when, rx_no, created))

    # -- inpatient: the insured patients' stays, billed day by day
    def inpatient(self) -> None:
        rng = self.rng
        ops: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for op in _rows(self.conn, "SELECT adm_id, oprn_code, oprn_name, grade, start_time, end_time FROM surgeries "
                                   "WHERE adm_id IS NOT NULL ORDER BY start_time, surgery_id"):
            op["start_time"], op["end_time"] = _dt(op["start_time"]), _dt(op["end_time"])
            ops[op["adm_id"]].append(op)
        for stay in _rows(self.conn, """
                SELECT a.adm_id, a.patient_id, a.dept_code, a.doctor_code, a.bed_no, a.admit_time,
                       a.admit_diag_code, a.admit_diag_name, d.discharge_time, d.dept_code AS dscg_dept,
                       d.bed_no AS dscg_bed, d.discharge_way, d.main_diag_code, d.main_diag_name, d.los_days
                FROM admissions a LEFT JOIN discharges d ON d.adm_id = a.adm_id
                ORDER BY a.admit_time, a.adm_id"""):
            p = self.patients[stay["patient_id"]]
            if p["psn_no"] is None or rng.random() > 0.95:
                continue
            self.stay(p, stay, ops.get(stay["adm_id"], []))

    def stay(self, p: dict[str, Any], stay: dict[str, Any], ops: list[dict[str, Any]]) -> None:
        rng = self.rng
        adm_id, ward, doctor, bed = stay["adm_id"], stay["dept_code"], stay["doctor_code"], stay["bed_no"]
        t = _dt(stay["admit_time"])
        discharge_t = _dt(stay["discharge_time"])
        spec = self.depts[ward]["specialty"]
        extra: dict[str, Any] = {
            "ipt_otp_no": adm_id, "adm_id": adm_id, "adm_diag_dscr": stay["admit_diag_name"], "adm_bed": bed,
            "wardarea_bed": f"{self.depts[ward]['dept_name']}{bed[-4:]}", "inhosp_stas": "1", "main_cond_dscr": None}
        if spec == "obs":
            extra.update(geso_val=rng.randint(37, 41), fetts=rng.choice([1, 1, 2, 2, 3]), fetus_cnt=1,
                         matn_type="2" if stay["admit_diag_code"] == "O82.000" else "1", latechb_flag="0",
                         pret_flag="0", birctrl_matn_date=None)
        visit = self.visit(p, t, "52" if spec == "obs" else "21", ward, doctor, **extra)
        fees: list[dict[str, Any]] = []
        end_t = discharge_t or self.cutoff
        day = t.date()
        order_no = 0
        icu = spec == "icu"
        while True:
            day_start = datetime(day.year, day.month, day.day)
            if day_start > end_t:
                break
            bill = max(t, day_start + timedelta(minutes=rng.randint(5, 50)))
            if bill > end_t:
                break

            def add(code: str, qty: float, when: datetime, rx: str | None = None) -> None:
                if when <= end_t and when <= self.cutoff:
                    created = min(self.cutoff, when + timedelta(minutes=rng.randint(1, 120)))
                    fees.append(self.fee(visit, code, qty, when, rx, max(created, when)))

            if not (discharge_t and day == discharge_t.date() and day != t.date()):
                add("XM0402" if icu else "XM0401", 1, bill)
                add("XM0404" if icu else "XM0403", 24 if icu else 1, bill)
            morning = day_start + timedelta(hours=8, minutes=rng.randint(0, 110))
            if morning < t:
                morning = t + timedelta(minutes=rng.randint(20, 90))
            order_no += 1
            rx = f"YZ{adm_id[2:]}{order_no:04d}"
            if rng.random() < 0.55:
                add(rng.choice(self.uses["iv"]), rng.choice([1, 2, 2, 3]), morning, rx)
                add(rng.choice(self.uses["iv_base"]), rng.choice([1, 2]), morning, rx)
                add("XM0301", 1, morning, rx)
            if rng.random() < 0.5:
                code = rng.choice(self.pool(spec))
                add(code, rng.choice([1, 2, 3]) if self.items[code][2] not in ("片", "粒") else rng.choice([2, 3, 6]),
                    morning, rx)
            if day == t.date() or rng.random() < 0.12:
                for code in rng.sample(self.uses["lab"], rng.randint(2, 4) if day == t.date() else 1):
                    add(code, 1, morning - timedelta(minutes=30))
            if day == t.date() or (day - t.date()).days == 1 and rng.random() < 0.6:
                add(rng.choice(self.uses["exam"]), 1, morning + timedelta(hours=2))
            for op in ops:
                if op["start_time"].date() == day and op["end_time"] is not None:
                    add(f"XM050{op['grade']}", 1, op["end_time"])
                    if op["grade"] >= 3:
                        add("XM0505", 1, op["end_time"])
                    if op["oprn_code"] in ("36.0601", "00.6600x008"):
                        add("HC0003", rng.choice([1, 1, 2]), op["end_time"])
                    elif op["oprn_code"] in ("81.5400", "81.5100"):
                        add("HC0004", 1, op["end_time"])
                    elif op["grade"] >= 3 and rng.random() < 0.5:
                        add("HC0005", 1, op["end_time"])
                    add("HC0006", rng.choice([2, 4, 6]), op["end_time"])
            day += timedelta(days=1)
        if discharge_t is None:
            visit["updated_at"] = visit["created_at"]
            return
        way, dscg_ward = stay["discharge_way"], stay["dscg_dept"]
        visit.update({
            "endtime": discharge_t, "dscg_maindiag_code": stay["main_diag_code"],
            "dscg_maindiag_name": stay["main_diag_name"], "dscg_dept_codg": dscg_ward,
            "dscg_dept_name": self.depts[dscg_ward]["dept_name"], "dscg_caty": self.depts[dscg_ward]["insu_caty"],
            "dscg_bed": stay["dscg_bed"], "dscg_way": way, "inhosp_stas": "0",
            "traf_dept_flag": "1" if dscg_ward != ward else "0",
            "ipt_days": max(1, (discharge_t.date() - t.date()).days),
            "die_date": discharge_t.date() if way == "5" else None, "cop_flag": "0",
            "updated_at": discharge_t + timedelta(minutes=rng.randint(1, 10)),
            "main_cond_dscr": f"因{stay['admit_diag_name']}入院，经治疗后{'病情好转' if way != '5' else '抢救无效死亡'}。",
        })
        if ops:
            visit["oprn_oprt_code"], visit["oprn_oprt_name"] = ops[0]["oprn_code"], ops[0]["oprn_name"]
        if spec == "obs":
            los = int(stay["los_days"] or 1)
            visit["birctrl_matn_date"] = (ops[0]["start_time"].date() if ops else
                                          t.date() + timedelta(days=min(1, los - 1)))
        settle_t = discharge_t + timedelta(minutes=rng.randint(-90, 40))
        settle_t = max(settle_t, max((f["fee_ocur_time"] for f in fees), default=t) + timedelta(minutes=1))
        self.settle(visit, fees, settle_t, inpatient=True)
        visit["updated_at"] = max(visit["updated_at"], visit["created_at"])

    def clamp(self) -> None:
        """Nothing is recorded after the cut-off, and updated_at >= created_at everywhere."""
        for rows in self.rows.values():
            for r in rows:
                if "created_at" not in r:
                    continue
                r["created_at"] = min(r["created_at"], self.cutoff)
                if "updated_at" in r:
                    r["updated_at"] = max(r["created_at"], min(r["updated_at"], self.cutoff))

    def run(self) -> None:
        for code, name, prefix in CHRONIC:
            self.rows["chronic_disease_catalog"].append(
                {"opsp_dise_code": code, "opsp_dise_name": name, "icd_prefix": prefix})
        self.outpatient()
        self.inpatient()
        self.clamp()


def seed_demo_hospital(connection, start: date, end: date) -> dict[str, int]:
    """Create and fill the insurance tables from the demo hospital's shared ones (deterministic per the
    demo's seed); returns the row count per table."""
    meta = {k: v for k, v in connection.execute(text("SELECT key, value FROM demo_meta")).all()}
    cutoff = datetime.fromisoformat(meta.get("data_until") or f"{end} 23:59:59")
    gen = _Insurance(connection, random.Random(f"shangrao-{meta.get('seed', '7')}"), cutoff)
    gen.run()
    write_tables(connection, metadata, gen.rows, INDEXES)
    return {table.name: len(gen.rows[table.name]) for table in metadata.sorted_tables}
