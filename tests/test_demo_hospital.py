"""The synthetic hospital database: deterministic, plausible, and rich enough for every plugin's fields."""

from __future__ import annotations

import sqlite3
from datetime import date, datetime
from pathlib import Path

import pytest

from demo import hospital as demo_hospital
from demo.hospital import generate, id_check_digit, metadata, valid_id_number

START, END = date(2025, 3, 3), date(2025, 3, 9)  # Monday .. Sunday

# A sample of CT08.00.002 value meanings (keydata spec, section 六).
NATIONAL_NAMES = {
    "预防保健科", "全科医疗科", "内科", "呼吸内科专业", "消化内科专业", "神经内科专业", "心血管内科专业", "内分泌专业",
    "外科", "普通外科专业", "骨科专业", "妇产科", "妇科专业", "产科专业", "儿科", "眼科", "耳鼻咽喉科", "口腔科",
    "皮肤科", "精神科", "肿瘤科", "急诊医学科", "康复医学科", "重症医学科", "中医科", "内科专业", "感染科",
}


@pytest.fixture(scope="module")
def week_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    path = tmp_path_factory.mktemp("demo") / "his.db"
    counts = generate(str(path), start=START, end=END, seed=7)
    return path, counts


@pytest.fixture()
def db(week_db: tuple[Path, dict[str, int]]) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{week_db[0]}?mode=ro", uri=True)
    yield conn
    conn.close()


def _one(db: sqlite3.Connection, sql: str, *params: object) -> object:
    return db.execute(sql, params).fetchone()[0]


def _tables(conn: sqlite3.Connection) -> list[str]:
    """Every table: the shared ones (``metadata``) and those the plugins' seeds added."""
    return [name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]


def _dump(path: Path) -> dict[str, list[tuple]]:
    conn = sqlite3.connect(path)
    try:
        return {name: conn.execute(f"SELECT * FROM {name} ORDER BY 1").fetchall() for name in _tables(conn)}
    finally:
        conn.close()


def test_generation_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.db", tmp_path / "b.db", tmp_path / "c.db"
    counts_a = generate(str(a), start=date(2025, 1, 6), end=date(2025, 1, 7), seed=3)
    counts_b = generate(f"sqlite:///{b}", start=date(2025, 1, 6), end=date(2025, 1, 7), seed=3)
    generate(str(c), start=date(2025, 1, 6), end=date(2025, 1, 7), seed=4)
    assert counts_a == counts_b
    assert _dump(a) == _dump(b)
    assert {"insu_fee_items", "twopath_applications"} <= set(_dump(a))  # the plugins' seeds are deterministic too
    assert _dump(a)["registrations"] != _dump(c)["registrations"]


def test_regenerating_replaces_the_database(tmp_path: Path) -> None:
    path = tmp_path / "his.db"
    generate(str(path), start=date(2025, 1, 6), end=date(2025, 1, 7))
    counts = generate(str(path), start=date(2025, 1, 6), end=date(2025, 1, 6))
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT COUNT(*) FROM registrations").fetchone()[0] == counts["registrations"]
    assert conn.execute("SELECT MAX(reg_time) FROM registrations").fetchone()[0] < "2025-01-07"
    conn.close()


def test_row_counts_are_plausible(week_db: tuple[Path, dict[str, int]]) -> None:
    counts = week_db[1]
    assert all(counts[t.name] > 0 for t in metadata.sorted_tables), counts
    assert 7 * 150 <= counts["registrations"] <= 7 * 600
    assert counts["prescriptions"] > counts["registrations"] * 0.7
    assert 7 * 15 <= counts["admissions"] <= 7 * 80
    assert counts["insu_fee_items"] > counts["insu_visits"] * 3
    assert 25 <= counts["departments"] <= 35


def test_counts_returned_match_the_tables(week_db: tuple[Path, dict[str, int]], db: sqlite3.Connection) -> None:
    for table, count in week_db[1].items():
        assert _one(db, f"SELECT COUNT(*) FROM {table}") == count


