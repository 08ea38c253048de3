"""Default SQL per service, against the demo hospital database (tables: ``demo_seed`` and demo/hospital.py).

Contract for a hospital's own SQL (editable in the admin per report type, query name ``rows``):
return the service's fields under their document names (upper case, as in ``schemas/<service>.json``)
plus ``_wm_ts`` (the row's last change, 'yyyy-MM-dd HH:mm:ss') and ``_wm_id`` (its primary key); take
``:after_ts``, ``:after_id``, ``:until`` and ``:limit``; return only rows with
``(_wm_ts, _wm_id) > (:after_ts, :after_id)`` and ``_wm_ts <= :until``, ordered by ``_wm_ts, _wm_id``.
``:after_id`` is NULL on the first run (then ``_wm_id > NULL`` is never true: rows strictly after
``:after_ts``). Leave a row out until it is ready to be reported (a fee item is reported once settled).

What the defaults choose:
* fee_list_d: settled fee items only (SETL_ID is required); an item changes when it is settled or
  corrected, and is then sent (again) with its new values.
* setl_d: valid settlements only (vali_flag '1'). The document has no field to report a reversal, so a
  reversed settlement is not sent again; its replacement is a new settlement and is sent.
* mdtrt_d: every visit, with VALI_FLAG ('0' = cancelled visit). The required discharge department
  (DSCG_DEPT_CODG/NAME, DSCG_CATY) of a visit without a discharge is its admitting department.
"""

from __future__ import annotations


def _window(alias: str, key: str) -> str:
    # The first conjunct is a plain range on the indexed updated_at column; the second breaks ties.
    return (f"{alias}.updated_at >= :after_ts"
            f" AND ({alias}.updated_at > :after_ts OR {alias}.{key} > :after_id)"
            f" AND {alias}.updated_at <= :until")


def _select(columns: list[tuple[str, str]]) -> str:
    return ",\n       ".join(f'{expr} AS "{name}"' for name, expr in columns)


_FEE_COLUMNS = [
    ("BKKP_SN", "f.bkkp_sn"), ("MDTRT_ID", "f.mdtrt_id"), ("FEE_OCUR_TIME", "f.fee_ocur_time"),
    ("SETL_ID", "f.setl_id"), ("RX_DRORD_NO", "f.rx_drord_no"), ("FIXMEDINS_CODE", "h.org_code"),
    ("FIXMEDINS_NAME", "h.org_name"), ("PSN_NO", "v.psn_no"), ("PSN_INSU_RLTS_ID", "v.psn_insu_rlts_id"),
    ("INSU_ADMDVS", "v.insu_admdvs"), ("PAY_LOC", "v.pay_loc"), ("MED_TYPE", "v.med_type"),
    ("CNT", "f.cnt"), ("PRIC", "f.pric"), ("DET_ITEM_FEE_SUMAMT", "f.det_item_fee_sumamt"),
    ("CHRGITM_LV", "c.chrgitm_lv"), ("HILIST_CODE", "c.hilist_code"), ("HILIST_NAME", "c.hilist_name"),
    ("LIST_TYPE", "c.list_type"), ("MED_LIST_CODG", "c.med_list_codg"), ("MEDINS_LIST_CODG", "f.medins_list_codg"),
    ("MEDINS_LIST_NAME", "c.medins_list_name"), ("MED_CHRGITM_TYPE", "c.med_chrgitm_type"),
    ("CRTE_TIME", "f.created_at"), ("_wm_ts", "f.updated_at"), ("_wm_id", "f.bkkp_sn"),
]

FEE_LIST_D = f"""SELECT {_select(_FEE_COLUMNS)}
FROM insu_fee_items f
JOIN insu_visits v ON v.mdtrt_id = f.mdtrt_id
LEFT JOIN charge_items c ON c.medins_list_codg = f.medins_list_codg
CROSS JOIN hospital_info h
WHERE f.setl_id IS NOT NULL
  AND {_window("f", "bkkp_sn")}
ORDER BY f.updated_at, f.bkkp_sn
LIMIT :limit"""

_SETL_FROM_SETTLEMENT = (
    "SETL_ID", "MDTRT_ID", "PSN_NO", "PSN_INSU_RLTS_ID", "AGE", "INSUTYPE", "PSN_TYPE", "FIX_BLNG_ADMDVS",
    "SETL_TIME", "MED_TYPE", "MEDFEE_SUMAMT", "FULAMT_OWNPAY_AMT", "OVERLMT_SELFPAY", "PRESELFPAY_AMT",
    "INSCP_AMT", "HIFP_PAY", "POOL_PROP_SELFPAY", "FUND_PAY_SUMAMT", "PSN_PAY", "ACCT_PAY",
)
_PERSON = [
    ("PSN_NAME", "p.name"), ("PSN_CERT_TYPE", "p.id_type"), ("CERTNO", "p.id_number"), ("GEND", "p.gender"),
    ("NATY", "p.nation"), ("BRDY", "p.birth_date"),
]
_SETL_COLUMNS = [
    *[(name, f"s.{name.lower()}") for name in _SETL_FROM_SETTLEMENT], *_PERSON,
    ("FIXMEDINS_CODE", "h.org_code"), ("FIXMEDINS_NAME", "h.org_name"), ("CRTE_TIME", "s.created_at"),
    ("_wm_ts", "s.updated_at"), ("_wm_id", "s.setl_id"),
]

