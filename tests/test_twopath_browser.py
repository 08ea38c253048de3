"""The two-channel flow of the hospital's document, in headless Chromium against real HTTP servers (the
admin, the sandbox platform requiring SM2 signatures, the demo HIS, a real RQ worker): an admin grants a
doctor permission; an operator imports a patient from the HIS and drafts a filing; the doctor reviews it
on a phone with the medication records and approves; the application sheet is generated; the filing is
submitted, synced to approved, and a second one revoked — every envelope with the operator identity of
the person acting and a verified signature."""

from __future__ import annotations

import io
import json
import os

import openpyxl
import pytest
import sqlalchemy as sa

from core.db import db
from tests.test_twopath import Platform, _configure, tp_registry  # noqa: F401
from tests.test_twopath_doctors import his_doctor, his_patient
from tests.test_web_support import make_user

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
DESKTOP = {"width": 1366, "height": 768}
PHONE = {"width": 390, "height": 844}

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"chromium not installed ({CHROMIUM})"),
]


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield instance
        instance.close()


@pytest.fixture
def signed_platform(tp_registry, app, serve, his):  # noqa: F811
    from core.crypto import generate_sm2_keypair
    from plugins.twopath import sandbox
    from plugins.twopath.models import Drug, Institution

    private, public = generate_sm2_keypair()
    client_settings, config = sandbox.demo_config("")
    config.update(review_delay_seconds=3600, sign_ttl_seconds=3600, reject_every=0, his_database_url=his,
                  signtype="SM2", sign_public_key=public)
    url = serve(sandbox.make_app(config))
    _configure(client_settings["twopath"], base_url=url, signtype="SM2", sign_private_key=private)
    db.session.add(Drug(code="XL01XC03", name="曲妥珠单抗注射液"))
    db.session.add(Institution(code="P36010200012", name="南昌双通道定点药房", poolarea_no="360100"))
    db.session.commit()
    return Platform(url, config)


def _person(username: str, role: str, opter: str, opter_name: str) -> None:
    from web.models import User

    make_user(username, role)
    user = db.session.execute(sa.select(User).filter_by(username=username)).scalar_one()
    user.opter, user.opter_name = opter, opter_name
    db.session.commit()


def log_in(context, base: str, username: str):
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())  # data-confirm prompts (web/static/app.js)
    page.goto(base + "/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", "Passw0rd-123")
    page.click("button[type=submit]")
    page.wait_for_selector("h1:has-text('数据看板')")
    return page