def test_id_numbers_have_valid_check_digits(db: sqlite3.Connection) -> None:
    ids = [r[0] for r in db.execute("SELECT id_number FROM patients")]
    ids += [r[0] for r in db.execute("SELECT agnter_certno FROM twopath_applications WHERE agnter_certno IS NOT NULL")]
    assert ids and all(valid_id_number(i) for i in ids)
    # gender digit agrees with the gender column, birth date agrees with the ID
    for number, gender, birth in db.execute("SELECT id_number, gender, birth_date FROM patients"):
        assert int(number[16]) % 2 == (1 if gender == "1" else 0)
        assert number[6:14] == birth.replace("-", "")
    assert id_check_digit("11010519491231002") == "X"  # GB 11643 example
    assert not valid_id_number("110105194912310020")


def test_departments_have_codes_and_local_names(db: sqlite3.Connection) -> None:
    rows = db.execute("SELECT dept_code, dept_name, dept_type, active FROM departments").fetchall()
    assert all(code and name for code, name, _t, _a in rows)
    assert len({code for code, *_ in rows}) == len(rows)
    assert {t for _c, _n, t, _a in rows} >= {"clinic", "ward", "emergency", "fever"}
    names = {name for _c, name, _t, _a in rows}
    assert len(names - NATIONAL_NAMES) >= 10, "most local names must need mapping"
    assert names & NATIONAL_NAMES, "a few local names happen to equal a national name"
    assert any(active == 0 for *_x, active in rows)
    # inactive departments have no activity in the range
    assert _one(db, "SELECT COUNT(*) FROM registrations r JOIN departments d USING (dept_code) WHERE d.active = 0") == 0


def test_timestamps_are_ordered_and_not_after_the_cutoff(db: sqlite3.Connection) -> None:
    until = _one(db, "SELECT value FROM demo_meta WHERE key = 'data_until'")
    assert until == "2025-03-09 23:59:59"
    for table in _tables(db):
        cols = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        if {"created_at", "updated_at"} <= cols:
            assert _one(db, f"SELECT COUNT(*) FROM {table} WHERE updated_at < created_at") == 0, table
            assert _one(db, f"SELECT COUNT(*) FROM {table} WHERE updated_at > ?", until) == 0, table
        if "created_at" in cols:
            assert _one(db, f"SELECT COUNT(*) FROM {table} WHERE created_at > ?", until) == 0, table
    # some rows change after they are written (incremental extraction must use updated_at)
    for table in ("insu_fee_items", "insu_visits", "insu_settlements", "registrations", "discharges"):
        assert _one(db, f"SELECT COUNT(*) FROM {table} WHERE updated_at > created_at") > 0, table
    assert _one(db, "SELECT COUNT(*) FROM insu_fee_items WHERE created_at < fee_ocur_time") == 0
    assert _one(db, "SELECT typeof(reg_time) || ' ' || length(reg_time) FROM registrations LIMIT 1") == "text 19"


def test_data_covers_every_hour_and_has_weekday_patterns(db: sqlite3.Connection) -> None:
    hours = {r[0] for r in db.execute("SELECT DISTINCT substr(reg_time, 12, 2) FROM registrations")}
    assert hours == {f"{h:02d}" for h in range(24)}
    night = _one(db, "SELECT COUNT(*) FROM registrations WHERE visit_type = 'emergency' AND substr(reg_time, 12, 2) < '06'")
    assert night > 0
    per_day = dict(db.execute(
        "SELECT substr(reg_time, 1, 10), COUNT(*) FROM registrations WHERE visit_type = 'outpatient' GROUP BY 1"))
    assert per_day["2025-03-09"] < per_day["2025-03-04"] * 0.7  # Sunday vs Tuesday
    evening_fever = _one(db, "SELECT COUNT(*) FROM registrations WHERE visit_type = 'fever' "
                             "AND substr(reg_time, 12, 2) BETWEEN '18' AND '22'")
    morning_fever = _one(db, "SELECT COUNT(*) FROM registrations WHERE visit_type = 'fever' "
                             "AND substr(reg_time, 12, 2) BETWEEN '03' AND '07'")
    assert evening_fever > morning_fever


