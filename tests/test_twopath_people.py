"""twopath people: every envelope and 9001 carry the signed-in user's own operator identity (one sign_no
per operator), a user without an operator code is told so and nothing is sent, 9002 on logout and on the
setting, the users page edits the identity; and the smaller items (times in Asia/Shanghai, the sync
interval as configured, chronic filings' person columns, the revoke confirmation)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import sqlalchemy as sa

from core.db import db
from core.models import Upload
from core.settings import save_regulator_setting
from tests.test_twopath import new_filing, person, platform, submit_now, tp_registry  # noqa: F401
from tests.test_twopath_web import identify, relogin
from tests.test_web_support import login


def _last_envelope(report_type: str) -> dict:
    from core.models import Attempt

    upload = db.session.execute(sa.select(Upload).filter_by(report_type=report_type).order_by(Upload.id.desc())
                                .limit(1)).scalar_one()
    attempt = db.session.execute(sa.select(Attempt).filter_by(upload_id=upload.id).order_by(Attempt.id.desc())
                                 .limit(1)).scalar_one()
    return json.loads(attempt.plaintext)


def test_envelopes_and_sign_in_carry_the_users_own_operator_identity(platform, app):  # noqa: F811
    from plugins.twopath.models import SignIn

    wang = login(app, "operator", "wang")
    identify("wang", opter="1001", opter_name="王医生")
    li = login(app, "operator", "li")
    identify("li", opter="1002", opter_name="李护士")
    for web in (wang, li):
        found = web.post("/twopath/lookup", {"cert_type": "02", "number": person(0)["certno"]})
        assert person(0)["psn_no"] in found.get_data(as_text=True)
    envelope = _last_envelope("twopath.1101")
    assert (envelope["opter"], envelope["opter_name"], envelope["opter_type"]) == ("1002", "李护士", "1")
    assert sorted(s["opter"] for s in platform.records()["signins"]) == ["1001", "1002"]
    assert _last_envelope("twopath.9001")["input"]["signIn"]["opter_no"] == "1002"
    db.session.expire_all()
    assert {row.opter for row in db.session.execute(sa.select(SignIn)).scalars()} == {"1001", "1002"}


def test_a_user_without_an_operator_code_is_told_so_and_nothing_is_sent(platform, app):  # noqa: F811
    web = login(app, "operator", "nobody")
    found = web.post("/twopath/lookup", {"cert_type": "02", "number": person(0)["certno"]}).get_data(as_text=True)
    assert "没有医保经办人编号" in found
    page = web.post("/twopath/signin", follow_redirects=True).get_data(as_text=True)
    assert "没有医保经办人编号" in page
    filing = new_filing("twopath", 0)
    answer = web.post(f"/twopath/filings/{filing.id}/submit", follow_redirects=True).get_data(as_text=True)
    assert "没有医保经办人编号" in answer
    assert platform.records()["calls"].get("9001") == 1  # only new_filing's own sign-in (op1), none for us
    assert db.session.execute(sa.select(sa.func.count()).select_from(Upload)
                              .filter_by(report_type="twopath.2511")).scalar() == 0


def test_logging_out_signs_the_operator_out_unless_the_setting_says_not_to(platform, app):  # noqa: F811
    from plugins.twopath.models import SignIn

    web = login(app, "operator", "wang")
    identify("wang")
    web.post("/twopath/signin")
    assert len(platform.records()["signins"]) == 1
    web.post("/logout")
    assert platform.records()["signins"] == []  # 9002 reached the platform
    envelope = _last_envelope("twopath.9002")
    assert envelope["input"]["signOut"]["opter_no"] == "1001" and envelope["sign_no"]
    db.session.expire_all()
    assert db.session.get(SignIn, "1001").invalidated_at is not None

    save_regulator_setting("twopath", "sign_out_on_logout", "0")
    db.session.commit()
    web = relogin(app, "wang")
    web.post("/twopath/signin")
    web.post("/logout")
    assert len(platform.records()["signins"]) == 1


def test_the_sign_out_button_signs_out_and_a_second_press_has_nothing_to_do(platform, app):  # noqa: F811
    web = login(app, "operator", "wang")
    identify("wang")
    web.post("/twopath/signin")
    assert "签退成功" in web.post("/twopath/signout", follow_redirects=True).get_data(as_text=True)
    assert "无需签退" in web.post("/twopath/signout", follow_redirects=True).get_data(as_text=True)


def test_the_users_page_edits_name_and_operator_identity(app):
    from web.models import User

    admin = login(app, "admin")
    login(app, "operator", "wang")
    user = db.session.execute(sa.select(User).filter_by(username="wang")).scalar_one()
    answer = admin.post(f"/users/{user.id}", {"role": "operator", "active": "1", "display_name": "王五",
                                               "opter": "1001", "opter_name": "王医生", "opter_type": "3"})
    assert answer.status_code == 302
    db.session.expire_all()
    user = db.session.get(User, user.id)
    assert (user.display_name, user.opter, user.opter_name, user.opter_type) == ("王五", "1001", "王医生", "3")
    assert admin.post(f"/users/{user.id}", {"role": "operator", "active": "1", "opter": "x" * 31}).status_code == 302
    db.session.expire_all()
    assert db.session.get(User, user.id).opter == "1001"  # too long: refused, nothing changed
    page = admin.get("/users/").get_data(as_text=True)
    assert 'name="opter" value="1001"' in page


def test_sign_in_times_are_shown_in_shanghai_and_the_sync_page_shows_the_real_schedule(platform, app):  # noqa: F811
    from core import clock
    from core.models import Task
    from plugins.twopath.models import SignIn

    web = login(app, "operator", "wang")
    identify("wang")
    web.post("/twopath/signin")
    task = db.session.execute(sa.select(Task).filter_by(report_type="twopath.sync")).scalar_one_or_none()
    if task is None:
        task = Task(report_type="twopath.sync")
        db.session.add(task)
    task.cron = "*/5 * * * *"
    db.session.commit()
    row = db.session.get(SignIn, "1001")
    shanghai = clock.from_db(row.obtained_at).astimezone(clock.default_timezone())
    page = web.get("/twopath/sync").get_data(as_text=True)
    assert f"{shanghai:%Y-%m-%d %H:%M}" in page
    assert "*/5 * * * *" in page and "每 30 分钟" not in page


def test_chronic_filings_show_patient_and_id_masked_for_operators(platform, app):  # noqa: F811
    filing = new_filing("chronic", 1, code="M03900")
    assert filing.psn_name == person(1)["psn_name"] and filing.certno == person(1)["certno"]
    operator = login(app, "operator")
    rows = operator.get("/twopath/?kind=chronic").get_data(as_text=True).split("<tbody>", 1)[1]
    certno = person(1)["certno"]
    assert certno not in rows and certno[:3] in rows and person(1)["psn_name"][0] in rows
    admin = login(app, "admin")
    assert certno in admin.get("/twopath/?kind=chronic").get_data(as_text=True)


def test_revoking_asks_for_confirmation_and_no_template_has_inline_handlers(platform, app):  # noqa: F811
    filing = new_filing("twopath", 0)
    submit_now(filing)
    web = login(app, "operator")
    page = web.get(f"/twopath/filings/{filing.id}").get_data(as_text=True)
    form = re.search(r'<form[^>]*twopath/filings/\d+/revoke"[^>]*>', page, re.S).group(0)
    assert "data-confirm=" in form and "撤销" in form
    templates = Path(__file__).resolve().parents[1] / "plugins" / "twopath" / "templates"
    for path in templates.rglob("*.html"):
        text = path.read_text("utf-8")
        assert not re.search(r"\son[a-z]+=", text), path
        assert "|safe" not in text.replace("{{ chart|safe }}", ""), path


def test_revoking_from_the_upload_page_uses_the_users_operator_identity(platform, app):  # noqa: F811
    filing = new_filing("twopath", 0)
    submitted = submit_now(filing)
    nobody = login(app, "operator", "nobody")
    page = nobody.post(f"/uploads/{submitted.id}/actions/revoke", follow_redirects=True).get_data(as_text=True)
    assert "没有医保经办人编号" in page  # not the login name as operator code
    assert db.session.execute(sa.select(sa.func.count()).select_from(Upload)
                              .filter_by(report_type="twopath.2512")).scalar() == 0

    web = login(app, "operator", "wang")
    identify("wang", opter="1001", opter_name="王医生")
    assert web.post(f"/uploads/{submitted.id}/actions/revoke").status_code == 302
    revoke = db.session.execute(sa.select(Upload).filter_by(report_type="twopath.2512")).scalar_one()
    assert (revoke.rows[0]["opter"], revoke.rows[0]["opter_name"], revoke.rows[0]["opter_type"]) == (
        "1001", "王医生", "1")
