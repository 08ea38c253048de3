# ruff: noqa: F811  (fixtures imported from test_config_support are used as parameters)
"""配置管理 › 科室字典映射: listing with suggestions and coverage, one-click acceptance, manual links,
suspicious mappings, and the Excel round trip with all-or-nothing validation."""

from __future__ import annotations

import io

import pytest
from test_config_support import departments, his, his_url  # noqa: F401  (fixtures)
from test_web_support import login

from core.models import AuditLog, HeldBack


def _mapping(code: str):
    from plugins.keydata import models

    return models.mappings().get(code)


def _workbook(rows: list[list]) -> bytes:
    from openpyxl import Workbook

    from web.config_departments import EXPORT_HEADER

    book = Workbook()
    book.active.append(list(EXPORT_HEADER))
    for row in rows:
        book.active.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def test_page_lists_unmapped_with_ranked_suggestions_and_coverage(app, departments):
    from core.db import db

    db.session.add(HeldBack(report_type="keydata.dept_daily", period="2025/02/17 07:59:59", record_key="0105",
                            field="departNo", reason="尚未对照"))
    db.session.commit()
    client = login(app, "viewer")
    html = client.get("/config/departments/?show=unmapped").get_data(as_text=True)
    assert "内分泌代谢科" in html and "心内科病区" not in html  # 2101 is mapped in the demo
    row = html[html.index('id="dept-0105"'):]
    row = row[:row.index("</tr>")]
    assert "A03.07" in row and "内分泌专业" in row and "%" in row
    assert "采纳" not in row  # a viewer sees suggestions but cannot accept them
    from web.config_departments import build_rows, coverage

    rows, _ = build_rows()
    cover = coverage(rows)
    assert cover["unmapped"] == sum(r.status == "unmapped" for r in rows) > 0
    assert cover["unmapped_held"] == 1 and cover["held_records"] == 1
    assert cover["pending_unmapped"] >= 1 and cover["today"] > 0


def test_accept_a_suggestion_in_one_click(app, departments):
    client = login(app, "operator")
    answer = client.post("/config/departments/map", {"local_code": "0105", "local_name": "内分泌代谢科",
                                                     "national_code": "A03.07", "how": "suggestion"},
                         headers={"HX-Request": "true"})
    html = answer.get_data(as_text=True)
    assert answer.status_code == 200 and answer.headers["HX-Trigger"] == "deptChanged"
    assert html.lstrip().startswith('<tr id="dept-0105"') and "已对照" in html and "A03.07" in html
    assert _mapping("0105").national_code == "A03.07" and _mapping("0105").updated_by == "operator-user"
    from core.db import db

    entry = db.session.execute(db.select(AuditLog).filter_by(action="department.map")).scalars().one()
    assert entry.target == "0105" and entry.before is None and entry.after["how"] == "suggestion"


