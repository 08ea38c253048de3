"""Fuzzy suggestions of national codes for a hospital's own names, for any code dictionary a plugin
declares (``CodeDictionary``: [{"code", "name", "parent"}] or {code: name}); tuned on departments
(CT08.00.002), whose aliases and context rules below apply only to codes the dictionary has.

Hospitals name departments the way their staff talk: 心内科, 普外一病区, 妇科门诊, 急诊科, 中医内科,
（东院）骨科病房. The dictionary says 心血管内科专业 A03.04, 普通外科专业 A04.01, 妇科专业 A05.01,
急诊医学科 A20, 中医科/内科专业 A50.01. ``suggest`` ranks dictionary codes for one local name:

1. Normalisation (``normalize`` / ``stem``): full-width to half-width (NFKC), remarks in brackets, campus
   and service prefixes (东院, 特需, 专家...), ward/clinic suffixes (一病区, 病区, 病房, 门诊, 诊室, 专科,
   科室, 中心...) and finally a trailing 科/专业, so 心内科二病区 and 心内科门诊 both become 心内.
2. An alias table (``ALIASES``, data below): everyday names and abbreviations -> national codes, for what
   no similarity measure can know (肾内 -> 肾病学专业, 感染 -> 传染科, 放射 -> 医学影像科).
3. Character similarity: bigram Dice and longest-common-subsequence ratio, plus an abbreviation test
   (普外 is a subsequence of 普通外) which is how Chinese department names are shortened.
4. Context: traditional-medicine names (中医…) prefer A50/A52, paediatric names prefer A07-A09 and
   paediatric dentistry; public-health (B) and supervision (C) codes, meant for CDCs and inspectorates,
   are slightly demoted for hospital departments; leaf codes (专业) win ties when the name is specific.
5. ``learned``: mappings the hospital already confirmed (local name -> code) count as aliases too.

Scores are 0..1. ``score(local_name, code)`` rates an existing mapping (a low score marks it suspicious).
Quality is measured on tests/data/department_names.csv by bench/bench_deptmatch.py.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache

# --- the alias table (data) --------------------------------------------------------------------------
# One line per national code: the code, then everyday names/abbreviations separated by spaces, written
# as stems (without the trailing 科, ward/clinic suffixes). Add a hospital's own words here.
ALIAS_TABLE = """
A01   预防保健 保健 预防 防保
A02   全科 全科医学 全科医疗
A03   大内 内 综合内 普内 普通内
A03.01 呼吸 呼吸内 呼吸与危重症医学 呼吸与危重症 呼吸危重症 呼吸病 肺病 呼吸科专业 RICU
A03.02 消化 消化内 胃肠内 脾胃 消化病
A03.03 神内 神经内 神经病 脑病 卒中 神经
A03.04 心内 心血管内 心血管 心脏内 心血管病 心病 心脏病 CCU 冠心病监护
A03.05 血液 血液内 血液病 血内
A03.06 肾内 肾病 肾脏内 肾脏病 肾 血液净化 透析 肾病内
A03.07 内分泌 内分泌代谢 糖尿病 内分泌与代谢 代谢内分泌 内分泌代谢病
A03.08 风湿免疫 风湿 免疫 风湿病 风湿免疫内
A03.09 变态反应 过敏 过敏反应 变应性疾病
A03.10 老年 老年医学 老年病 老干 干部保健 老干部
A04   大外 外 普通外科综合
A04.01 普外 普通外 肝胆外 胃肠外 甲乳外 乳腺外 甲状腺外 肝胆胰外 肛肠外 结直肠外 疝外 血管外 甲乳 乳腺 肝胆 胃肠 腹部外 微创外
A04.02 神外 神经外 脑外
A04.03 骨 骨外 创伤骨 关节外 脊柱外 手外 手足外 运动损伤 骨关节 脊柱
A04.04 泌外 泌尿外 泌尿 男 男性 结石
A04.05 胸外 胸部外 普胸外 胸
A04.06 心外 心脏外 心脏大血管外 心血管外 心胸外
A04.07 烧伤 烧伤整形
A04.08 整形外 整形
A05   妇产
A05.01 妇 妇女病 妇科肿瘤
A05.02 产 产房 母婴同室
A05.03 计划生育 计生
A05.04 优生 优生优育 产前诊断
A05.05 生殖医学 生殖 不孕不育 辅助生殖 生殖健康
A06   妇女保健 妇保
A06.02 围产保健 围产期保健 孕产保健
A06.03 更年期 更年期保健
A07   儿 小儿内 儿内 小儿
A07.01 新生儿 NICU 新生儿重症监护 新生儿监护
A07.04 小儿呼吸 儿童呼吸 儿科呼吸
A07.03 小儿消化 儿童消化
A07.05 小儿心内 小儿心血管 儿童心血管 小儿心脏
A07.06 小儿肾内 小儿肾病 儿童肾病
A07.07 小儿血液 儿童血液 小儿血液肿瘤
A07.08 小儿神经内 小儿神经 儿童神经
A07.09 小儿内分泌 儿童内分泌
A08   小儿外 儿外 儿童外
A08.01 小儿普外 小儿普通外
A08.02 小儿骨 儿童骨
A08.03 小儿泌尿外 小儿泌尿
A08.05 小儿神经外 小儿神外
A09   儿童保健 儿保
A09.05 儿童康复 小儿康复
A10   眼 眼视光 眼病
A11   耳鼻喉 耳鼻咽喉 五官 眼耳鼻喉 耳鼻咽喉头颈外 耳鼻喉头颈外 头颈外
A12   口腔 牙 口腔医学 齿
A12.01 牙体牙髓 牙体 牙髓 口腔内
A12.02 牙周
A12.04 儿童口腔 儿童牙 小儿口腔
A12.05 口腔颌面外 颌面外 口腔外 口腔颌面
A12.06 口腔修复 修复
A12.07 口腔正畸 正畸
A12.08 口腔种植 种植 种植牙
A13   皮肤 皮肤性病 皮肤病与性病
A13.02 性病 性传播疾病
A14   医疗美容 医学美容 美容 整形美容 激光美容
A15   精神 精神病 精神心理
A15.02 精神卫生 心理卫生
A15.03 药物依赖 戒毒 物质依赖
A15.04 精神康复
A15.06 心理 临床心理 心理咨询 医学心理 心身医学 心理治疗 睡眠心理
A16   感染 感染性疾病 感染病 传染病 传染
A16.01 肠道 肠道传染病 腹泻
A16.02 发热 呼吸道传染病
A16.03 肝病 肝炎 感染肝病
A17   结核 结核病 肺结核
A19   肿瘤 肿瘤内 放化疗 化疗 肿瘤综合
A20   急诊 急诊医学 急救 急诊内 急诊外 急诊留观 留观 抢救 EICU 急诊抢救
A21   康复 康复医学 理疗 物理治疗 康复理疗
A22   运动医学
A23   职业病 职业医学
A24   临终关怀 安宁疗护 舒缓医疗
A26   麻醉 手术室 麻醉手术
A27   疼痛 疼痛医学
A28   重症医学 重症 ICU 综合ICU 重症监护 SICU MICU 危重症医学 加强医疗 监护
A30   检验 医学检验 化验 临床检验 实验室 检验医学
A31   病理
A32   医学影像 影像 放射 影像医学 放射影像
A32.01 X线 DR 普放
A32.02 CT
A32.03 磁共振 MRI 核磁
A32.04 核医学 同位素 PET
A32.05 超声 B超 彩超 超声医学 超声诊断
A32.06 心电 心电图 心功能
A32.07 脑电 脑电图 脑血流图
A32.08 肌电图 神经肌电图 神经电生理
A32.09 介入 介入放射 介入治疗 介入医学
A32.10 放疗 放射治疗 放射肿瘤
A50   中医 国医 中医综合 国医堂 中医门诊
A50.01 中医内
A50.02 中医外
A50.03 中医妇 中医妇产
A50.04 中医儿
A50.05 中医皮肤
A50.06 中医眼
A50.07 中医耳鼻喉 中医五官
A50.08 中医口腔
A50.09 中医肿瘤
A50.10 骨伤 中医骨伤 中医骨 正骨
A50.11 肛肠 中医肛肠 痔瘘
A50.12 中医老年病
A50.13 针灸 中医针灸 针灸推拿 针推
A50.14 推拿 按摩 中医推拿
A50.15 中医康复
A50.16 中医急诊
A50.17 治未病 中医预防保健 中医治未病
A51   民族医 民族医学
A51.02 藏医
A51.03 蒙医
A52   中西医结合 中西医
D71   护理部 护理
D72   药剂 药房 药学部 药学 西药房 中药房 门诊药房 住院药房 静配中心 静脉配置 药库
D73   院感 医院感染管理 感染管理 院内感染
D74   输血 血库
D81   办公室 院办 党政办 党委办公室
D82   人事 人力资源 组织人事
D83   财务 收费 收费处 住院收费 门诊收费 经管 财务
D84   设备 器械 医学装备 设备器械
D85   信息 信息中心 网络中心 计算机 信息网络
D86   医务 医政 医务部 医疗管理
D87   科教 教育培训 科研 教学
D88   总务 后勤 后勤保障 总务后勤
D89   新农合 农合办
A69   体检 健康体检 健康管理 体检中心 健康管理中心 便民
"""

# Codes whose own name only makes sense with the parent's name (中医科 > 内科专业 is 中医内科).
_QUALIFY_PREFIX = {"A50": "中医", "A51": "民族医"}
_GENERIC_CHILD_NAMES = {"其他", "其它"}

_BRACKETS = re.compile(r"[（(【\[〔<《][^）)】\]〕>》]*[）)】\]〕>》]")
_PREFIXES = re.compile(
    r"^(?:第?[一二三四五六七八九十]+院区|[东西南北中新老]院区?|本部|院本部|总院|分院|特需|特诊|专家|名医|"
    r"夜间|周末|国际|VIP|便捷)+")
_CODE_PREFIX = re.compile(r"^[A-Z]*\d[A-Z0-9\-_.]*(?=[\u4e00-\u9fff])")
_NUMBERED_UNIT = r"(?:第?[一二三四五六七八九十0-9]+)"
_SUFFIXES = [
    re.compile(rf"{_NUMBERED_UNIT}?(?:病区|病房|护理单元|住院部|住院|病室)$"),
    re.compile(rf"{_NUMBERED_UNIT}?(?:门诊部|门诊|诊室|诊区|诊疗室|专家门诊|专病门诊)$"),
    re.compile(rf"{_NUMBERED_UNIT}?(?:中心|室|组|区)$"),
    re.compile(r"(?:专科|科室|专业|项目)$"),
    re.compile(rf"{_NUMBERED_UNIT}科$"),
]
_PUNCT = re.compile(r"[\s·•\-_/、.,，。:：;；'\"“”‘’]+")
_PEDIATRIC = ("小儿", "儿童", "新生儿", "儿科", "儿内", "儿外", "婴幼")
_TCM = ("中医", "国医", "中西医", "针灸", "推拿", "骨伤", "治未病", "肛肠", "蒙医", "藏医")


def normalize(name: str) -> str:
    """Half-width, upper-case Latin, no blanks/punctuation, no bracketed remarks or campus prefixes."""
    text = unicodedata.normalize("NFKC", name or "").upper()
    text = _BRACKETS.sub("", text)
    text = _PUNCT.sub("", text)
    text = _CODE_PREFIX.sub("", text)
    stripped = _PREFIXES.sub("", text)
    return stripped or text


def stem(name: str) -> str:
    """The department's core: ``normalize`` then ward/clinic suffixes and a trailing 科 removed."""
    text = normalize(name)
    changed = True
    while changed:
        changed = False
        for pattern in _SUFFIXES:
            shorter = pattern.sub("", text)
            if shorter != text and shorter:
                text, changed = shorter, True
    if len(text) > 1 and text.endswith("科"):
        text = text[:-1]
    return text