def test_keydata_fields_can_be_derived(db: sqlite3.Connection) -> None:
    day = ("2025-03-05 00:00:00", "2025-03-05 23:59:59")
    daily = {
        "clinicPersonTimes": "SELECT COUNT(*) FROM registrations WHERE visit_type='outpatient' AND status='valid' "
                             "AND reg_time BETWEEN ? AND ?",
        "emerPersonTimes": "SELECT COUNT(*) FROM registrations WHERE visit_type='emergency' AND status='valid' "
                           "AND reg_time BETWEEN ? AND ?",
        "feverPersonTimes": "SELECT COUNT(*) FROM registrations WHERE visit_type='fever' AND status='valid' "
                            "AND reg_time BETWEEN ? AND ?",
        "clinicMediFreq": "SELECT COUNT(*) FROM infusions WHERE status='done' AND exec_time BETWEEN ? AND ?",
        "presCount": "SELECT COUNT(*) FROM prescriptions WHERE status='valid' AND rx_time BETWEEN ? AND ?",
        "enterPersonTimes": "SELECT COUNT(*) FROM admissions WHERE admit_time BETWEEN ? AND ?",
        "outPersonTimes": "SELECT COUNT(*) FROM discharges WHERE discharge_time BETWEEN ? AND ?",
    }
    for field, sql in daily.items():
        assert _one(db, sql, *day) > 0, field
    assert _one(db, "SELECT COUNT(*) FROM registrations WHERE status = 'cancelled'") > 0
    assert _one(db, "SELECT COUNT(*) FROM registrations WHERE visit_type = 'checkup'") > 0
    assert _one(db, "SELECT COUNT(*) FROM registrations WHERE key_disease = 1") > 0
    assert _one(db, "SELECT COUNT(DISTINCT dept_code) FROM registrations WHERE reg_time BETWEEN ? AND ?", *day) > 15
    # monthly
    assert 0.5 < _one(db, "SELECT AVG(drg_weight) FROM discharges") < 3
    grades = {g for (g,) in db.execute(
        "SELECT DISTINCT s.grade FROM surgeries s JOIN discharges d USING (adm_id)")}
    assert {3, 4} <= grades
    assert _one(db, "SELECT COUNT(*) FROM (SELECT adm_id FROM surgeries WHERE adm_id IS NOT NULL "
                    "GROUP BY adm_id HAVING COUNT(*) > 1)") > 0  # several operations, one 台次
    kinds = db.execute("SELECT direction, inbound, partner_is_primary, COUNT(*) FROM referrals GROUP BY 1, 2, 3").fetchall()
    assert {(d, i) for d, i, _p, _n in kinds} >= {("down", 1), ("up", 0), ("down", 0), ("up", 1)}
    beds = dict(db.execute("SELECT bed_type, COUNT(*) FROM beds WHERE closed_on IS NULL GROUP BY 1"))
    assert beds["nursing"] > 0 and beds["psychiatric"] > 0 and beds["general"] > 100
    assert _one(db, "SELECT COUNT(*) FROM beds WHERE closed_on IS NOT NULL") > 0
    assert _one(db, "SELECT hosp_grade FROM hospital_info") in (2, 3)


