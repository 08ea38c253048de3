"""twopath doctors and approval against the demo HIS and the sandbox: an admin grants the doctor
permission with the doctor looked up from the HIS; only doctors approve and the approval is theirs; the
review page shows HIS visits and 5205 medication records; the application sheet is generated and kept;
从 HIS 导入 keeps the form and 保存草稿 creates the draft (the sandbox knows the HIS's people)."""

from __future__ import annotations

import io
import re

import pytest
import sqlalchemy as sa
from openpyxl import load_workbook

from core.db import db
from tests.test_twopath import Platform, _configure, new_filing, platform, submit_now, tp_registry  # noqa: F401
from tests.test_twopath_web import identify
from tests.test_web_support import login


@pytest.fixture
def his_platform(tp_registry, app, serve, his):  # noqa: F811
    """The sandbox platform knowing the demo HIS's insured people, the admin reading the same HIS."""
    from plugins.twopath import sandbox
    from plugins.twopath.models import Drug, Institution

    client_settings, config = sandbox.demo_config("")
    assert config["his_database_url"] == his  # as make demo wires it: the platform knows the HIS's people
    config.update(review_delay_seconds=60, sign_ttl_seconds=3600, reject_every=0)
    url = serve(sandbox.make_app(config))
    _configure(client_settings["twopath"], base_url=url)
    db.session.add(Drug(code="XL01XC03", name="曲妥珠单抗注射液"))
    db.session.add(Institution(code="P36010200012", name="南昌双通道定点药房", poolarea_no="360100"))
    db.session.commit()
    return Platform(url, config)


def his_row(his: str, sql: str) -> dict:
    engine = sa.create_engine(his)
    try:
        with engine.connect() as conn:
            return dict(conn.execute(sa.text(sql)).mappings().first())
    finally:
        engine.dispose()


def his_patient(his: str) -> dict:
    """An insured HIS patient with visits."""
    return his_row(his, "SELECT p.* FROM patients p JOIN registrations r ON r.patient_id = p.patient_id "
                        "WHERE p.psn_no IS NOT NULL AND r.status = 'valid' ORDER BY p.patient_id LIMIT 1")


def his_doctor(his: str) -> dict:
    return his_row(his, "SELECT * FROM doctors WHERE active = 1 ORDER BY doctor_code LIMIT 1")


def draft_for(web, patient: dict, **extra) -> int:
    from plugins.twopath.models import Filing

    answer = web.post("/twopath/filings/new", {
        "kind": "twopath", "item_code": "XL01XC03", "psn_no": patient["psn_no"], "psn_name": patient["name"],
        "certno": patient["id_number"], "psn_cert_type": "01", "insuplc_admdvs": patient["insu_admdvs"],
        "appy_date": "2025-02-10", "begndate": "2025-02-10", "enddate": "2026-02-09", "cond_abst": "病理确诊",
        "institution_code": "P36010200012", **extra})
    assert answer.status_code == 302, answer.get_data(as_text=True)
    return db.session.execute(sa.select(Filing.id).order_by(Filing.id.desc()).limit(1)).scalar()


def grant(admin, username: str, doctor_code: str):
    from web.models import User

    user = db.session.execute(sa.select(User).filter_by(username=username)).scalar_one()
    found = admin.post("/twopath/doctors/lookup", {"user_id": user.id, "doctor_code": doctor_code})
    return user, found, admin.post("/twopath/doctors/grant", {"user_id": user.id, "doctor_code": doctor_code,
                                                              "doctor_name": "冒名"})


def test_an_admin_grants_the_doctor_permission_with_the_doctor_from_the_his(his_platform, his, app):
    from web.models import User

    doctor = his_doctor(his)
    admin = login(app, "admin")
    login(app, "operator", "zhou")
    user, found, granted = grant(admin, "zhou", doctor["doctor_code"])
    assert doctor["name"] in found.get_data(as_text=True)
    assert granted.status_code == 302
    db.session.expire_all()
    user = db.session.get(User, user.id)
    assert (user.doctor_code, user.doctor_name, user.doctor_insu_code) == (
        doctor["doctor_code"], doctor["name"], doctor["insu_dr_code"])  # from the HIS, not the form
    assert user.doctor_granted_by == "admin-user"
    missing = admin.post("/twopath/doctors/lookup", {"user_id": user.id, "doctor_code": "NOPE"})
    assert "HIS 中没有该工号的医生" in missing.get_data(as_text=True)
    assert login(app, "operator", "someone").post("/twopath/doctors/grant", {"user_id": user.id}).status_code == 403