def _parse_aliases(table: str) -> dict[str, str]:
    aliases: dict[str, str] = {}
    for line in table.strip().splitlines():
        code, *words = line.split()
        for word in words:
            aliases.setdefault(stem(word) or word, code)
    return aliases


ALIASES: dict[str, str] = _parse_aliases(ALIAS_TABLE)


@dataclass(frozen=True)
class Suggestion:
    code: str
    name: str  # the dictionary's meaning of the code
    score: float  # 0..1
    reason: str  # why, in words for the admin

    @property
    def percent(self) -> int:
        return round(self.score * 100)


@dataclass(frozen=True)
class _Entry:
    code: str
    name: str
    stem: str
    leaf: bool
    weight: float  # demotion for codes meant for other kinds of institutions


class Matcher:
    """Prepared dictionary (and learned aliases) for ranking many names quickly."""

    def __init__(self, dictionary: Mapping[str, str] | Iterable[dict], *,
                 parents: Mapping[str, str | None] | None = None, learned: Mapping[str, str] | None = None, aliases: Mapping[str, str] | None = None) -> None:
        if isinstance(dictionary, Mapping):
            names = dict(dictionary)
            parent_of = dict(parents or {})
        else:
            entries = list(dictionary)
            names = {e["code"]: e["name"] for e in entries}
            parent_of = {e["code"]: e.get("parent") for e in entries}
        for code in names:  # the dotted code itself says who the parent is when not given
            if code not in parent_of:
                parent_of[code] = code.rsplit(".", 1)[0] if "." in code else None
        has_children = {p for p in parent_of.values() if p}
        self.names = names
        self.entries: list[_Entry] = []
        for code, name in names.items():
            parent = parent_of.get(code)
            own = stem(name)
            if parent and (parent in _QUALIFY_PREFIX or own in _GENERIC_CHILD_NAMES):
                prefix = _QUALIFY_PREFIX.get(parent) or stem(names.get(parent, ""))
                own = prefix + own if parent in _QUALIFY_PREFIX else prefix + own
            weight = 0.88 if code[:1] in ("B", "C") else 1.0
            self.entries.append(_Entry(code, name, own, code not in has_children, weight))
        self.by_code = {e.code: e for e in self.entries}
        self.aliases = {k: v for k, v in (aliases if aliases is not None else ALIASES).items() if v in names}
        self.learned: dict[str, str] = {}
        for local_name, code in (learned or {}).items():
            if code in names and stem(local_name):
                self.learned[stem(local_name)] = code

    def suggest(self, local_name: str, limit: int = 5) -> list[Suggestion]:
        """The best ``limit`` codes for one local name, best first."""
        local = stem(local_name)
        if not local:
            return []
        scored = {e.code: self._score_entry(local, local_name, e) for e in self.entries}
        for code, (value, reason) in self._alias_hits(local).items():
            if value > scored[code][0]:
                scored[code] = (value, reason)
        specific = len(local) >= 2
        ranked = sorted(
            scored.items(),
            key=lambda item: (round(item[1][0], 3) + (0.01 if specific and self.by_code[item[0]].leaf else 0),
                              self.by_code[item[0]].leaf, -len(item[0])),
            reverse=True,
        )
        return [Suggestion(code, self.names[code], round(min(1.0, value), 3), reason)
                for code, (value, reason) in ranked[:limit] if value > 0]

    def score(self, local_name: str, code: str) -> float:
        """How well one code fits a local name (for flagging suspicious mappings)."""
        entry = self.by_code.get(code)
        local = stem(local_name)
        if entry is None or not local:
            return 0.0
        value = self._score_entry(local, local_name, entry)[0]
        alias = self._alias_hits(local).get(code)
        return round(min(1.0, max(value, alias[0] if alias else 0.0)), 3)

    # -- internals --

    def _alias_hits(self, local: str) -> dict[str, tuple[float, str]]:
        hits: dict[str, tuple[float, str]] = {}
        for table, label, exact_score in ((self.learned, "院内已对照同名科室", 1.0), (self.aliases, "别名", 1.0)):
            code = table.get(local)
            if code is not None and code not in hits:
                hits[code] = (exact_score, f"{label}「{local}」")
        # An alias inside a longer name (心内 in 小儿心内 is weaker than 小儿心内 itself).
        for alias, code in self.aliases.items():
            if len(alias) >= 2 and alias != local and alias in local:
                value = 0.62 + 0.3 * len(alias) / len(local)
                if value > hits.get(code, (0.0, ""))[0]:
                    hits[code] = (value, f"含别名「{alias}」")
        return hits

    def _score_entry(self, local: str, raw_name: str, entry: _Entry) -> tuple[float, str]:
        value, reason = similarity(local, entry.stem)
        value *= entry.weight
        value += _context_bonus(local, entry.code)
        return max(0.0, min(1.0, value)), reason


