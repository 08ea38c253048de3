"""Every branch of each plugin's resend strategy (plugins/*/delivery.py), from the ledger's knowledge
(history, delivery_uncertain, result) to the flag / msgid sent and the outcome of an answer. The
end-to-end behaviour against the sandboxes is in test_fault_matrix.py."""

from __future__ import annotations

import pytest

from core.hook_types import AttemptRecord, Outcome, Response, Settings, UploadContext
from plugins.keydata import delivery as keydata
from plugins.keydata import plugin as keydata_plugin
from plugins.keydata import spec
from plugins.shangrao_insurance import common
from plugins.shangrao_insurance import delivery as shangrao
from plugins.twopath import delivery as twopath

ROW = {name: i for i, name in enumerate(spec.HOSPITAL_DAILY_FIELDS, start=1)}
CODE = "H36110200001"


def attempt(number: int, delivery: str | None, outcome: str | None, code: str | None = None) -> AttemptRecord:
    return AttemptRecord(number=number, delivery=delivery, outcome=outcome, code=code, resend=False,
                         operation_sent=None)


LOST_ANSWER = attempt(1, "maybe_delivered", "retry")  # stored, perhaps: the connection dropped after sending
NEVER_LEFT = attempt(1, "not_sent", "retry")  # connection refused
SERVER_500 = attempt(1, "answered", "retry", "HTTP 500")
DEAD_WORKER = attempt(1, "unknown", "unknown")
REFUSED = attempt(1, "answered", "reject", "400")


def context(*, operation: str = "new", history=(), uncertain: bool = False, result=None, rows=None,
            attempt_no: int | None = None, idempotency_key: str = "i", report_type=None) -> UploadContext:
    upload = UploadContext(
        id=1, report_type=report_type or keydata_plugin.report_types()[0], business_key="k",
        period="2025/01/31 23:59:59", department=None, rows=rows or [ROW], idempotency_key=idempotency_key,
        operation=operation, attempt_no=attempt_no or len(history) + 1,
        resend=uncertain or operation == "update", settings=Settings("x", {}), result=dict(result or {}),
    )
    upload.history = tuple(history)
    upload.delivery_uncertain = uncertain
    return upload


def answer(code: int, message: str = "") -> tuple[Response, Outcome]:
    response = Response(status=200, body=f'{{"code": {code}, "message": "{message}"}}')
    return response, keydata_plugin.classify(response)


# --- keydata: the flag ----------------------------------------------------------------------------

@pytest.mark.parametrize(("history", "flag"), [
    ((), "1"), ((NEVER_LEFT,), "1"), ((REFUSED,), "1"),
    ((LOST_ANSWER,), "2"), ((SERVER_500,), "2"), ((DEAD_WORKER,), "2"),
])
def test_keydata_sends_new_unless_an_earlier_attempt_may_have_landed(history, flag):
    assert keydata.flag_to_send(context(history=history)) == flag


def test_keydata_follows_its_own_decision_then_corrections_and_withdrawals():
    assert keydata.flag_to_send(context(history=[LOST_ANSWER], result={keydata.NEXT_FLAG: "1"})) == "1"
    assert keydata.flag_to_send(context(operation="update")) == "2"
    assert keydata.flag_to_send(context(operation="delete", result={keydata.NEXT_FLAG: "1"})) == "3"


def test_the_ledger_flag_alone_makes_it_a_resend():
    assert keydata.flag_to_send(context(uncertain=True)) == "2"


# --- keydata: the answer --------------------------------------------------------------------------

def test_keydata_success_remembers_that_the_platform_holds_the_figures():
    outcome = keydata.decide(context(), *answer(200, "success"))
    assert outcome.kind == "success"
    assert outcome.result == {keydata.NEXT_FLAG: "2", keydata.LANDED_DIGEST: keydata.digest([ROW])}


def test_an_uncertain_failure_makes_the_next_attempt_an_update():
    lost = Response(status=None, body="", error="RemoteDisconnected")
    lost.transport = "maybe_delivered"
    outcome = keydata.decide(context(), lost, keydata_plugin.classify(lost))
    assert outcome.kind == "retry" and outcome.result[keydata.NEXT_FLAG] == "2"


def test_a_request_that_never_left_keeps_the_next_attempt_new():
    refused = Response(status=None, body="", error="连接失败: refused")
    refused.transport = "not_sent"
    outcome = keydata.decide(context(), refused, keydata_plugin.classify(refused))
    assert outcome.kind == "retry" and keydata.NEXT_FLAG not in outcome.result


def test_an_update_the_platform_does_not_hold_is_followed_by_a_new_at_once():
    outcome = keydata.decide(context(history=[SERVER_500]), *answer(404, "更新失败：数据不存在"))
    assert (outcome.kind, outcome.follow_up, outcome.result[keydata.NEXT_FLAG]) == ("retry", True, "1")


