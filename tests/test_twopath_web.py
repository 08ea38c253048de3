"""twopath admin pages through the real admin app: form + 1101 lookup, approval and submit, catalogue
import errors, log search with masking by role, statistics, interfaces that need a specification."""

from __future__ import annotations

import io
import json

import pytest
import sqlalchemy as sa
from openpyxl import Workbook

from core import pipeline
from core.db import db
from tests.test_twopath import new_filing, person, platform, submit_now, tp_registry  # noqa: F401
from tests.test_web_support import login


def identify(username: str, *, opter: str = "1001", opter_name: str = "王医生",
             doctor: tuple[str, str, str] | None = None) -> None:
    """Give a test user an insurance operator identity (and a doctor permission)."""
    from web.models import User

    user = db.session.execute(sa.select(User).filter_by(username=username)).scalar_one()
    user.opter, user.opter_name = opter, opter_name
    if doctor:
        user.doctor_code, user.doctor_name, user.doctor_insu_code = doctor
    db.session.commit()


def relogin(app, username: str):
    """Log an existing test user in again (a fresh session)."""
    from tests.test_web_support import Client, csrf_from

    client = app.test_client()
    token = csrf_from(client.get("/login").get_data(as_text=True))
    answer = client.post("/login", data={"username": username, "password": "Passw0rd-123", "csrf_token": token})
    assert answer.status_code == 302
    return Client(client, csrf_from(client.get("/").get_data(as_text=True)))


def _xlsx(rows: list[list]) -> bytes:
    book = Workbook()
    for row in rows:
        book.active.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def test_an_operator_creates_approves_and_submits_a_filing_from_the_form(platform, app):  # noqa: F811
    from plugins.twopath import catalogue
    from plugins.twopath.models import Filing, FilingStatus

    catalogue.import_workbook("drugs", _xlsx([["中心药品项目编码", "中心药品项目名称"], ["XL01XC03", "曲妥珠单抗注射液"]]))
    web = login(app, "operator")
    identify("operator-user", doctor=("1001", "周医生", "D360102000123"))
    p = person(1)
    found = web.post("/twopath/lookup", {"cert_type": "02", "number": p["certno"]}, headers={"HX-Request": "true"})
    assert found.status_code == 200 and p["psn_no"] in found.get_data(as_text=True)

    answer = web.post("/twopath/filings/new", {
        "kind": "twopath", "item_code": "XL01XC03", "psn_no": p["psn_no"], "psn_name": p["psn_name"],
        "certno": p["certno"], "psn_cert_type": "01", "insuplc_admdvs": p["insuplc_admdvs"],
        "card_no": p["card_no"], "appy_date": "2025-04-01", "begndate": "2025-04-01", "enddate": "2026-03-31",
    })
    assert answer.status_code == 302
    filing = db.session.execute(sa.select(Filing)).scalar_one()
    assert filing.item_name == "曲妥珠单抗注射液" and filing.status == FilingStatus.DRAFT

    # Typed doctor fields are ignored: the approval is the signed-in doctor's.
    web.post(f"/twopath/filings/{filing.id}/approve", {"doctor_code": "D1", "doctor_name": "冒名"})
    web.post(f"/twopath/filings/{filing.id}/submit")
    db.session.expire_all()
    filing = db.session.get(Filing, filing.id)
    assert (filing.doctor_code, filing.doctor_name, filing.doctor_his_code) == ("D360102000123", "周医生", "1001")
    assert filing.status == FilingStatus.SUBMITTING
    assert pipeline.attempt(filing.last_upload_id, 0) == "succeeded"
    page = web.get(f"/twopath/filings/{filing.id}").get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Filing, filing.id).appy_no in page and "待医保审核" in page


@pytest.mark.slow  # two logins (password hashing)
def test_a_viewer_sees_masked_identifiers_and_cannot_change_anything(platform, app):  # noqa: F811
    filing = new_filing("twopath", 0)
    submit_now(filing)
    certno = person(0)["certno"]

    viewer = login(app, "viewer")
    page = viewer.get(f"/twopath/logs?certno={certno}").get_data(as_text=True).split("</form>")[-1]
    assert f"/twopath/filings/{filing.id}" in page and certno not in page and certno[:3] in page
    assert "twopath.2511" in page  # the interface calls found by ID number
    assert viewer.post(f"/twopath/filings/{filing.id}/revoke").status_code == 403

    admin = login(app, "admin")
    assert certno in admin.get(f"/twopath/logs?certno={certno}").get_data(as_text=True)
    by_appno = admin.get(f"/twopath/logs?appy_no={filing.appy_no}").get_data(as_text=True)
    assert f"/twopath/filings/{filing.id}" in by_appno


def test_a_catalogue_import_with_errors_lists_them_and_statistics_count_filings(platform, app):  # noqa: F811
    web = login(app, "operator")
    bad = _xlsx([["门慢门特病种目录代码", "门慢门特病种名称"], ["M03900", "高血压"], ["", "糖尿病"]])
    answer = web.post("/twopath/catalogue/diseases/import", {"file": (io.BytesIO(bad), "病种.xlsx")},
                      content_type="multipart/form-data")
    assert answer.status_code == 422
    assert "第 3 行「门慢门特病种目录代码」：不能为空" in answer.get_data(as_text=True)
    assert "高血压" not in web.get("/twopath/catalogue/diseases").get_data(as_text=True).split("</form>")[-1]

    new_filing("chronic", 1, code="M03900", begndate="2025-05-06")
    submit_now(new_filing("twopath", 2, begndate="2025-05-10"))
    stats = web.get("/twopath/stats?by=month&year=2025").get_data(as_text=True)
    assert "2025-05" in stats and "M03900" in stats and "XL01XC03" in stats
    chart = json.loads(stats.split('id="filings-chart">', 1)[1].split("</script>", 1)[0])
    assert chart["labels"] == ["2025-05"] and chart["stacked"] is True
    assert sum(d["data"][0] for d in chart["datasets"]) == 2  # the chart counts what the table counts
    interfaces = web.get("/twopath/interfaces").get_data(as_text=True)
    assert "twopath.1309" in interfaces and "twopath.5205" in interfaces and "需要接口规范" not in interfaces
    for path in ("/twopath/", "/twopath/sync", "/twopath/filings/new?kind=chronic"):
        assert web.get(path).status_code == 200, path
