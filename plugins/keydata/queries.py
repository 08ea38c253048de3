"""Default indicator SQL, written for the demo hospital database (demo/hospital.py, whose docstring
documents the tables). A hospital adapts any of them to its HIS without code changes: a ReportQuery row
(report_type, name, sql) replaces the default of the same name.

Every query gets these parameters, local wall-clock time (core.hisdb binds them as text
'YYYY-MM-DD HH:MM:SS' / 'YYYY-MM-DD' for SQLite, as timestamp / date for other databases); the period is
[start, end):
    :start     hourly: 00:00 of statDate's day; monthly: the 1st 00:00
    :end       hourly: the slot's hour; monthly: the next month's 1st 00:00
    :stat_date the statDate (the period's last second)
    :stat_day  statDate's day (a date; e.g. the month end, for "截至上月底")
Figure queries return one row whose column ``value`` (or first column) is the figure (NULL = no data).
Mixed-case column aliases are double-quoted so PostgreSQL does not fold them to lower case.
"""

from __future__ import annotations

_WINDOW = "{col} >= :start AND {col} < :end"


def _count(table: str, time_column: str, condition: str) -> str:
    return f"SELECT COUNT(*) AS value FROM {table} WHERE {condition} AND {_WINDOW.format(col=time_column)}"


HOSPITAL_DAILY: dict[str, str] = {
    # 门诊人次数：仅门诊挂号，不含急诊、健康体检；退号不计
    "clinicPersonTimes": _count("registrations", "reg_time", "status = 'valid' AND visit_type = 'outpatient'"),
    "emerPersonTimes": _count("registrations", "reg_time", "status = 'valid' AND visit_type = 'emergency'"),
    "feverPersonTimes": _count("registrations", "reg_time", "status = 'valid' AND visit_type = 'fever'"),
    # 门急诊输液用药频次：每次输液执行一次
    "clinicMediFreq": _count("infusions", "exec_time", "status = 'done'"),
    "presCount": _count("prescriptions", "rx_time", "status = 'valid'"),
    "enterPersonTimes": _count("admissions", "admit_time", "1 = 1"),
    "outPersonTimes": _count("discharges", "discharge_time", "1 = 1"),
    # totalPersonTimes 文档未定义；默认取门急诊（含发热门诊，不含体检）挂号总人次
    "totalPersonTimes": _count("registrations", "reg_time",
                               "status = 'valid' AND visit_type IN ('outpatient', 'emergency', 'fever')"),
}

DEPT_DAILY: dict[str, str] = {
    # 各科室就诊人次（挂号数，退号、健康体检不计）：一行一个院内科室，列名即接口字段名
    "departments": (
        "SELECT r.dept_code AS \"departNoExp\", d.dept_name AS \"departNameExp\", COUNT(*) AS \"personTimes\" "
        "FROM registrations r JOIN departments d ON d.dept_code = r.dept_code "
        "WHERE r.status = 'valid' AND r.visit_type <> 'checkup' AND r.reg_time >= :start AND r.reg_time < :end "
        "GROUP BY r.dept_code, d.dept_name ORDER BY r.dept_code"
    ),
    # 院内科室清单（科室对照维护、演示对照用）
    "department_list": (
        'SELECT dept_code AS "departNoExp", dept_name AS "departNameExp", active FROM departments ORDER BY dept_code'
    ),
}

_SURGERY_STAYS = (
    "SELECT COUNT(DISTINCT s.adm_id) AS value FROM surgeries s JOIN discharges d ON d.adm_id = s.adm_id "
    "WHERE d.discharge_time >= :start AND d.discharge_time < :end"
)

MONTHLY: dict[str, str] = {
    "keyDiseaseCount": _count("registrations", "reg_time",
                              "status = 'valid' AND key_disease = 1 AND visit_type IN ('outpatient', 'fever')"),
    # 平均CMI：当月出院病例 DRG 权重的平均值（未编码的不计）
    "aveCmi": ("SELECT ROUND(AVG(drg_weight), 4) AS value FROM discharges "
               "WHERE drg_weight IS NOT NULL AND discharge_time >= :start AND discharge_time < :end"),
    # 出院患者手术台次：同一次住院多次手术按 1 人统计
    "surgTotalNum": _SURGERY_STAYS,
    "surgGrande3Num": _SURGERY_STAYS + " AND s.grade = 3",
    "surgGrade4Num": _SURGERY_STAYS + " AND s.grade = 4",
    "downPersonTimes": _count("referrals", "referral_time", "status = 'done' AND direction = 'down' AND inbound = 1"),
    "upPersonTimes": _count("referrals", "referral_time", "status = 'done' AND direction = 'up' AND inbound = 0"),
    "downPriPersonTimes": _count("referrals", "referral_time",
                                 "status = 'done' AND direction = 'down' AND inbound = 0 AND partner_is_primary = 1"),
    "upPriPersonTimes": _count("referrals", "referral_time",
                               "status = 'done' AND direction = 'up' AND inbound = 1 AND partner_is_primary = 1"),
    # 截至上月底开放的床位
    "nursbedNum": ("SELECT COUNT(*) AS value FROM beds WHERE bed_type = 'nursing' AND opened_on <= :stat_day "
                   "AND (closed_on IS NULL OR closed_on > :stat_day)"),
    "psybedNum": ("SELECT COUNT(*) AS value FROM beds WHERE bed_type = 'psychiatric' AND opened_on <= :stat_day "
                  "AND (closed_on IS NULL OR closed_on > :stat_day)"),
}
