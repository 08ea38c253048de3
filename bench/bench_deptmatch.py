"""Suggestion quality of core.deptmatch: ``python bench/bench_deptmatch.py``.

Evaluation sets in tests/data/ (``local_name`` or ``name``, ``expected_code``; several defensible codes as ``A|B``).
Every set has been used for tuning, so every figure flatters; the first-measure figures below are the honest
ones, each taken before the set was used:
- department_names.csv: the project's own names (written with the alias table);
- department_names_independent.csv: county/city/tertiary HIS names (rooms with English abbreviations,
  functional rooms, offices, 专病门诊, new-style 中心 / …与…科 names), written without the alias table;
- department_names_fresh.csv: a second such set, first measured untuned at 83.7 % / 91.3 %;
- department_names_unseen.csv: 113 names by a later audit, first measured untuned at 79.6 % / 85.0 %; used
  as a development set since the concept lexicon (CONCEPT_TABLE) was written;
- department_names_dev.csv: 259 development names written with the concept lexicon (flatters the most);
- department_names_dev2.csv: 152 names written after the lexicon and measured once before tuning on them:
  93.4 % / 98.0 % -- the best estimate of what names nobody has seen get.
- department_names_sealed.csv: 250 names (county, city, tertiary, TCM and maternal-and-child HIS) written by a
  separate author who saw only the CT08.00.002 dictionary and the key-data document, never the matcher, its
  tables or the other sets; kept away from the tuning and measured twice, once on the matcher before the
  concept lexicon (95.2 % / 97.2 %) and once after it (98.0 % / 98.8 %). It is the honest figure, as long
  as nobody tunes on it: add names the matcher misses to a development set instead.

Prints, per set, top-1 and top-3 accuracy, how many names got an empty list (must be 0), the time per
suggestion, and the misses. For the project's own set it also prints the held-out figure: each name matched
with its own exact alias removed from the table. ``--no-aliases`` measures the similarity alone.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.deptmatch import ALIASES, Matcher, stem  # noqa: E402
from plugins.keydata.spec import dictionary_entries  # noqa: E402

DATA = ROOT / "tests" / "data" / "department_names.csv"
INDEPENDENT = ROOT / "tests" / "data" / "department_names_independent.csv"
FRESH = ROOT / "tests" / "data" / "department_names_fresh.csv"
UNSEEN = ROOT / "tests" / "data" / "department_names_unseen.csv"
DEV = ROOT / "tests" / "data" / "department_names_dev.csv"
DEV2 = ROOT / "tests" / "data" / "department_names_dev2.csv"
SEALED = ROOT / "tests" / "data" / "department_names_sealed.csv"
# (set, how it was used, its figure before it was used for tuning)
SETS = (
    (INDEPENDENT, "已用于调整", None),
    (FRESH, "已用于调整", "0.837 / 0.913"),
    (UNSEEN, "已用于调整", "0.796 / 0.850"),
    (DEV, "开发集，已用于调整", None),
    (DEV2, "开发集，已用于调整", "0.934 / 0.980"),
    (SEALED, "密封集，另一作者编写，未用于调整", "0.952 / 0.972（加入概念词表之前的匹配器）"),
)


def load_cases(path: Path = DATA) -> list[tuple[str, str]]:
    """(local name, expected code); an expected code may be several defensible codes joined by '|'."""
    with path.open(encoding="utf-8") as handle:
        return [(row.get("local_name") or row["name"], row["expected_code"]) for row in csv.DictReader(handle)]


def evaluate(matcher: Matcher | None, cases: list[tuple[str, str]]) -> dict:
    """top-1/top-3 accuracy; ``matcher=None`` is the held-out measure (each name without its own alias)."""
    top1 = top3 = empty = 0
    misses: list[tuple[str, str, list[str]]] = []
    dictionary = list(dictionary_entries())
    started = time.perf_counter()
    for name, expected in cases:
        if matcher is None:
            own = stem(name)
            held_out = Matcher(dictionary, aliases={k: v for k, v in ALIASES.items() if k != own})
            codes = [s.code for s in held_out.suggest(name, limit=3)]
        else:
            codes = [s.code for s in matcher.suggest(name, limit=3)]
        accepted = set(expected.split("|"))
        empty += not codes
        top1 += bool(codes) and codes[0] in accepted
        top3 += bool(accepted & set(codes))
        if not codes or codes[0] not in accepted:
            misses.append((name, expected, codes))
    elapsed = time.perf_counter() - started
    n = len(cases)
    return {"n": n, "top1": top1 / n, "top3": top3 / n, "empty": empty, "misses": misses,
            "ms_per_name": elapsed * 1000 / n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--no-aliases", action="store_true", help="similarity only, without the alias table")
    args = parser.parse_args()
    cases = load_cases()
    matcher = Matcher(list(dictionary_entries()), aliases={} if args.no_aliases else None)
    result = evaluate(matcher, cases)
    print(f"科室名称模糊匹配：{result['n']} 个院内科室名称（{DATA.relative_to(ROOT)}，已用于调整）"
          + ("，不用别名表" if args.no_aliases else ""))
    print(f"  top-1 准确率 {result['top1']:.3f}")
    print(f"  top-3 准确率 {result['top3']:.3f}")
    print(f"  每个名称 {result['ms_per_name']:.2f} ms")
    held = evaluate(None, cases)
    print(f"  留出法（每个名称去掉它自己的别名）：top-1 {held['top1']:.3f}，top-3 {held['top3']:.3f}")
    others = []
    for path, usage, first in SETS:
        other = evaluate(matcher, load_cases(path))
        others.append((path, other))
        print(f"{path.name}（{other['n']} 个，{usage}"
              + (f"，调整前首次测得 top-1 / top-3 {first}" if first else "") + "）："
              f"top-1 {other['top1']:.3f}，top-3 {other['top3']:.3f}，无建议 {other['empty']} 个，"
              f"每个名称 {other['ms_per_name']:.2f} ms")
    for title, misses in (("首选不正确的", result["misses"]), ("留出法下首选不正确的", held["misses"]),
                          *((f"{p.name} 首选不正确的", o["misses"]) for p, o in others)):
        if not misses:
            continue
        print(f"  {title}：")
        for name, expected, codes in misses:
            mark = "（前三含正确答案）" if set(expected.split("|")) & set(codes) else ""
            print(f"    {name}: 应为 {expected}，建议 {', '.join(codes) or '无'}{mark}")


if __name__ == "__main__":
    main()