def test_only_a_doctor_approves_and_the_approval_and_sheet_carry_their_identity(his_platform, his, app):
    from plugins.twopath.models import Filing, FilingStatus

    patient, doctor = his_patient(his), his_doctor(his)
    operator = login(app, "operator", "wang")
    identify("wang")
    filing_id = draft_for(operator, patient)
    page = operator.post(f"/twopath/filings/{filing_id}/approve", follow_redirects=True).get_data(as_text=True)
    assert "只有开通了医生权限的用户可以审核" in page and "在「医生权限」页面开通" in page  # where it is granted
    assert db.session.get(Filing, filing_id).status == FilingStatus.DRAFT

    admin = login(app, "admin")
    login(app, "operator", "zhou")
    identify("zhou", opter="1003", opter_name="周医生")
    grant(admin, "zhou", doctor["doctor_code"])
    from tests.test_twopath_web import relogin

    zhou = relogin(app, "zhou")
    review = zhou.get(f"/twopath/filings/{filing_id}/review").get_data(as_text=True)
    assert f"审核通过（{doctor['name']}）" in review and 'name="doctor_code"' not in review
    zhou.post(f"/twopath/filings/{filing_id}/approve", {"doctor_code": "X", "doctor_name": "冒名"})
    db.session.expire_all()
    filing = db.session.get(Filing, filing_id)
    assert filing.status == FilingStatus.DOCTOR_APPROVED
    assert (filing.doctor_code, filing.doctor_name, filing.doctor_his_code, filing.doctor_approved_by) == (
        doctor["insu_dr_code"], doctor["name"], doctor["doctor_code"], "zhou")

    # An admin (who may see patient identifiers) downloads the sheet as kept: identifiers in full.
    download = admin.get(f"/twopath/filings/{filing_id}/sheet")
    assert download.status_code == 200 and download.data == filing.sheet
    sheet = load_workbook(io.BytesIO(download.data)).active
    cells = {row[0]: row[1] for row in sheet.iter_rows(min_row=2, values_only=True) if row[0]}
    assert sheet["A1"].value == "双通道药品备案申请表"
    assert cells["患者姓名"] == patient["name"] and cells["证件号码"] == patient["id_number"]
    from core.models import AuditLog

    viewed = db.session.execute(sa.select(AuditLog.target).filter_by(action="patient.unmasked_view")).scalars()
    assert f"GET /twopath/filings/{filing_id}/sheet" in list(viewed)
    # The doctor is an operator: the same sheet with the identifying rows masked, the rest as kept.
    masked = load_workbook(io.BytesIO(zhou.get(f"/twopath/filings/{filing_id}/sheet").data)).active
    shown = {row[0]: row[1] for row in masked.iter_rows(min_row=2, values_only=True) if row[0]}
    assert shown["患者姓名"] != patient["name"] and shown["患者姓名"][0] == patient["name"][0]
    assert shown["证件号码"] != patient["id_number"] and shown["证件号码"].endswith(patient["id_number"][-4:])
    assert {k: v for k, v in shown.items() if k not in ("患者姓名", "证件号码", "医保卡号", "联系电话", "联系地址")} \
        == {k: v for k, v in cells.items() if k not in ("患者姓名", "证件号码", "医保卡号", "联系电话", "联系地址")}
    assert "曲妥珠单抗注射液" in cells["申请药品"] and "南昌双通道定点药房" in cells["定点医药机构"]
    assert doctor["name"] in cells["审核医生"] and cells["有效期"] == "2025-02-10 至 2026-02-09"
    assert cells["诊断依据"] == "病理确诊"
    assert "下载申请表" in zhou.get(f"/twopath/filings/{filing_id}").get_data(as_text=True)


def test_editing_a_rejected_filing_voids_its_sheet_until_a_doctor_approves_again(platform, app):  # noqa: F811
    from plugins.twopath import filings
    from plugins.twopath.models import Filing, FilingStatus

    filing = new_filing("twopath", 0)
    assert filing.sheet
    platform.faults(reject_field="cond_abst")
    submit_now(filing)
    filing = db.session.get(Filing, filing.id)
    assert filing.status == FilingStatus.SUBMIT_REJECTED
    filings.update_filing(filing, {"cond_abst": "病理确诊，HER2阳性(3+)"}, actor="wang")
    assert filing.status == FilingStatus.DRAFT and filing.sheet is None
    web = login(app, "operator", "wang")
    assert web.get(f"/twopath/filings/{filing.id}/sheet").status_code == 404
    assert "下载申请表" not in web.get(f"/twopath/filings/{filing.id}").get_data(as_text=True)
    filings.doctor_approve(filing, "D1001", "周医生", actor="doctor")
    cells = {row[0]: row[1] for row in load_workbook(io.BytesIO(filing.sheet)).active.iter_rows(min_row=2,
                                                                                                 values_only=True)}
    assert cells["诊断依据"] == "病理确诊，HER2阳性(3+)"


