"""The mini-program JSON API (/twopath/api): bearer tokens only (the admin's cookie session does not
count, so no CSRF surface), roles and the doctor permission checked, a patient application with the
institution chosen from the list, and a doctor's review and approval."""

from __future__ import annotations

import sqlalchemy as sa

from core.db import db
from tests.test_twopath import person, platform, tp_registry  # noqa: F401
from tests.test_twopath_web import identify
from tests.test_web_support import login, make_user


def _token(username: str, role: str, *, opter: str = "", doctor: tuple[str, str, str] | None = None) -> str:
    from plugins.twopath import api
    from web.models import User

    make_user(username, role)
    user = db.session.execute(sa.select(User).filter_by(username=username)).scalar_one()
    user.opter, user.opter_name = opter, f"{username}-经办"
    if doctor:
        user.doctor_code, user.doctor_name, user.doctor_insu_code = doctor
    token = api.issue_token(user, label="小程序", created_by="test")
    db.session.commit()
    return token


def _catalogues() -> None:
    from plugins.twopath.models import Drug, Institution

    db.session.add(Drug(code="XL01XC03", name="曲妥珠单抗注射液"))
    db.session.add(Institution(code="P36010200012", name="南昌双通道定点药房", poolarea_no="360100"))
    db.session.commit()


def _bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_requests_without_a_valid_token_are_refused_even_with_an_admin_session(platform, app):  # noqa: F811
    admin = login(app, "admin")
    assert admin.raw.get("/twopath/api/institutions").status_code == 401
    assert admin.raw.post("/twopath/api/applications", json={}).status_code == 401
    client = app.test_client()
    assert client.get("/twopath/api/institutions", headers=_bearer("bst_wrong")).status_code == 401
    token = _token("revoked", "operator", opter="1009")
    from plugins.twopath.models import ApiToken

    db.session.execute(sa.update(ApiToken).values(revoked_at=sa.func.now()))
    db.session.commit()
    assert client.get("/twopath/api/institutions", headers=_bearer(token)).status_code == 401


def test_a_patient_application_chooses_the_institution_from_the_list(platform, app):  # noqa: F811
    from plugins.twopath.models import Filing, FilingStatus

    _catalogues()
    client = app.test_client()
    token = _token("miniapp", "operator", opter="2001")
    listed = client.get("/twopath/api/institutions", headers=_bearer(token)).get_json()
    assert listed["institutions"] == [{"code": "P36010200012", "name": "南昌双通道定点药房", "poolarea_no": "360100"}]
    body = {"kind": "twopath", "certno": person(2)["certno"], "item_code": "XL01XC03",
            "begndate": "2025-06-01", "enddate": "2026-05-31", "cond_abst": "病理确诊"}
    refused = client.post("/twopath/api/applications", json=body, headers=_bearer(token))
    assert refused.status_code == 400 and "institution_code" in refused.get_json()["error"]
    answer = client.post("/twopath/api/applications", json={**body, "institution_code": "P36010200012"},
                         headers=_bearer(token))
    assert answer.status_code == 201, answer.get_json()
    filing = db.session.get(Filing, answer.get_json()["filing"]["id"])
    assert filing.status == FilingStatus.DRAFT and filing.psn_no == person(2)["psn_no"]  # found by 1101
    assert filing.data["twopathfixmedins"][0]["fixmedins_code"] == "P36010200012"
    assert answer.get_json()["filing"]["certno"] != person(2)["certno"]  # masked for a non-admin
    assert "2001" in [s["opter"] for s in platform.records()["signins"]]  # the token user's operator identity

    viewer = _token("looker", "viewer", opter="2002")
    assert client.get("/twopath/api/institutions", headers=_bearer(viewer)).status_code == 200
    assert client.post("/twopath/api/applications", json=body, headers=_bearer(viewer)).status_code == 403
    no_opter = _token("noopter", "operator")
    refused = client.post("/twopath/api/applications", json={**body, "institution_code": "P36010200012"},
                          headers=_bearer(no_opter))
    assert refused.status_code == 400 and "经办人编号" in refused.get_json()["error"]