def test_insurance_tables_fill_the_shangrao_fields(db: sqlite3.Connection) -> None:
    # fee_list_d: every required field comes from fee items + charge_items + insu_visits
    row = db.execute("""
        SELECT f.bkkp_sn, f.mdtrt_id, f.fee_ocur_time, f.setl_id, v.psn_no, v.psn_insu_rlts_id, v.insu_admdvs,
               v.pay_loc, v.med_type, f.cnt, f.pric, f.det_item_fee_sumamt, c.chrgitm_lv, c.hilist_code,
               c.hilist_name, c.list_type, c.med_list_codg, c.medins_list_codg, c.medins_list_name,
               c.med_chrgitm_type, f.created_at
        FROM insu_fee_items f JOIN insu_visits v USING (mdtrt_id) JOIN charge_items c USING (medins_list_codg)
        WHERE f.setl_id IS NOT NULL LIMIT 1""").fetchone()
    assert row is not None and all(v is not None for v in row)
    assert all(len(x) <= 30 for x in (row[0], row[1], row[3], row[4]))
    assert _one(db, "SELECT COUNT(*) FROM insu_fee_items WHERE ABS(ROUND(cnt * pric, 2) - det_item_fee_sumamt) > 0.0001") == 0
    # setl_d: amounts add up and equal the fee items
    assert _one(db, "SELECT COUNT(*) FROM insu_settlements WHERE ABS(medfee_sumamt - fund_pay_sumamt - psn_pay) > 0.001") == 0
    mismatched = _one(db, """
        SELECT COUNT(*) FROM insu_settlements s
        JOIN (SELECT setl_id, SUM(det_item_fee_sumamt) AS total FROM insu_fee_items GROUP BY setl_id) f USING (setl_id)
        WHERE s.vali_flag = '1' AND ABS(s.medfee_sumamt - f.total) > 0.001""")
    assert mismatched == 0
    setl = db.execute("""
        SELECT s.setl_id, s.mdtrt_id, p.name, p.id_type, p.id_number, p.gender, p.birth_date, s.age, s.psn_type,
               s.setl_time, s.medfee_sumamt, s.pool_prop_selfpay, s.created_at
        FROM insu_settlements s JOIN patients p USING (patient_id) LIMIT 1""").fetchone()
    assert all(v is not None for v in setl)
    # mdtrt_d: inpatient visits carry the discharge fields, outpatient visits the diagnosis
    inpatient = db.execute("""
        SELECT mdtrt_id, psn_no, insutype, psn_type, cvlserv_flag, insu_admdvs, pay_loc, hosp_lv, begntime,
               endtime, med_type, adm_dept_codg, adm_dept_name, dscg_dept_codg, dscg_dept_name, dscg_way,
               inhosp_stas, vali_flag, adm_caty, dscg_caty, opt_time, created_at, updated_at, ipt_days
        FROM insu_visits WHERE med_type IN ('21', '52') AND inhosp_stas = '0' LIMIT 1""").fetchone()
    assert inpatient is not None and all(v is not None for v in inpatient)
    assert _one(db, "SELECT COUNT(*) FROM insu_visits WHERE med_type = '11' AND otp_diag_info IS NULL "
                    "AND vali_flag = '1'") == 0
    assert {r[0] for r in db.execute("SELECT DISTINCT insu_admdvs FROM patients WHERE insu_admdvs IS NOT NULL")} >= {
        "361100", "360000"}
    assert _one(db, "SELECT COUNT(*) FROM insu_visits WHERE vali_flag = '0'") > 0
    assert _one(db, "SELECT COUNT(*) FROM insu_fee_items WHERE setl_id IS NULL") > 0  # still in hospital
    assert _one(db, "SELECT MAX(LENGTH(mdtrt_id)) FROM insu_visits") <= 30
    assert _one(db, "SELECT COUNT(DISTINCT LENGTH(org_code)) || LENGTH(org_code) FROM hospital_info") == "112"


def test_twopath_and_chronic_disease_data(db: sqlite3.Connection) -> None:
    app = db.execute("""
        SELECT a.appy_id, p.psn_no, p.name, p.id_number, a.appy_date, a.begndate, a.enddate, d.med_list_codg,
               d.med_list_name, doc.insu_dr_code, doc.name
        FROM twopath_applications a JOIN patients p USING (patient_id)
        JOIN twopath_application_drugs d USING (appy_id) JOIN doctors doc ON doc.doctor_code = a.doctor_code
        LIMIT 1""").fetchone()
    assert app is not None and all(v is not None for v in app)
    assert _one(db, "SELECT COUNT(*) FROM twopath_drugs WHERE active = 1") >= 5
    chronic = db.execute("""
        SELECT p.psn_no, p.insutype, c.opsp_dise_code, c.opsp_dise_name, p.phone, p.address, p.insu_admdvs,
               c.diag_date, doc.insu_dr_code, doc.name, c.begndate, c.enddate
        FROM chronic_disease_diagnoses c JOIN patients p USING (patient_id)
        JOIN doctors doc ON doc.doctor_code = c.doctor_code LIMIT 1""").fetchone()
    assert chronic is not None and all(v is not None for v in chronic)
    assert _one(db, "SELECT COUNT(*) FROM chronic_disease_diagnoses WHERE filing_status = 'pending'") > 0