def test_the_review_page_shows_his_visits_and_the_platforms_medication_records(his_platform, his, app):
    patient = his_patient(his)
    web = login(app, "operator", "wang")
    identify("wang")
    filing_id = draft_for(web, patient)
    page = web.get(f"/twopath/filings/{filing_id}/review").get_data(as_text=True)
    visit = his_row(his, f"SELECT diag_name FROM registrations WHERE patient_id = '{patient['patient_id']}' "
                         "AND status = 'valid' ORDER BY reg_time DESC LIMIT 1")
    assert "院内就诊记录" in page and visit["diag_name"] in page
    assert 'name="viewport"' in page and "twopath.css" in page  # the phone layout
    records = web.post(f"/twopath/filings/{filing_id}/medication", headers={"HX-Request": "true"})
    text = records.get_data(as_text=True)
    assert "条" in text and "fee_ocur_time" not in text and re.search(r"\d{4}-\d{2}-\d{2} 10:00:00", text)
    assert his_platform.records()["calls"]["5205"] == 1


def test_import_from_the_his_fills_the_form_keeps_what_was_typed_and_saving_creates_the_draft(his_platform, his,
                                                                                             app):
    from plugins.twopath.models import Filing, FilingStatus

    patient = his_patient(his)
    web = login(app, "admin", "wang")  # sees identifiers in full (an operator's form is masked and sealed)
    identify("wang")
    form = web.post("/twopath/import-his", {"kind": "twopath", "his_certno": patient["id_number"],
                                            "cond_abst": "HER2阳性(3+)", "item_code": "XL01XC03",
                                            "addr": "南昌市红谷滩新区某路1号"}).get_data(as_text=True)
    assert f'value="{patient["psn_no"]}"' in form  # 1101 found the HIS patient at the platform
    assert f'value="{patient["name"]}"' in form and 'value="HER2阳性(3+)"' in form
    assert "南昌市红谷滩新区某路1号" in form  # typed wins over the HIS address
    assert re.search(r'<form method="post" action="/twopath/filings/new\?kind=twopath"', form)
    values = dict(re.findall(r'name="([a-z_]+)" id="f-[a-z_]+"\s+value="([^"]*)"', form))
    values.update(kind="twopath", item_code="XL01XC03", begndate="2025-02-10", enddate="2026-02-09",
                  appy_date="2025-02-10", insuplc_admdvs=patient["insu_admdvs"], institution_code="P36010200012")
    answer = web.post("/twopath/filings/new?kind=twopath", values)
    assert answer.status_code == 302
    filing = db.session.execute(sa.select(Filing)).scalar_one()
    assert filing.status == FilingStatus.DRAFT and filing.psn_no == patient["psn_no"]
    assert filing.data["cond_abst"] == "HER2阳性(3+)" and filing.data["addr"] == "南昌市红谷滩新区某路1号"
    assert filing.data["twopathfixmedins"][0]["fixmedins_code"] == "P36010200012"


def test_the_institution_list_imports_and_exports_with_its_pooling_area(tp_registry, app):  # noqa: F811
    from openpyxl import Workbook

    from plugins.twopath import catalogue
    from plugins.twopath.models import Institution

    book = Workbook()
    book.active.append(["医疗机构编码", "医疗机构名称", "统筹区域"])
    book.active.append(["P36010200099", "南昌某双通道药房", "360100"])
    book.active.append(["P36010200098", "九江某药房", "3" * 31])
    out = io.BytesIO()
    book.save(out)
    applied, errors = catalogue.import_workbook("institutions", out.getvalue())
    assert applied == 0 and [str(e) for e in errors] == ["第 3 行「统筹区域」：长度超过 30"]
    book.active.delete_rows(3)
    out = io.BytesIO()
    book.save(out)
    assert catalogue.import_workbook("institutions", out.getvalue()) == (1, [])
    assert db.session.execute(sa.select(Institution.poolarea_no)).scalar() == "360100"
    exported = load_workbook(io.BytesIO(catalogue.export_workbook("institutions"))).active
    assert list(exported.iter_rows(values_only=True))[1] == ("P36010200099", "南昌某双通道药房", "是", None, "360100")
