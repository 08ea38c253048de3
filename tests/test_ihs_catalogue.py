"""The interfaces as data: every schema file becomes a report type, a sandbox route and a place in
the call order; the steps the copy lacks are 文档缺失 until a schema file is added, which is all it
takes to enable one."""

from __future__ import annotations

import json
import shutil

import pytest

from plugins.ihs_supervision import catalogue, plugin, protocol
from plugins.ihs_supervision import sandbox as ihs_sandbox

DEFINED = ["A1000", "A1001", "A1002", "A2000", "A2001", "A2010", "A0000", "A0001"]


def test_the_defined_interfaces_follow_the_documents_call_order():
    assert [i.code for i in catalogue.interfaces()] == DEFINED
    assert [s.name for s in catalogue.missing_steps()] == ["emr", "recipe", "drug_order", "drug"]


def test_missing_steps_are_declared_unavailable_with_the_reason():
    declared = {r.name: r for r in plugin.register_report_types()}
    for code in DEFINED:
        assert declared[f"ihs.{code}"].available and declared[f"ihs.{code}"].schema is not None
    for step in ("emr", "recipe", "drug_order", "drug"):
        missing = declared[f"ihs.{step}"]
        assert not missing.available and "文档缺失" in missing.unavailable_reason and "文档缺失" in missing.title


@pytest.mark.parametrize("interface", catalogue.interfaces(), ids=lambda i: i.code)
def test_every_interface_validates_its_rows_against_its_field_table(interface):
    problems = interface.schema.validate({})
    required = {f.name for f in interface.schema.fields if f.required or f.has_const}
    assert required and {p.field for p in problems} >= required
    assert any(p.reason == "字段不在接口字段表中" for p in interface.schema.validate({"notAField": 1}))


@pytest.fixture
def schemas_with_recipe(tmp_path, monkeypatch):
    folder = tmp_path / "schemas"
    shutil.copytree(catalogue.SCHEMAS, folder)
    (folder / "A3000.json").write_text(json.dumps({
        "name": "ihs.A3000", "title": "处方信息上传", "source": "a complete copy of the document",
        "interface": {"code": "A3000", "service": "A3000", "step": "recipe", "key_field": "recipeId",
                      "path": "/ihs/api/recipe/info", "title": "处方信息上传", "batch_limit": 10000,
                      "max_request_bytes": 31457280},
        "fields": [{"name": "recipeId", "title": "处方 id", "type": "string", "max_length": 64, "required": True},
                   {"name": "orderId", "title": "复诊订单号", "type": "string", "max_length": 64, "required": True}],
    }, ensure_ascii=False), "utf-8")
    monkeypatch.setattr(catalogue, "SCHEMAS", folder)
    catalogue.interfaces.cache_clear()
    yield folder
    catalogue.interfaces.cache_clear()


def test_adding_a_schema_file_is_all_it_takes_to_enable_a_missing_interface(schemas_with_recipe):
    declared = {r.name: r for r in plugin.register_report_types()}
    assert declared["ihs.A3000"].available and "ihs.recipe" not in declared
    assert "recipe" not in [s.name for s in catalogue.missing_steps()]
    # Its place in the call order comes with it: services now wait for their prescription.
    assert ("recipe", "recipeId") in catalogue.active_requirements("revisit_service")
    assert ("revisit_order", "orderId") in catalogue.active_requirements("recipe")
    app = ihs_sandbox.make_app({"appid": "a", "key": "k"})
    assert "/ihs/api/recipe/info" in {rule.rule for rule in app.url_map.iter_rules()}
    # The sandbox checks its place too: a prescription for a re-visit order it never received is refused.
    data = protocol.encode_data([{"recipeId": "R1", "orderId": "O-never-sent"}])
    headers = {"service": "A3000", "appid": "a", "randomstr": "r" * 32}
    headers["sign"] = ihs_sandbox.DEMO_RECIPE.sign(
        protocol.sign_values("A3000", "a", headers["randomstr"], "2025-02-19 10:00:00", data), "k")
    answer = app.test_client().post("/ihs/api/recipe/info", headers=headers,
                                    data=protocol.encode_body("2025-02-19 10:00:00", data)).get_json()
    assert answer["code"] == "DEPENDENCY_MISSING" and "O-never-sent" in answer["message"]