def test_manual_link_accepts_datalist_text_and_refuses_unknown_codes(app, departments):
    client = login(app, "operator")
    client.post("/config/departments/map", {"local_code": "0901", "local_name": "心理科",
                                            "national_code": "A15.06 临床心理专业"})
    assert _mapping("0901").national_code == "A15.06"
    html = client.post("/config/departments/map", {"local_code": "0901", "local_name": "心理科",
                                                   "national_code": "Z99"},
                       headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "Z99 不在 CT08.00.002 中" in html and _mapping("0901").national_code == "A15.06"


def test_manual_link_accepts_a_name_and_says_which_codes_an_ambiguous_name_could_mean(app, departments):
    client = login(app, "operator")
    client.post("/config/departments/map", {"local_code": "0901", "local_name": "心理科",
                                            "national_code": "临床心理专业"})
    assert _mapping("0901").national_code == "A15.06"
    html = client.post("/config/departments/map", {"local_code": "0901", "local_name": "心理科",
                                                   "national_code": "心理"},
                       headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "对应多个" in html and "A15.06" in html and _mapping("0901").national_code == "A15.06"
    html = client.post("/config/departments/map", {"local_code": "0901", "local_name": "心理科",
                                                   "national_code": "不存在的科"},
                       headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "不是" in html and "代码或名称" in html


def test_suspicious_mapping_is_flagged_with_a_better_suggestion(app, departments):
    from core.db import db
    from plugins.keydata import models

    models.set_mapping("0101", "心内科", "A12.07", "someone")  # 口腔正畸 for 心内科: a slip
    db.session.commit()
    html = login(app, "viewer").get("/config/departments/?show=suspicious").get_data(as_text=True)
    row = html[html.index('id="dept-0101"'):]
    row = row[:row.index("</tr>")]
    assert "可疑" in row and "相似度低" in row and "A03.04" in row


def test_viewer_cannot_map(app, departments):
    answer = login(app, "viewer").post("/config/departments/map", {"local_code": "0105", "local_name": "x",
                                                                   "national_code": "A03.07"})
    assert answer.status_code == 403 and _mapping("0105") is None


def test_export_imports_back_unchanged(app, departments):
    client = login(app, "operator")
    exported = client.get("/config/departments/export.xlsx")
    assert exported.status_code == 200 and exported.mimetype.endswith("sheet")
    answer = client.post("/config/departments/import", {"action": "apply",
                                                        "file": (io.BytesIO(exported.data), "export.xlsx")},
                         content_type="multipart/form-data")
    html = answer.get_data(as_text=True)
    assert answer.status_code == 200 and "没有需要修改的对照" in html


def test_bad_import_applies_nothing_and_lists_every_bad_row(app, departments):
    from plugins.keydata import models

    before = {code: m.national_code for code, m in models.mappings().items()}
    data = _workbook([
        ["0105", "内分泌代谢科", "A03.07", ""],  # fine on its own
        ["0901", "心理科", "X99.9", ""],  # unknown code
        ["0105", "内分泌代谢科", "A03.07", ""],  # duplicate local code
        ["0501", "", "A11", ""],  # empty name
        ["", "无代码科室", "A11", ""],  # empty code
        ["0101", "心内科", "", ""],  # would silently unmap a mapped department
    ])
    client = login(app, "operator")
    answer = client.post("/config/departments/import", {"action": "apply", "file": (io.BytesIO(data), "bad.xlsx")},
                         content_type="multipart/form-data")
    html = answer.get_data(as_text=True)
    assert answer.status_code == 422 and "未导入任何内容" in html
    for words in ("第 3 行", "X99.9 不在 CT08.00.002 中", "第 4 行", "与第 2 行重复", "第 5 行", "院内科室名称为空",
                  "第 6 行", "院内科室代码为空", "第 7 行", "国家科室代码为空"):
        assert words in html, words
    assert {code: m.national_code for code, m in models.mappings().items()} == before


def test_dry_run_shows_changes_then_import_applies_them(app, departments):
    data = _workbook([["0105", "内分泌代谢科", "A03.07", ""], ["0101", "心内科", "A03.04", "心血管内科专业"],
                      ["0201", "普外科门诊", "A04", ""]])
    client = login(app, "operator")
    html = client.post("/config/departments/import", {"action": "dry_run", "file": (io.BytesIO(data), "a.xlsx")},
                       content_type="multipart/form-data").get_data(as_text=True)
    assert "试运行" in html and "新对照" in html and "修改对照" in html and "1 行不变" in html
    assert _mapping("0105") is None and _mapping("0201").national_code == "A04.01"
    html = client.post("/config/departments/import", {"action": "apply", "file": (io.BytesIO(data), "a.xlsx")},
                       content_type="multipart/form-data").get_data(as_text=True)
    assert "已导入" in html
    assert _mapping("0105").national_code == "A03.07" and _mapping("0201").national_code == "A04"
    from core.db import db

    entry = db.session.execute(db.select(AuditLog).filter_by(action="department.import")).scalars().one()
    assert entry.after["changed"] == 2


def test_not_an_excel_file(app, departments):
    answer = login(app, "operator").post("/config/departments/import",
                                         {"action": "apply", "file": (io.BytesIO(b"a,b,c"), "x.csv")},
                                         content_type="multipart/form-data")
    assert answer.status_code == 422 and "不是有效的 Excel" in answer.get_data(as_text=True)


@pytest.mark.parametrize("show", ["all", "mapped", "pending"])
def test_filters_render(app, departments, show):
    assert login(app, "viewer").get(f"/config/departments/?show={show}").status_code == 200


def test_an_import_over_the_row_cap_applies_nothing_and_says_so(app, departments, monkeypatch):
    from plugins.keydata import models
    from web import config_departments

    monkeypatch.setattr(config_departments, "MAX_IMPORT_ROWS", 2)
    before = {code: m.national_code for code, m in models.mappings().items()}
    data = _workbook([["0105", "内分泌代谢科", "A03.07", ""], ["0201", "普外科门诊", "A04", ""],
                      ["0101", "心内科", "A03.04", ""]])
    answer = login(app, "operator").post("/config/departments/import",
                                         {"action": "apply", "file": (io.BytesIO(data), "big.xlsx")},
                                         content_type="multipart/form-data")
    assert answer.status_code == 422 and "超过 2 行，请分批导入" in answer.get_data(as_text=True)
    assert {code: m.national_code for code, m in models.mappings().items()} == before