def test_a_duplicate_after_an_uncertain_attempt_with_the_same_figures_is_delivered():
    held = {keydata.LANDED_DIGEST: keydata.digest([ROW]), keydata.NEXT_FLAG: "1"}
    outcome = keydata.decide(context(history=[LOST_ANSWER], result=held), *answer(409, "数据重复"))
    assert outcome.kind == "success" and not outcome.follow_up


def test_a_duplicate_after_an_uncertain_attempt_with_other_or_unknown_figures_is_followed_by_an_update():
    for result in ({keydata.NEXT_FLAG: "1"}, {keydata.NEXT_FLAG: "1", keydata.LANDED_DIGEST: "older"}):
        outcome = keydata.decide(context(history=[DEAD_WORKER], result=result), *answer(409, "数据重复"))
        assert (outcome.kind, outcome.follow_up, outcome.result[keydata.NEXT_FLAG]) == ("retry", True, "2")


def test_a_duplicate_on_a_certain_first_attempt_updates_the_record_someone_else_sent():
    outcome = keydata.decide(context(), *answer(409, "数据重复：该统计日期已上报"))
    assert (outcome.kind, outcome.follow_up, outcome.result[keydata.NEXT_FLAG]) == ("retry", True, "2")


def test_a_withdrawal_of_an_absent_record_succeeds_only_after_an_uncertain_attempt():
    gone = keydata.decide(context(operation="delete", history=[LOST_ANSWER]), *answer(404, "删除失败：没有已上报的数据"))
    assert gone.kind == "success"
    never = keydata.decide(context(operation="delete"), *answer(404, "删除失败：没有已上报的数据"))
    assert never.kind == "reject"


def test_other_refusals_are_rejections_that_keep_the_strategy_state():
    outcome = keydata.decide(context(result={keydata.NEXT_FLAG: "1"}), *answer(400, "数据校验失败：presCount"))
    assert outcome.kind == "reject" and keydata.NEXT_FLAG not in outcome.result
    assert keydata.flag_to_send(context(result={keydata.NEXT_FLAG: "1"})) == "1"  # the retry re-runs it


def test_an_update_refused_in_words_that_say_neither_is_followed_by_a_new_once():
    first = keydata.decide(context(history=[SERVER_500]), *answer(400, "处理失败"))
    assert (first.kind, first.follow_up, first.result[keydata.NEXT_FLAG]) == ("retry", True, "1")
    then = context(history=[SERVER_500, attempt(2, "answered", "retry", "400")], result=first.result)
    assert keydata.flag_to_send(then) == "1"
    again = keydata.decide(then, *answer(400, "处理失败"))
    assert again.kind == "reject" and not again.follow_up and "均被拒绝" in again.message
    # The retry after the fix starts from the top: an update, since the first attempt may have landed.
    assert keydata.flag_to_send(context(history=[SERVER_500], result=again.result)) == "2"


def test_a_held_record_whose_update_is_refused_after_a_new_is_a_rejection():
    refused_update = {keydata.NEXT_FLAG: "2", keydata.UPDATE_REFUSED: True}
    outcome = keydata.decide(context(history=[LOST_ANSWER], result=refused_update), *answer(400, "处理失败"))
    assert outcome.kind == "reject" and not outcome.follow_up


def test_an_answer_that_is_not_a_refusal_starts_the_round_again():
    refused_update = {keydata.NEXT_FLAG: "1", keydata.UPDATE_REFUSED: True}
    ok = keydata.decide(context(history=[LOST_ANSWER], result=refused_update), *answer(200, "success"))
    lost = Response(status=None, body="", error="RemoteDisconnected")
    lost.transport = "maybe_delivered"
    retry = keydata.decide(context(history=[LOST_ANSWER], result=refused_update), lost, keydata_plugin.classify(lost))
    assert ok.result[keydata.UPDATE_REFUSED] is None and retry.result[keydata.UPDATE_REFUSED] is None


def test_not_found_or_duplicate_with_an_http_500_is_read_by_its_words():
    for message, kind in (("更新失败：数据不存在", "not_held"), ("数据重复", "duplicate")):
        response = Response(status=500, body=f'{{"code": 500, "message": "{message}"}}')
        assert keydata.answer_kind(keydata_plugin.classify(response), response) == kind
    busy = Response(status=500, body='{"code": 500, "message": "系统异常"}')
    assert keydata_plugin.classify(busy).kind == "retry"
    page = Response(status=502, body="<html>502 Bad Gateway: upstream does not exist</html>")
    assert keydata_plugin.classify(page).kind == "retry"  # only the platform's own message is read


def test_a_refused_first_new_is_not_followed():
    outcome = keydata.decide(context(), *answer(400, "处理失败"))
    assert outcome.kind == "reject" and not outcome.follow_up