def test_the_two_channel_flow_end_to_end(app, signed_platform, his, serve, work, browser, tmp_path):
    from core.models import Attempt, Upload
    from plugins.twopath import filings
    from plugins.twopath.models import Filing, FilingStatus
    from web.models import User

    patient, doctor = his_patient(his), his_doctor(his)
    _person("admin", "admin", "9000", "管理员")
    _person("wang", "operator", "1001", "王经办")
    _person("zhou", "operator", "1003", "周经办")
    base = serve(app)

    # 1. The admin grants zhou the doctor permission; the doctor's name comes from the HIS.
    admin = log_in(browser.new_context(viewport=DESKTOP, locale="zh-CN"), base, "admin")
    admin.goto(base + "/twopath/doctors")
    zhou_id = db.session.execute(sa.select(User.id).filter_by(username="zhou")).scalar()
    admin.select_option("select[name=user_id]", str(zhou_id))
    admin.fill("input[name=doctor_code]", doctor["doctor_code"])
    admin.click("button:has-text('从 HIS 查询医生')")
    admin.wait_for_selector(f"strong:has-text('{doctor['name']}')")
    admin.click("button:has-text('开通医生权限')")
    admin.wait_for_selector(".flash-ok:has-text('已为 zhou 开通医生权限')")

    # 2. The operator imports the patient from the HIS (1101 finds them) and saves the draft.
    operator = log_in(browser.new_context(viewport=DESKTOP, locale="zh-CN"), base, "wang")
    operator.goto(base + "/twopath/filings/new?kind=twopath")
    operator.fill("#f-cond_abst", "HER2阳性(3+)，病理确诊")
    operator.fill("input[name=his_certno]", patient["id_number"])
    operator.click("button:has-text('从 HIS 导入')")
    operator.wait_for_selector(".flash-ok:has-text('已从 HIS 导入患者')")
    assert operator.input_value("#f-psn_no") == patient["psn_no"]
    assert operator.input_value("#f-cond_abst") == "HER2阳性(3+)，病理确诊"  # what was typed stays
    operator.select_option("select[name=item_code]", "XL01XC03")
    operator.select_option("select[name=institution_code]", "P36010200012")
    for name, value in (("appy_date", "2025-02-10"), ("begndate", "2025-02-10"), ("enddate", "2026-02-09")):
        operator.fill(f"#f-{name}", value)
    operator.click("button:has-text('保存草稿')")
    operator.wait_for_selector(".flash-ok:has-text('申请单已保存为草稿')")
    filing_id = int(operator.url.rstrip("/").split("/")[-1])

    # 3. The doctor reviews on a phone: medication records (5205), HIS visits, approval as themselves.
    phone = log_in(browser.new_context(viewport=PHONE, locale="zh-CN", accept_downloads=True, is_mobile=True,
                                       has_touch=True), base, "zhou")
    phone.goto(f"{base}/twopath/filings/{filing_id}/review")
    phone.click("button:has-text('查询用药记录')")
    phone.wait_for_selector("#medication table tbody tr")
    assert phone.locator("#medication tbody tr").count() >= 1
    assert phone.get_by_text("院内就诊记录（HIS）").is_visible()
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"] + 1, f"the review page scrolls sideways on a phone ({width}px)"
    phone.screenshot(path=str(tmp_path / "review-phone.png"), full_page=True)
    phone.click(f"button:has-text('审核通过（{doctor['name']}）')")
    phone.wait_for_selector(".flash-ok:has-text('医生审核完成')")
    with phone.expect_download() as download:
        phone.click("text=下载申请表（Excel）")
    sheet = openpyxl.load_workbook(io.BytesIO(open(download.value.path(), "rb").read())).active
    cells = {row[0]: row[1] for row in sheet.iter_rows(min_row=2, values_only=True) if row[0]}
    # zhou is an operator: the sheet's identifiers are masked for that role (full for admins by default).
    assert cells["患者姓名"] != patient["name"] and cells["患者姓名"][0] == patient["name"][0]
    assert doctor["name"] in cells["审核医生"]
    assert "南昌双通道定点药房" in cells["定点医药机构"] and "2025-02-10" in cells["有效期"]

    # 4. The operator submits; the worker sends it; the platform approves; sync finds it.
    operator.goto(f"{base}/twopath/filings/{filing_id}")
    operator.click("button:has-text('提交到医保平台')")
    work()
    filing = db.session.get(Filing, filing_id)
    assert filing.status == FilingStatus.PENDING_REVIEW and filing.appy_no
    signed_platform.review(filing.appy_no, "approved")
    operator.goto(base + "/twopath/sync")
    operator.click("button:has-text('立即同步')")
    work()
    operator.goto(f"{base}/twopath/filings/{filing_id}")
    operator.wait_for_selector("h1 .tag:has-text('医保审核通过')")

    # 5. A second filing, approved by the doctor, submitted and revoked (after the confirmation).
    zhou = db.session.execute(sa.select(User).filter_by(username="zhou")).scalar_one()
    second = filings.create_filing("twopath", {**filing.data, "item_code": "XL01XC03", "item_name": "曲妥珠单抗注射液",
                                               "card_no": "", "insuplc_admdvs": filing.insuplc_admdvs,
                                               "begndate": "2026-03-01", "enddate": "2027-02-28"}, actor="wang")
    filings.approve_as(second, zhou)
    operator.goto(f"{base}/twopath/filings/{second.id}")
    operator.click("button:has-text('提交到医保平台')")
    work()
    operator.goto(f"{base}/twopath/filings/{second.id}")
    operator.click("button:has-text('撤销（仅限未审核）')")
    work()
    operator.goto(f"{base}/twopath/filings/{second.id}")
    operator.wait_for_selector("h1 .tag:has-text('已撤销')")

    # Every envelope: the acting person's operator identity, signed (the sandbox verified each one).
    db.session.expire_all()
    sent = db.session.execute(sa.select(Upload.report_type, Attempt.plaintext).join(Attempt, Attempt.upload_id == Upload.id)
                              .where(Upload.report_type.like("twopath.%"))).all()
    by_type: dict[str, set[str]] = {}
    for report_type, plaintext in sent:
        envelope = json.loads(plaintext)
        assert envelope["signtype"] == "SM2" and envelope["cainfo"], report_type
        by_type.setdefault(report_type, set()).add(envelope["opter"])
    assert by_type["twopath.1101"] == {"1001"} and by_type["twopath.5205"] == {"1003"}
    assert by_type["twopath.2511"] == {"1001"} and by_type["twopath.2512"] == {"1001"}
    calls = signed_platform.records()["calls"]
    assert calls["2511"] == 2 and calls["2512"] == 1 and calls["5311"] >= 1