def test_the_plugins_records_are_built_from_the_shared_tables(db: sqlite3.Connection) -> None:
    """The insurance and two-channel seeds read the shared tables: same patients, visits, stays, prescriptions."""
    insured = _one(db, "SELECT COUNT(*) FROM registrations WHERE fee_category = 'insured'")
    assert insured > 0 and _one(db, "SELECT COUNT(*) FROM insu_visits WHERE reg_id IS NOT NULL") == insured
    assert _one(db, """
        SELECT COUNT(*) FROM insu_visits v JOIN registrations r USING (reg_id)
        WHERE r.fee_category = 'insured' AND r.patient_id = v.patient_id AND r.reg_time = v.begntime
          AND r.dept_code = v.adm_dept_codg AND (v.vali_flag = '0') = (r.status = 'cancelled')""") == insured
    assert _one(db, "SELECT COUNT(*) FROM insu_visits v JOIN patients p USING (patient_id) "
                    "WHERE v.psn_no IS NOT p.psn_no OR v.insutype IS NOT p.insutype") == 0
    stays = _one(db, "SELECT COUNT(*) FROM insu_visits WHERE adm_id IS NOT NULL")
    assert stays > 0 and _one(db, """
        SELECT COUNT(*) FROM insu_visits v JOIN admissions a USING (adm_id)
        WHERE a.patient_id = v.patient_id AND a.admit_time = v.begntime AND a.dept_code = v.adm_dept_codg""") == stays
    assert _one(db, """
        SELECT COUNT(*) FROM insu_visits v JOIN discharges d USING (adm_id)
        WHERE v.inhosp_stas = '0' AND v.endtime = d.discharge_time AND v.dscg_dept_codg = d.dept_code""") == _one(
        db, "SELECT COUNT(*) FROM insu_visits v JOIN discharges d USING (adm_id)")
    # an outpatient fee with a prescription number bills a valid prescription of that registration
    assert _one(db, """
        SELECT COUNT(*) FROM insu_fee_items f JOIN insu_visits v USING (mdtrt_id)
        LEFT JOIN prescriptions rx ON rx.rx_no = f.rx_drord_no
        WHERE v.reg_id IS NOT NULL AND f.rx_drord_no IS NOT NULL
          AND (rx.reg_id IS NOT v.reg_id OR rx.status <> 'valid')""") == 0
    assert _one(db, "SELECT COUNT(DISTINCT rx_drord_no) FROM insu_fee_items WHERE rx_drord_no LIKE 'CF%'") > 0
    assert _one(db, "SELECT COUNT(*) FROM chronic_disease_diagnoses c LEFT JOIN patients p USING (patient_id) "
                    "WHERE p.psn_no IS NULL") == 0
    assert _one(db, """
        SELECT COUNT(*) FROM twopath_applications a JOIN patients p USING (patient_id)
        WHERE p.psn_no IS NOT NULL AND a.patient_id IN (
            SELECT r.patient_id FROM registrations r JOIN departments d USING (dept_code)
            WHERE d.specialty = 'onc' AND r.diag_code = a.diag_code)""") == _one(
        db, "SELECT COUNT(*) FROM twopath_applications")


def test_cutoff_now_limits_today(tmp_path: Path) -> None:
    path = tmp_path / "today.db"
    now = datetime(2025, 3, 5, 10, 30, 0)
    generate(str(path), start=date(2025, 3, 4), end=date(2025, 3, 5), now=now)
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT MAX(reg_time) FROM registrations").fetchone()[0] <= "2025-03-05 10:30:00"
        assert conn.execute("SELECT MAX(updated_at) FROM insu_fee_items").fetchone()[0] <= "2025-03-05 10:30:00"
        assert conn.execute("SELECT COUNT(*) FROM admissions WHERE status = 'in'").fetchone()[0] > 0
    finally:
        conn.close()


def test_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        generate(str(tmp_path / "x.db"), start=date(2025, 3, 5), end=date(2025, 3, 4))
    with pytest.raises(ValueError):
        generate(str(tmp_path / "x.db"), start=date(2025, 3, 4), end=date(2025, 3, 5), org_code="H361")


def test_main_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "cli.db"
    assert demo_hospital.main([str(path), "--start", "2025-03-03", "--end", "2025-03-03", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "registrations" in out and path.exists()