def test_not_found_and_duplicate_words_are_told_apart():
    assert keydata.answer_kind(Outcome("reject", "500", "删除失败：该统计日期没有已上报的数据"), Response(200, "")) == "not_held"
    assert keydata.answer_kind(Outcome("reject", "500", "记录已存在"), Response(200, "")) == "duplicate"
    assert keydata.answer_kind(Outcome("reject", "409", "冲突"), Response(200, "")) == "duplicate"
    assert keydata.answer_kind(Outcome("reject", "400", "数据校验失败"), Response(200, "")) == "reject"


# --- Shangrao -------------------------------------------------------------------------------------

def shangrao_context(history=(), uncertain=False, result=None) -> UploadContext:
    from plugins.shangrao_insurance import plugin

    return context(history=history, uncertain=uncertain, result=result, idempotency_key=common.new_msgid(CODE),
                   report_type=plugin.register_report_types()[0])


@pytest.mark.parametrize("history", [[LOST_ANSWER], [SERVER_500], [DEAD_WORKER], [REFUSED, LOST_ANSWER]])
def test_40005_after_a_possibly_delivered_attempt_is_already_received(history):
    upload = shangrao_context(history=[attempt(i + 1, a.delivery, a.outcome) for i, a in enumerate(history)])
    outcome = shangrao.on_duplicate(upload, "请勿重复提交")
    assert outcome.kind == "success" and outcome.result["msgid"] == upload.idempotency_key


@pytest.mark.parametrize("history", [[], [NEVER_LEFT], [REFUSED]])
def test_40005_with_nothing_of_ours_delivered_is_a_collision_resent_with_a_new_msgid(history):
    upload = shangrao_context(history=history)
    outcome = shangrao.on_duplicate(upload, "请勿重复提交")
    assert outcome.kind == "retry" and outcome.follow_up
    fresh = outcome.result[shangrao.MSGID]
    assert fresh != upload.idempotency_key and fresh.startswith(CODE) and len(fresh) == common.MSGID_LENGTH
    assert outcome.result[shangrao.MSGID_FROM] == upload.attempt_no + 1
    assert outcome.result[shangrao.RETIRED] == [upload.idempotency_key]


def test_after_a_new_msgid_only_its_own_attempts_count():
    fresh = common.new_msgid(CODE)
    state = {shangrao.MSGID: fresh, shangrao.MSGID_FROM: 3}
    # attempts 1-2 (old msgid) were uncertain; attempt 3 with the new msgid never left
    upload = shangrao_context(history=[LOST_ANSWER, attempt(2, "answered", "retry", "40005"),
                                       attempt(3, "not_sent", "retry")], uncertain=True, result=state)
    assert shangrao.msgid(upload) == fresh
    collision = shangrao.on_duplicate(upload, "请勿重复提交")
    assert collision.kind == "retry" and collision.result[shangrao.MSGID] != fresh
    upload.history += (attempt(4, "maybe_delivered", "retry"),)
    assert shangrao.on_duplicate(upload, "请勿重复提交").kind == "success"


# --- two-channel ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("history", "uncertain", "query"), [
    ((), False, False), ((NEVER_LEFT,), False, False), ((REFUSED,), False, False),
    ((LOST_ANSWER,), False, True), ((SERVER_500,), False, True), ((DEAD_WORKER,), False, True),
    ((), True, True),
])
def test_a_filing_queries_first_after_any_possibly_delivered_attempt(app, history, uncertain, query):
    from plugins.twopath import plugin

    [rt] = [r for r in plugin.register_report_types() if r.name == "twopath.2511"]
    upload = context(history=history, uncertain=uncertain, report_type=rt)
    assert twopath.must_query_first(upload, "2511", {"filing_id": None}) is query
    assert twopath.must_query_first(upload, "2511", {"filing_id": None, "query_first": True}) is True
    assert twopath.must_query_first(upload, "1101", {"query_first": True}) is False  # only filings


def test_an_earlier_submission_that_may_have_landed_makes_a_resubmission_query_first(app):
    from core import ledger
    from core.db import db
    from core.hook_types import UploadPlan
    from core.models import Attempt, Upload, UploadStatus
    from plugins.twopath import plugin

    [rt] = [r for r in plugin.register_report_types() if r.name == "twopath.2511"]
    [earlier_id] = ledger.record_plans(rt, [UploadPlan(business_key="filing-7-submit-1", period="p", rows=[{}])])
    upload = context(report_type=rt)
    upload.id = earlier_id + 1
    assert not twopath.must_query_first(upload, "2511", {"filing_id": 7})
    db.session.add(Attempt(upload_id=earlier_id, number=1, delivery="maybe_delivered", outcome="retry"))
    db.session.get(Upload, earlier_id).status = UploadStatus.FAILED
    db.session.commit()
    assert twopath.must_query_first(upload, "2511", {"filing_id": 7})
    db.session.get(Upload, earlier_id).status = UploadStatus.SUCCEEDED  # it gave an application number
    db.session.commit()
    assert not twopath.must_query_first(upload, "2511", {"filing_id": 7})
