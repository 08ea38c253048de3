"""The known-answer gate: closed without an example, closed for a recipe that does not reproduce it,
open once verified, closed again when the key or the recipe changes; never stores the live key."""

from __future__ import annotations

from test_ihs_support import REGULATOR, configure_sandbox, current_settings, enter_example, plan_rows, upload

from core import pipeline
from core.db import db
from core.models import UploadStatus
from core.settings import save_regulator_setting
from plugins.ihs_supervision import gate, recipes
from plugins.ihs_supervision import sandbox as ihs_sandbox
from plugins.ihs_supervision.models import SignGate


def test_the_gate_is_closed_until_an_example_is_entered_and_verified(app, serve):
    sandbox = configure_sandbox(serve, example=False)
    state = gate.state(current_settings())
    assert not state.open and "尚未录入" in state.reason

    saved = enter_example(ihs_sandbox.example_for(sandbox.config["key"]), sandbox.config["key"], verify=False)
    assert not saved.open and "尚未点击" in saved.reason

    verified = enter_example(ihs_sandbox.example_for(sandbox.config["key"]), sandbox.config["key"])
    assert verified.open and verified.recipe == ihs_sandbox.DEMO_RECIPE and verified.verified_by == "tester"


def test_a_recipe_that_does_not_reproduce_the_example_keeps_the_gate_closed(app, serve):
    sandbox = configure_sandbox(serve, example=False, sign_output="hex")  # the vendor's sign is upper hex
    state = enter_example(ihs_sandbox.example_for(sandbox.config["key"]), sandbox.config["key"])
    assert not state.open and "不能复现" in state.reason
    assert gate.record().fingerprint is None


def test_changing_the_key_or_the_recipe_closes_the_gate_until_verified_again(app, serve):
    sandbox = configure_sandbox(serve)
    assert gate.state(current_settings()).open

    save_regulator_setting(REGULATOR, "app_secret", "another-key")
    db.session.commit()
    state = gate.state(current_settings())
    assert not state.open and "重新验证" in state.reason

    save_regulator_setting(REGULATOR, "app_secret", sandbox.config["key"])
    db.session.commit()
    assert gate.state(current_settings()).open  # the very key that was verified

    equivalent = recipes.SignRecipe(digest="SM3", layout="pairs", key_placement="pair_last", output="hex")
    for key, value in equivalent.settings().items():
        save_regulator_setting(REGULATOR, key, value)
    db.session.commit()
    assert not gate.state(current_settings()).open  # lower hex no longer reproduces the vendor's sign


def test_the_gate_record_keeps_a_fingerprint_never_the_key(app, serve):
    sandbox = configure_sandbox(serve)
    record = db.session.get(SignGate, REGULATOR)
    key = sandbox.config["key"]
    assert record.fingerprint and key not in record.fingerprint
    assert key not in record.example_key  # sealed at rest
    assert all(key not in (getattr(record, name) or "") for name in gate.EXAMPLE_FIELDS)
    assert record.fingerprint == gate.fingerprint(key, ihs_sandbox.DEMO_RECIPE)


def test_the_search_proposes_the_vendors_recipe(app, serve):
    configure_sandbox(serve, example=False, sign_digest="")
    key = "vendor-demo-key"
    enter_example(ihs_sandbox.example_for(key), key, verify=False)
    found = gate.search()
    assert ihs_sandbox.DEMO_RECIPE in found


def test_an_upload_planned_while_open_is_refused_with_the_reason_once_the_gate_closes(app, serve):
    sandbox = configure_sandbox(serve)
    from test_ihs_support import hospital_row

    upload_id = plan_rows("A1000", [hospital_row()])
    save_regulator_setting(REGULATOR, "sign_output", "base64")
    db.session.commit()

    assert pipeline.attempt(upload_id, 0) == UploadStatus.REJECTED
    refused = upload(upload_id)
    assert "签名已知答案校验未通过" in refused.last_message
    assert refused.attempt_list[0].wire_body is None and sandbox.state.requests == 0


def test_the_demo_seed_enters_the_sandboxes_example_and_opens_the_gate(app, serve):
    configure_sandbox(serve, example=False)
    assert not gate.state(current_settings()).open
    ihs_sandbox.seed()
    state = gate.state(current_settings())
    assert state.open and state.verified_by == "demo"


def test_test_connection_reports_the_gate_and_says_it_is_not_conclusive(app, serve):
    from core.plugins import registry
    from plugins.ihs_supervision import plugin

    configure_sandbox(serve, example=False)
    result = plugin.test_connection(registry().regulators[REGULATOR], current_settings())
    assert not result.ok and not result.conclusive and "签名未验证" in result.message
    assert [s.name for s in result.steps] == ["签名已知答案门禁", "HTTP"]
