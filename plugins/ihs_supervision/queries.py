"""Default SQL per interface against the demo hospital (``demo.hospital`` + ``demo_seed``).

Contract for a hospital's own SQL (editable per report type in the admin, query name ``rows``): return
the interface's fields under the document's names (``schemas/<code>.json``) plus ``_wm_ts`` (the
row's last change, 'YYYY-MM-DD HH:MM:SS') and ``_wm_id`` (its key); optionally ``_requires``
('step:key,step:key': records of other steps that must have been accepted first, e.g. the record an
attachment belongs to); take ``:after_ts``, ``:after_id``, ``:until`` and ``:limit``; return rows with
``(_wm_ts, _wm_id) > (:after_ts, :after_id)`` and ``_wm_ts <= :until`` ordered by ``_wm_ts, _wm_id``.
A2001 has a second query, ``process``, over the same window: the question-and-answer lines
(``_parent`` = orderId, then processTime, role, content, attaId), nested into each row's ``process``.

Choices in the defaults: departments are sent with the hospital's own codes (the document asks for
``科室编码`` without naming a national code table), no parent (``parentId`` -1), status from
``departments.active``; staff are the doctors with their platform fields (``ihs_staff``); a cancelled
re-visit order is sent with its status text, and only completed ones have a service record; large
attachments (``big`` = 1) go through A0001, the others through A0000 (content as hex).
"""

from __future__ import annotations


def _window(alias: str, key: str) -> str:
    return (f"{alias}.updated_at >= :after_ts"
            f" AND ({alias}.updated_at > :after_ts OR {alias}.{key} > :after_id)"
            f" AND {alias}.updated_at <= :until")


def _select(columns: list[tuple[str, str]]) -> str:
    return ",\n       ".join(f'{expr} AS "{name}"' for name, expr in columns)


def _query(columns: list[tuple[str, str]], source: str, alias: str, key: str, where: str = "") -> str:
    condition = f"{where}\n  AND " if where else ""
    return (f"SELECT {_select(columns)},\n       {alias}.updated_at AS \"_wm_ts\", {alias}.{key} AS \"_wm_id\"\n"
            f"FROM {source}\nWHERE {condition}{_window(alias, key)}\n"
            f"ORDER BY {alias}.updated_at, {alias}.{key}\nLIMIT :limit")


A1000 = _query([
    ("hospId", "h.hosp_id"), ("hospName", "h.hosp_name"), ("hospAddress", "h.address"), ("hospPhone", "h.phone"),
    ("hospArea", "h.area"), ("hospLevel", "h.level"), ("hospType", "h.hosp_type"), ("hospCategory", "h.category"),
    ("licenseNo", "h.license_no"), ("organCode", "h.organ_code"), ("legalName", "h.legal_name"),
    ("legalIdCard", "h.legal_id_card"),
], "ihs_hospitals h", "h", "hosp_id")

A1001 = _query([
    ("deptCode", "d.dept_code"), ("deptName", "d.dept_name"), ("parentId", "'-1'"), ("hasChild", "0"),
    ("status", "CASE WHEN d.active = 1 THEN 0 ELSE 1 END"),
], "departments d", "d", "dept_code")

A1002 = _query([
    ("deptCode", "d.dept_code"), ("deptName", "p.dept_name"), ("type", "s.staff_type"), ("status", "s.status"),
    ("code", "s.staff_code"), ("name", "d.name"), ("certificateType", "s.cert_type"),
    ("certificateNo", "s.cert_no"), ("techTitle", "s.tech_title"), ("rank", "s.rank"),
    ("sex", "CAST(d.gender AS INTEGER)"), ("mobile", "s.mobile"), ("licenseNo", "s.license_no"),
    ("licenseDate", "s.license_date"), ("practiceNo", "s.practice_no"), ("practiceAddress", "s.practice_address"),
    ("practiceCategory", "s.practice_category"), ("practiceScope", "s.practice_scope"),
    ("firstDate", "s.first_date"), ("currentDate", "s.current_date"), ("validDate", "s.valid_date"),
], "ihs_staff s JOIN doctors d ON d.doctor_code = s.staff_code JOIN departments p ON p.dept_code = d.dept_code",
    "s", "staff_code")