SETL_D = f"""SELECT {_select(_SETL_COLUMNS)}
FROM insu_settlements s
JOIN patients p ON p.patient_id = s.patient_id
CROSS JOIN hospital_info h
WHERE s.vali_flag = '1'
  AND {_window("s", "setl_id")}
ORDER BY s.updated_at, s.setl_id
LIMIT :limit"""

# mdtrt_d fields kept in insu_visits under their lower-case names (document order).
_VISIT_FIELDS = (
    "MDTRT_ID", "MEDINS_SETL_ID", "PSN_NO", "PSN_INSU_RLTS_ID", "AGE", "INSUTYPE", "PSN_TYPE", "CVLSERV_FLAG",
    "CVLSERV_LV", "SP_PSN_TYPE", "SP_PSN_TYPE_LV", "CLCT_GRDE", "FLXEMPE_FLAG", "NWB_FLAG", "INSU_ADMDVS",
    "EMP_NO", "EMP_NAME", "EMP_TYPE", "ECON_TYPE", "AFIL_INDU", "AFIL_RLTS", "EMP_MGT_TYPE", "PAY_LOC",
    "HOSP_LV", "FIX_BLNG_ADMDVS", "LMTPRIC_HOSP_LV", "DEDC_HOSP_LV", "BEGNTIME", "ENDTIME", "MDTRT_CERT_TYPE",
    "MDTRT_CERT_NO", "MED_TYPE", "RLOC_TYPE", "ARS_YEAR_IPT_FLAG", "PRE_PAY_FLAG", "YEAR", "REFL_OLD_MDTRT_ID",
    "IPT_OTP_NO", "MEDRCDNO", "CHFPDR_CODE", "ADM_DIAG_DSCR", "ADM_DEPT_CODG", "ADM_DEPT_NAME", "ADM_BED",
    "WARDAREA_BED", "TRAF_DEPT_FLAG", "DSCG_MAINDIAG_CODE", "DSCG_DEPT_CODG", "DSCG_DEPT_NAME", "DSCG_BED",
    "DSCG_WAY", "MAIN_COND_DSCR", "DISE_NO", "DISE_NAME", "OPRN_OPRT_CODE", "OPRN_OPRT_NAME", "OTP_DIAG_INFO",
    "INHOSP_STAS", "DIE_DATE", "IPT_DAYS", "GESO_VAL", "BIRCTRL_TYPE", "FETTS", "FETUS_CNT", "MATN_TYPE",
    "PREY_TIME", "LATECHB_FLAG", "PRET_FLAG", "FPSC_NO", "BIRCTRL_MATN_DATE", "COP_FLAG", "TRT_DCLA_DETL_SN",
    "VALI_FLAG", "MEMO", "RID", "CRTER_ID", "CRTER_NAME", "CRTE_OPTINS_NO", "OPTER_ID", "OPTER_NAME",
    "OPT_TIME", "OPTINS_NO", "POOLAREA_NO", "CHFPDR_NAME", "DSCG_MAINDIAG_NAME", "ADM_CATY", "DSCG_CATY",
    "TTP_PAY_FLAG", "TTP_PAY_PROP", "DISE_TYPE_CODE", "SAME_DISE_ADM_FLAG", "QUTS_TYPE", "DEPT_SCENE_ID",
)
# A visit that has not ended in a discharge (outpatient, still in hospital) has no discharge department,
# but the document requires DSCG_DEPT_CODG/NAME and DSCG_CATY: the admitting department stands in.
_DSCG_FALLBACK = {"DSCG_DEPT_CODG": "ADM_DEPT_CODG", "DSCG_DEPT_NAME": "ADM_DEPT_NAME", "DSCG_CATY": "ADM_CATY"}


def _visit_column(name: str) -> str:
    if name in _DSCG_FALLBACK:
        return f"COALESCE(v.{name.lower()}, v.{_DSCG_FALLBACK[name].lower()})"
    return f"v.{name.lower()}"


_MDTRT_COLUMNS = [
    *[(name, _visit_column(name)) for name in _VISIT_FIELDS], *_PERSON,
    ("CONER_NAME", "p.contact_name"), ("TEL", "p.phone"), ("ADDR", "p.address"),
    ("FIXMEDINS_CODE", "h.org_code"), ("FIXMEDINS_NAME", "h.org_name"),
    ("UPDT_TIME", "v.updated_at"), ("CRTE_TIME", "v.created_at"),
    ("_wm_ts", "v.updated_at"), ("_wm_id", "v.mdtrt_id"),
]

MDTRT_D = f"""SELECT {_select(_MDTRT_COLUMNS)}
FROM insu_visits v
JOIN patients p ON p.patient_id = v.patient_id
CROSS JOIN hospital_info h
WHERE {_window("v", "mdtrt_id")}
ORDER BY v.updated_at, v.mdtrt_id
LIMIT :limit"""

DEFAULT_QUERIES: dict[str, str] = {"fee_list_d": FEE_LIST_D, "setl_d": SETL_D, "mdtrt_d": MDTRT_D}
