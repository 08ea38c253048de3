"""IHS end to end on the demo hospital: every defined interface planned from the default SQL, sent
through the real pipeline to the real sandbox over HTTP, in the document's call order; and nothing
at all when the known-answer gate is closed."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from test_ihs_support import SLOT, configure_sandbox, drain, plan_all, records, sandbox_log

from core.db import db
from core.errors import ConfigurationError
from core.models import Attempt, HeldBack, Slot, Upload, UploadStatus
from core.scheduler import run_slot
from plugins.ihs_supervision import catalogue

pytestmark = pytest.mark.slow


def his_count(his_url: str, sql: str) -> int:
    engine = sa.create_engine(his_url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(sql)).scalar_one()
    finally:
        engine.dispose()


def test_every_defined_interface_reaches_the_sandbox_in_call_order_and_is_accepted(app, serve, his):
    sandbox = configure_sandbox(serve)
    planned = plan_all()
    assert all(planned[item.code] for item in catalogue.interfaces()), planned

    waiting = db.session.execute(sa.select(sa.func.count(Upload.id))
                                 .where(Upload.status == UploadStatus.WAITING)).scalar_one()
    assert waiting >= len(planned) - 1  # all but the hospital wait for what they depend on

    drain(order="reverse")  # dependents are attempted first: the call order must hold them back

    db.session.expire_all()
    statuses = dict(db.session.execute(sa.select(Upload.status, sa.func.count()).group_by(Upload.status)).all())
    assert statuses == {UploadStatus.SUCCEEDED: sum(len(ids) for ids in planned.values())}
    expected = {
        "A1000": "SELECT COUNT(*) FROM ihs_hospitals",
        "A1001": "SELECT COUNT(*) FROM departments",
        "A1002": "SELECT COUNT(*) FROM ihs_staff",
        "A2000": "SELECT COUNT(*) FROM ihs_revisit_orders",
        "A2001": "SELECT COUNT(*) FROM ihs_revisit_services",
        "A2010": "SELECT COUNT(*) FROM ihs_consultations",
        "A0000": "SELECT COUNT(*) FROM ihs_attachments WHERE big = 0",
        "A0001": "SELECT COUNT(*) FROM ihs_attachments WHERE big = 1",
    }
    for code, sql in expected.items():
        kept = records(sandbox.url, code, limit=0)
        assert kept["count"] == his_count(his, sql) > 0, code
    # Call order: the sandbox refuses any row whose prerequisite it has not accepted (it never had to),
    # and the first accepted batch of each step comes after the first of the step it depends on.
    first = {}
    for index, batch in enumerate(sandbox_log(sandbox.url)):
        first.setdefault(catalogue.by_code(batch["code"]).step, index)
    assert first["hospital"] < first["department"] < first["staff"] < first["revisit_order"] \
        < first["revisit_service"] < first["attachment"]
    assert first["hospital"] < first["consultation"]
    held = db.session.execute(sa.select(Attempt).where(Attempt.message.like("等待前置上报%"))).scalars().all()
    assert all(a.wire_body is None and a.url is None for a in held)  # held back, never sent
    codes = set(db.session.execute(sa.select(Attempt.code)).scalars())
    assert "DEPENDENCY_MISSING" not in codes and codes == {"0"}
    # Services carry their question-and-answer process.
    service = records(sandbox.url, "A2001", limit=1)["records"][0]
    assert service["process"] and {"processTime", "role", "content"} <= set(service["process"][0])


def test_batches_hold_at_most_the_configured_rows(app, serve, his):
    configure_sandbox(serve, batch_size="10")
    [*ids] = run_slot("ihs.A1002", SLOT, enqueue=False)  # staff need departments: plan those first
    assert ids == []  # nothing planned: the hospital and departments are not planned yet
    run_slot("ihs.A1002", SLOT.replace(minute=1), enqueue=False)  # still waiting: said once, not twice
    [notice] = db.session.execute(sa.select(HeldBack).where(HeldBack.report_type == "ihs.A1002")).scalars()
    assert "等待前置数据" in notice.reason and "科室信息上传" in notice.reason
    run_slot("ihs.A1000", SLOT, enqueue=False)
    run_slot("ihs.A1001", SLOT, enqueue=False)
    later = SLOT.replace(minute=2)
    staff = run_slot("ihs.A1002", later, enqueue=False)
    sizes = [len(db.session.get(Upload, i).rows) for i in staff]
    assert max(sizes) == 10 and sum(sizes) == his_count(his, "SELECT COUNT(*) FROM ihs_staff")


def test_a_row_its_field_table_refuses_is_held_back_with_its_key_and_field_and_the_rest_go(app, serve, his):
    from core.models import ReportQuery
    from plugins.ihs_supervision.queries import A1000

    configure_sandbox(serve)
    partner = his_count(his, "SELECT hosp_id FROM ihs_hospitals WHERE is_self = 0 ORDER BY hosp_id LIMIT 1")
    db.session.add(ReportQuery(report_type="ihs.A1000", name="rows", sql=A1000.replace(
        "h.level AS", f"CASE WHEN h.hosp_id = '{partner}' THEN 34 ELSE h.level END AS")))  # 34: no such level
    db.session.commit()
    [upload_id] = run_slot("ihs.A1000", SLOT, enqueue=False)
    sent = {r["hospId"] for r in db.session.get(Upload, upload_id).rows}
    assert partner not in sent and len(sent) == his_count(his, "SELECT COUNT(*) FROM ihs_hospitals") - 1
    [held] = db.session.execute(sa.select(HeldBack).where(HeldBack.report_type == "ihs.A1000")).scalars()
    assert held.record_key == partner and held.field == "hospLevel"


def test_the_waiting_notice_clears_once_the_prerequisite_is_planned(app, serve, his):
    configure_sandbox(serve)
    run_slot("ihs.A1001", SLOT, enqueue=False)  # departments before their hospital: they wait
    [notice] = db.session.execute(sa.select(HeldBack).where(HeldBack.report_type == "ihs.A1001")).scalars()
    assert "等待前置数据" in notice.reason and not notice.resolved
    run_slot("ihs.A1000", SLOT, enqueue=False)
    assert run_slot("ihs.A1001", SLOT.replace(minute=1), enqueue=False)  # the departments go now
    db.session.expire_all()
    assert db.session.get(HeldBack, notice.id).resolved  # the dashboard no longer says they wait
    assert "等待前置数据" not in text_of_dashboard(app)


def text_of_dashboard(app) -> str:
    import html

    from tests.test_web_support import login

    return html.unescape(login(app, "viewer").get("/dashboard/panel").get_data(as_text=True))


@pytest.mark.parametrize("example", ["none", "wrong"])
def test_with_no_or_a_wrong_example_nothing_is_planned_or_sent_and_the_reason_is_recorded(app, serve, his, example):
    from test_ihs_support import enter_example

    from plugins.ihs_supervision import sandbox as ihs_sandbox

    sandbox = configure_sandbox(serve, example=False)
    if example == "wrong":
        wrong = {**ihs_sandbox.example_for(sandbox.config["key"]), "expected_sign": "00" * 32}
        state = enter_example(wrong, sandbox.config["key"])
        assert not state.open
    with pytest.raises(ConfigurationError, match="签名已知答案校验未通过"):
        run_slot("ihs.A1000", SLOT, enqueue=False)
    slot = db.session.execute(sa.select(Slot).where(Slot.report_type == "ihs.A1000")).scalar_one()
    assert slot.status == "error" and "签名" in slot.message
    assert db.session.execute(sa.select(sa.func.count(Upload.id))).scalar_one() == 0
    assert sandbox.state.requests == 0


def test_departments_can_be_sent_with_their_national_codes_and_unmapped_ones_are_held_back(app, serve, his):
    from core.models import HeldBack
    from plugins.keydata import models as keydata_models

    configure_sandbox(serve, dept_code_source="CT08.00.002")
    keydata_models.set_mapping("0101", "心内科", "A03.04", "tester")
    db.session.commit()
    run_slot("ihs.A1000", SLOT, enqueue=False)
    [department] = run_slot("ihs.A1001", SLOT, enqueue=False)

    rows = db.session.get(Upload, department).rows
    assert [r["deptCode"] for r in rows] == ["A03.04"] and rows[0]["deptName"] == "心内科"
    held = db.session.execute(sa.select(HeldBack).where(HeldBack.report_type == "ihs.A1001")).scalars().all()
    assert held and all("未对照到 CT08.00.002" in h.reason for h in held)
    assert len(held) == his_count(his, "SELECT COUNT(*) FROM departments") - 1
    # Staff go with their department's national code too, so they still name a department the platform has.
    staff = [row for i in run_slot("ihs.A1002", SLOT.replace(minute=2), enqueue=False)
             for row in db.session.get(Upload, i).rows]
    in_0101 = his_count(his, "SELECT COUNT(*) FROM ihs_staff s JOIN doctors d ON d.doctor_code = s.staff_code"
                             " WHERE d.dept_code = '0101'")
    assert in_0101 and len(staff) == in_0101 and {r["deptCode"] for r in staff} == {"A03.04"}