_PATIENT = [
    ("name", "pt.name"), ("sex", "CAST(pt.gender AS INTEGER)"), ("birthday", "pt.birth_date"),
    ("mobile", "pt.phone"),
]

A2000 = _query([
    ("flowNo", "o.flow_no"), ("orderId", "o.order_id"), ("createTime", "o.create_time"), ("deptCode", "o.dept_code"),
    ("deptName", "p.dept_name"), ("docCode", "o.doctor_code"), ("docName", "d.name"),
    ("channelType", "o.channel_type"), ("payType", "o.pay_type"), ("age", "o.age"), *_PATIENT,
    ("certifcateType", "CAST(pt.id_type AS INTEGER)"), ("certifcateNo", "pt.id_number"),
    ("cardType", "CASE WHEN pt.insu_card_no IS NULL THEN NULL ELSE 1 END"), ("cardNo", "pt.insu_card_no"),
    ("amount", "o.amount"), ("status", "o.status"),
], "ihs_revisit_orders o JOIN patients pt ON pt.patient_id = o.patient_id "
   "JOIN departments p ON p.dept_code = o.dept_code JOIN doctors d ON d.doctor_code = o.doctor_code",
    "o", "order_id")

A2001 = _query([
    ("flowNo", "o.flow_no"), ("orderId", "s.order_id"), ("startTime", "s.start_time"), ("endTime", "s.end_time"),
    ("description", "s.description"), ("chiefComplaint", "s.chief_complaint"),
    ("presentHistory", "s.present_history"), ("suggestion", "s.suggestion"), ("diagnose", "s.diagnose"),
    ("recipeId", "s.recipe_id"), ("recordId", "s.record_id"), ("lastRecordId", "s.last_record_id"),
    ("lastVisitDate", "s.last_visit_date"),
], "ihs_revisit_services s JOIN ihs_revisit_orders o ON o.order_id = s.order_id", "s", "order_id")

A2001_PROCESS = f"""SELECT q.order_id AS "_parent", q.process_time AS "processTime", q.role AS "role",
       q.content AS "content", q.atta_id AS "attaId"
FROM ihs_revisit_process q JOIN ihs_revisit_services s ON s.order_id = q.order_id
WHERE {_window("s", "order_id")}
ORDER BY q.order_id, q.seq"""

A2010 = _query([
    ("flowNo", "c.flow_no"), ("consultId", "c.consult_id"), ("applyHospId", "c.apply_hosp_id"),
    ("applyHospName", "h.hosp_name"), ("applyTime", "c.apply_time"), ("startTime", "c.start_time"),
    ("endTime", "c.end_time"), ("status", "c.status"), ("amount", "c.amount"), ("consultType", "c.consult_type"),
    ("consultFlag", "c.consult_flag"), ("age", "c.age"), *_PATIENT, ("chiefComplaint", "c.chief_complaint"),
    ("presentHistory", "c.present_history"),
], "ihs_consultations c JOIN patients pt ON pt.patient_id = c.patient_id "
   "JOIN ihs_hospitals h ON h.hosp_id = c.apply_hosp_id", "c", "consult_id")

_ATTACHMENT = [
    ("attaService", "a.atta_service"), ("attaId", "a.atta_id"), ("fileType", "a.file_type"),
]
A0000 = _query([*_ATTACHMENT, ("content", "a.content"), ("_requires", "a.owner_step || ':' || a.owner_key")],
               "ihs_attachments a", "a", "atta_id", "a.big = 0")
A0001 = _query([*_ATTACHMENT, ("fileUpload", "a.content"), ("_requires", "a.owner_step || ':' || a.owner_key")],
               "ihs_attachments a", "a", "atta_id", "a.big = 1")

DEFAULT_QUERIES: dict[str, dict[str, str]] = {
    "A0000": {"rows": A0000}, "A0001": {"rows": A0001}, "A1000": {"rows": A1000}, "A1001": {"rows": A1001},
    "A1002": {"rows": A1002}, "A2000": {"rows": A2000}, "A2001": {"rows": A2001, "process": A2001_PROCESS},
    "A2010": {"rows": A2010},
}