def test_a_doctor_reviews_and_approves_through_the_api(platform, app):  # noqa: F811
    from plugins.twopath.models import Filing, FilingStatus

    _catalogues()
    client = app.test_client()
    operator = _token("miniapp", "operator", opter="2001")
    body = {"kind": "twopath", "certno": person(3)["certno"], "item_code": "XL01XC03", "begndate": "2025-06-01",
            "enddate": "2026-05-31", "institution_code": "P36010200012"}
    filing_id = client.post("/twopath/api/applications", json=body, headers=_bearer(operator)).get_json()["filing"]["id"]
    assert client.get("/twopath/api/reviews", headers=_bearer(operator)).status_code == 403  # not a doctor

    doctor = _token("dr-zhou", "operator", opter="2003", doctor=("1001", "周医生", "D360102000123"))
    listed = client.get("/twopath/api/reviews", headers=_bearer(doctor)).get_json()
    assert [f["id"] for f in listed["filings"]] == [filing_id]
    one = client.get(f"/twopath/api/reviews/{filing_id}", headers=_bearer(doctor)).get_json()["filing"]
    assert one["item_name"] == "曲妥珠单抗注射液" and one["institution"] == "南昌双通道定点药房"
    approved = client.post(f"/twopath/api/reviews/{filing_id}/approve", headers=_bearer(doctor)).get_json()
    assert approved["ok"] and approved["sheet"] and approved["filing"]["doctor_name"] == "周医生"
    db.session.expire_all()
    filing = db.session.get(Filing, filing_id)
    assert filing.status == FilingStatus.DOCTOR_APPROVED and filing.doctor_approved_by == "dr-zhou"
    again = client.post(f"/twopath/api/reviews/{filing_id}/approve", headers=_bearer(doctor))
    assert again.status_code == 400 and "只有草稿可以审核" in again.get_json()["error"]
    assert client.get("/twopath/api/reviews/999999", headers=_bearer(doctor)).status_code == 404


def test_an_admin_issues_a_token_shown_once_and_stored_hashed(platform, app):  # noqa: F811
    from plugins.twopath.models import ApiToken
    from web.models import User

    admin = login(app, "admin")
    identify("admin-user")
    user = db.session.execute(sa.select(User).filter_by(username="admin-user")).scalar_one()
    page = admin.post(f"/twopath/doctors/{user.id}/token").get_data(as_text=True)
    token = page.split("<code>", 1)[1].split("</code>", 1)[0]
    assert token.startswith("bst_")
    stored = db.session.execute(sa.select(ApiToken)).scalar_one()
    assert token not in stored.token_hash and len(stored.token_hash) == 64
    assert app.test_client().get("/twopath/api/items?kind=twopath", headers=_bearer(token)).status_code == 200


def test_an_admin_withdraws_a_token_and_the_mini_program_is_refused_from_then_on(platform, app):  # noqa: F811
    from core.models import AuditLog
    from plugins.twopath.models import ApiToken

    token = _token("dr-li", "operator", opter="1002")
    client = app.test_client()
    assert client.get("/twopath/api/items?kind=twopath", headers=_bearer(token)).status_code == 200
    admin = login(app, "admin")
    page = admin.get("/twopath/doctors").get_data(as_text=True)
    stored = db.session.execute(sa.select(ApiToken)).scalar_one()
    assert f"/twopath/doctors/tokens/{stored.id}/revoke" in page and "最近使用" in page and token not in page
    assert app.test_client().post(f"/twopath/doctors/tokens/{stored.id}/revoke").status_code in (302, 400, 403)
    db.session.expire_all()
    assert db.session.get(ApiToken, stored.id).revoked_at is None  # no CSRF token, no login: nothing changed
    done = admin.post(f"/twopath/doctors/tokens/{stored.id}/revoke")
    assert done.status_code == 302
    assert client.get("/twopath/api/items?kind=twopath", headers=_bearer(token)).status_code == 401
    assert f"/twopath/doctors/tokens/{stored.id}/revoke" not in admin.get("/twopath/doctors").get_data(as_text=True)
    assert db.session.execute(sa.select(AuditLog).filter_by(action="twopath.api_token_revoke")).scalar_one()