def _context_bonus(local: str, code: str) -> float:
    """Traditional medicine and paediatrics are decided by a word in the name, not by similarity."""
    bonus = 0.0
    tcm = any(m in local for m in _TCM)
    if code.startswith(("A50", "A51", "A52")):
        bonus += 0.08 if tcm else -0.06
    elif tcm and code.startswith("A"):
        bonus -= 0.08
    pediatric = any(m in local for m in _PEDIATRIC) or local in ("儿",)
    if code.startswith(("A07", "A08", "A09")) or code == "A12.04":
        bonus += 0.06 if pediatric else -0.03
    elif pediatric and code.startswith("A"):
        bonus -= 0.05
    return bonus


@lru_cache(maxsize=65536)
def similarity(local: str, national: str) -> tuple[float, str]:
    """(0..1, reason) for two stems: exact, abbreviation (subsequence), or n-gram/LCS similarity."""
    if not local or not national:
        return 0.0, ""
    if local == national:
        return 0.97, "名称相同"
    best, reason = 0.0, ""
    if len(local) >= 2 and _is_subsequence(local, national):
        best, reason = 0.74 + 0.2 * len(local) / len(national), f"简称（{local} ⊂ {national}）"
    elif len(national) >= 2 and _is_subsequence(national, local):
        best, reason = 0.66 + 0.26 * len(national) / len(local), f"包含（{national} ⊂ {local}）"
    dice = _dice(_grams(local), _grams(national))
    lcs = 2 * _lcs(local, national) / (len(local) + len(national))
    blended = 0.5 * dice + 0.5 * lcs
    if blended > best:
        best, reason = blended, f"字符相似度 {blended:.2f}"
    return best, reason


def _grams(text: str) -> frozenset[str]:
    padded = f"^{text}$"
    return frozenset(padded[i:i + 2] for i in range(len(padded) - 1))


def _dice(a: frozenset[str], b: frozenset[str]) -> float:
    return 2 * len(a & b) / (len(a) + len(b)) if a and b else 0.0


def _lcs(a: str, b: str) -> int:
    previous = [0] * (len(b) + 1)
    for ch in a:
        current = [0]
        for j, other in enumerate(b):
            current.append(previous[j] + 1 if ch == other else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def _is_subsequence(short: str, long: str) -> bool:
    it = iter(long)
    return all(ch in it for ch in short)


def suggest(local_name: str, dictionary: Mapping[str, str] | Iterable[dict], *, limit: int = 5,
            learned: Mapping[str, str] | None = None) -> list[Suggestion]:
    """One-off convenience: ``Matcher(dictionary, learned=learned).suggest(local_name, limit)``."""
    return Matcher(dictionary, learned=learned).suggest(local_name, limit)
