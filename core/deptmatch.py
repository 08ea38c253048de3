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
6. Concepts (``KEYWORD_TABLE`` + ``CONCEPT_TABLE``, data): organ, disease, procedure, room and office words
   and the Latin abbreviations Chinese hospitals use, per dictionary code, matched as whole words; letters
   scattered through a name (病…理 in 慢病管理) count little. Of two concepts, the finer code (CT in
   放射科CT室), the owning department (检验科急诊室) and the first part of X与Y (呼吸与睡眠医学科) decide.
7. Never empty: when the best score is below ``RELIABLE_SCORE`` the catch-all code (A69 clinical, D99
   offices) joins the list at ``CATCH_ALL_SCORE`` with a reason asking for a check, ranked by its score.
Scores are shown in rank order; 100 % only for the dictionary's own name or a confirmed mapping.

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

# --- the keyword table (data) ------------------------------------------------------------------------
# Words that decide the specialty wherever they stand in a name: diseases, organs, examinations and rooms,
# for names no alias or similarity can place (高血压门诊, 胃镜室, 弱视门诊, 消毒供应中心, 纪检监察室).
# Latin abbreviations are matched as whole tokens (ECG室, DSA导管室, PIVAS). One line per code.
KEYWORD_TABLE = """
A03.01 睡眠监测 哮喘 慢阻肺 肺结节 戒烟 支气管镜 肺功能 睡眠呼吸 呼吸睡眠 肺部 肺癌筛查 间质性肺 肺血管 呼吸康复 雾化
A03.02 脂肪肝 胃镜 肠镜 内镜 内窥镜 幽门 胃病 胃肠病 肝硬化 炎症性肠病 消化道 胰腺病 胆胰
A03.03 头痛 癫痫 帕金森 记忆 认知 眩晕 卒中 脑血管 运动障碍 神经免疫 脑梗 脑功能障碍 肌病 周围神经 神经康复
A03.04 高血压 房颤 心衰 心力衰竭 胸痛 冠心病 心律失常 起搏 心脏康复 血脂 动态血压 心脏介入 心血管病
A03.05 贫血 白血病 淋巴瘤 骨髓 出凝血 血友病 血栓 止血
A03.06 透析 血透 腹透 肾脏病 肾病 尿毒症 血液净化 肾穿刺
A03.07 甲状腺 糖尿病 骨质疏松 肥胖 代谢 内分泌 垂体 肾上腺
A03.08 痛风 红斑狼疮 类风湿 强直性脊柱炎
A03.09 过敏
A03.10 干部病房 老干 保健病房
A04.01 乳腺 甲乳 疝 肝胆 胃肠外 结直肠 血管外 静脉曲张 微创外 肛周 胆道 腹壁 造口 胰腺外
A04.03 脊柱 关节 创伤 手足 显微外 足踝 运动损伤 骨病 骨肿瘤
A04.04 前列腺 碎石 结石 男性不育 排尿 尿动力 尿失禁 排石
A04.05 肺外 食管
A05.01 宫颈 妇科肿瘤 盆底 阴道镜 宫腔镜
A05.02 产前 分娩 产检 待产 产房 胎儿 母胎
A06.01 青春期
A06.02 孕妇学校 孕产 围产 产后康复
A09.01 生长发育 矮小
A09.03 儿童心理
A10 弱视 青光眼 白内障 验光 视光 眼底 屈光 斜视 角膜 近视 眼表 视网膜 泪道
A11.01 听力 耳聋 耳鸣
A11.02 鼻炎 鼻窦
A11.03 嗓音 咽喉
A12 牙
A12.03 黏膜 粘膜
A13.01 痤疮 白癜风 银屑病 湿疹 皮炎 脱发
A13.02 性病
A15 抑郁 焦虑 精神
A15.06 心理 睡眠障碍 失眠
A16 艾滋病 感染性疾病
A16.02 发热
A16.05 狂犬 犬伤
A16.01 腹泻 肠道门诊
A19 化疗 肿瘤 放化疗
A20 急救
A21 康复治疗 理疗 言语治疗 吞咽 作业治疗 物理治疗 运动疗法
A26 手术室 麻醉
A27 疼痛
A28 重症
A30.02 微生物
A30.03 生化
A30.04 免疫室
A30.05 PCR 基因 分子诊断 遗传学
A31 病理
A32.01 DR X光 X线 钼靶 骨密度 造影
A32.05 彩超 超声
A32.06 ECG 心电
A32.07 EEG 脑电 TCD 经颅多普勒 脑功能 脑血流
A32.08 EMG 肌电 神经电生理
A32.09 DSA 导管室 介入
A32.10 放疗
A50 膏方 国医 名老中医 中医馆
A50.11 痔
A50.13 针灸
A50.14 推拿
A69 营养 高压氧 供应室 消毒供应 CSSD 日间病房 特需 输液 注射 体检 健康管理 导诊 预约中心 便民服务
D72 PIVAS 静配 静脉用药 药房 药库 药学 饮片 制剂 煎药 药械
D74 输血 血库
D81 院长办 党委办 党政办 综合办 党办
D83 结算 收费 计财 财务 物价 价格
D84 装备 设备 器械
D85 信息
D86 质控 医疗质量 病案 统计 医务 质量管理 医疗安全 病历质量
D87 教育 教学 科研 科教 培训
D88 后勤 总务 基建 物业
D89 医保 农合
D99 纪检 监察 宣传 工会 保卫 审计 采购 客服 客户服务 投诉 医患 运营 团委 档案 法务 统战 离退休 招标 门诊部办公室 行政 纪委 统战 社工 志愿者 发展规划 党建
A04.02 颅脑 脑肿瘤 功能神经
A05.05 试管婴儿 IVF
A11 头颈 鼾症
A14 激光美容 医美
A07 儿童医学 儿科
"""

# --- the concept lexicon (data) ----------------------------------------------------------------------
# Written per dictionary code from domain knowledge, code by code through the whole dictionary: organs and
# diseases, procedures and examinations, rooms, the Latin abbreviations Chinese hospitals use, and offices
# with no code of their own (-> the catch-all D99/A69). Same rules as KEYWORD_TABLE; a word listed under
# two codes offers both (the first line wins).
CONCEPT_TABLE = """
A01 预防接种 疫苗接种 免疫接种 计划免疫 公共卫生 公卫 疾病预防 防保 预防保健
A02 家庭医生 家庭病床 社区卫生 全科医学 全科
A03 综合内 普内 大内 综合病区 综合病房
A03.01 咳嗽 慢性咳嗽 支气管 肺栓塞 肺结节 COPD 睡眠呼吸暂停 EBUS 呼吸内镜 肺康复 呼吸治疗 无创通气 肺功能 胸膜
A03.02 胃肠镜 ERCP EUS 超声内镜 胶囊内镜 消化内镜 幽门螺杆菌 呼气试验 IBD 胃食管反流 便秘 胃肠动力 早癌 胃病 胰腺炎 消化道出血
A03.03 偏头痛 头晕 痴呆 脑卒中 多发性硬化 重症肌无力 神经免疫 睡眠障碍 神经肌肉病
A03.04 心导管 运动平板 平板运动 心肺运动 晕厥 心肌病 结构性心脏病 血压 高脂血症 CICU 心脏中心 心血管中心 心律
A03.05 骨髓瘤 血液肿瘤 造血干细胞 干细胞移植 骨髓移植 层流 凝血
A03.06 CRRT 肾炎 肾功能 肾脏 腹膜透析 血液透析
A03.07 甲亢 血糖 骨代谢 糖尿病足 减重 甲状腺结节
A03.08 狼疮 风湿 关节炎 干燥综合征 血管炎 类风湿关节炎
A03.09 变态反应 脱敏 过敏原
A03.10 老年 干部 高干 衰弱 老年综合评估
A04 换药 小手术
A04.01 腹腔镜 减重代谢 疝气 胆石 阑尾 下肢静脉 血管瘤 周围血管 腔镜外 肝脏外 急腹症 乳房 甲状腺外 乳腺外 胃肠外 肝胆外 血管外 腹膜后 胃外 结直肠肛门 乳甲 乳腺病
A04.01.01 肝移植 肝脏移植 器官移植
A04.01.02 胰腺移植
A04.01.03 小肠移植
A04.04.01 肾移植 肾脏移植
A04.05.01 肺移植 肺脏移植
A04.06.01 心脏移植
A04.02 颅底 脊髓 垂体瘤 脑血管外 神外 神经外 NSICU 伽马刀 脑积水
A04.03 石膏 骨折 关节镜 颈椎 腰椎 椎间盘 颈腰 矫形 骨关节 手外 骨伤
A04.04 男科 阳痿 性功能 膀胱 肾结石 输尿管 冲击波 泌尿 尿路 男性病
A04.05 胸腔镜 纵隔 胸壁 胸外 肺部外
A04.06 心外 心脏外 大血管 主动脉 瓣膜 先心 体外循环 心脏大血管
A04.07 烧伤 烫伤 创面
A04.08 瘢痕 修复重建 整形外
A05.01 子宫 卵巢 月经 妇科内分泌 外阴 阴道 子宫内膜 妇女病
A05.02 胎心 胎心监护 高危妊娠 妊娠 孕期 助产 导乐 无痛分娩 孕产妇 母婴 产前检查 LDR 孕检 妊娠期
A05.03 人流 人工流产 避孕 节育 流产 计划生育 计生
A05.04 产前诊断 产前筛查 遗传咨询 唐筛 出生缺陷 优生
A05.05 不孕 不育 人工授精 生殖医学 生殖中心 辅助生殖
A06 妇女保健 妇保
A06.02 孕期保健 母乳喂养 产后访视
A06.03 围绝经
A06.04 妇女心理
A06.05 孕期营养 妇女营养
A07 PICU
A07.01 早产儿 新生儿 NICU
A07.02 小儿传染
A07.10 遗传代谢 小儿遗传 儿童遗传
A07.11 儿童风湿
A09 儿童保健 儿保
A09.01 身高 性早熟
A09.02 儿童营养
A09.03 多动 多动症 自闭症 孤独症 抽动 注意缺陷
A09.04 儿童五官 儿童眼保健
A09.05 脑瘫 儿童康复 小儿康复
A10 OCT 眼压 眼底照相 眼肌 眼眶 视觉 低视力 干眼 视野 配镜 玻璃体 黄斑 葡萄膜 眼视光 眼整形
A11 ENT 耳鼻 五官 耳鼻喉 耳鼻咽喉
A11.01 前庭 助听 人工耳蜗 中耳
A11.02 鼻内镜 过敏性鼻炎
A11.03 喉镜 声带
A12 齿科 口腔
A12.01 根管
A12.02 洁牙 洗牙
A12.05 颌面 拔牙
A12.06 义齿
A12.07 矫正
A12.09 口腔麻醉
A12.10 CBCT 口腔影像 口腔放射 牙片 全景片
A13 皮肤
A13.01 荨麻疹 皮肤病 皮肤镜 毛发 疱疹
A13.02 性传播 梅毒 尖锐湿疣 性病艾滋病
A14 医学美容 美容 微整形 抗衰 皮肤美容
A15 精神心理
A15.01 精神病 精神分裂
A15.02 精神卫生
A15.03 戒毒 药物依赖 物质依赖 戒酒 成瘾
A15.04 精神康复
A15.06 心身 睡眠 心理咨询 心理治疗 心理测评 睡眠医学
A15.07 司法精神 司法鉴定 精神鉴定
A16 传染 感染病 感染性疾病 感染疾病
A16.01 肠道传染
A16.02 呼吸道传染 发热门诊
A16.03 肝炎 肝病 乙肝 丙肝
A16.04 虫媒
A16.05 动物咬伤 破伤风
A16.06 蠕虫 寄生虫
A17 结核
A18 地方病 大骨节 克山病 碘缺乏
A19 癌症 靶向 肿瘤内 生物治疗 热疗
A20 急诊 抢救 留观 清创 清创缝合 院前急救 EICU 急诊ICU 创伤中心
A21 康复评定 PT OT 水疗 康复
A22 运动医学 运动处方
A23 职业病 职业体检
A23.01 职业中毒 中毒
A23.02 尘肺
A23.03 放射病
A23.05 职业健康
A24 临终关怀 安宁疗护 舒缓 姑息
A25 特种医学 军事医学 航空医学 潜水医学 高原医学
A26 PACU 麻醉恢复 复苏室 日间手术 手术部 手术中心 无痛
A28 ICU SICU MICU 危重症 重症监护 监护室
A30 检验 化验 实验室 采血 标本
A30.01 临检 体液 血常规 尿常规
A30.02 细菌
A30.04 血清 免疫检验
A30.05 细胞遗传 染色体 基因检测
A31 冰冻 细胞学 分子病理
A32 影像 医学影像
A32.01 CR 拍片 普放 乳腺钼靶
A32.02 CT
A32.03 MRI MR 磁共振 核磁
A32.04 核医学 PET PETCT ECT SPECT 同位素 碘131 核素 核素治疗
A32.05 B超 心脏超声 心超 血管超声 超声心动 乳腺超声
A32.06 动态心电 HOLTER 心电生理 平板
A32.07 诱发电位
A32.08 神经传导 诱发电位
A32.09 介入手术 血管介入 导管
A32.10 射波刀 直线加速器 后装 质子 放射治疗 肿瘤放疗 伽马刀
A50 中医经典 中医特色 传统医学 名中医 国医大师
A50.10 正骨 骨伤
A50.11 肛肠 痔瘘 肛瘘
A50.13 针刺 艾灸
A50.14 按摩
A50.15 中医康复
A50.16 中医急诊
A50.17 治未病 中医体质 体质辨识
A51 民族医
A51.01 维吾尔医 维医
A51.02 藏医
A51.03 蒙医
A51.04 彝医
A51.05 傣医
A52 中西医结合
A69 国际医疗 特需医疗 特需门诊 特需病房 VIP 静脉治疗 慢病 互联网医院 远程医疗 中心供应 高压氧舱 临床营养 入院准备 住院服务 门诊服务 日间 便民 体检中心
D71 护理 PICC 伤口护理 护理门诊 护士 助产士 伤口造口
D72 药剂 临床药学 药事 中药 西药
D73 院感 医院感染 感染管理 感控
D74 输血 血库
D81 院办
D82 人事 人力资源 组织部 组织人事
D83 经管 会计 出入院 住院处 挂号
D84 医学工程 耗材
D85 网络 计算机 数据中心 信息化
D86 医政 门诊办 门诊部 医疗管理 质管 评审 医疗事务
D87 规培 住培 继续教育 研究生 GCP 药物临床试验 伦理 临床研究 科技 科研处
D88 膳食 食堂 洗衣 动力 锅炉 车队 保洁 维修 水电 配餐
D89 医保 医疗保险 合作医疗 新农合
D99 安保 消防 外事 国际交流 对外合作 医联体 扶贫 绩效 资产 图书馆 病友服务 社会工作 合作发展 巡察 党群 信访 督查 精神文明
"""

# Pediatric names move an adult specialty found by keyword to its paediatric sibling.
_PEDIATRIC_SIBLING = {
    "A03.01": "A07.04", "A03.02": "A07.03", "A03.03": "A07.08", "A03.04": "A07.05", "A03.05": "A07.07",
    "A03.06": "A07.06", "A03.07": "A07.09", "A03.08": "A07.11", "A04.01": "A08.01", "A04.02": "A08.05",
    "A04.03": "A08.02", "A04.04": "A08.03", "A04.05": "A08.04", "A04.06": "A08.04", "A12": "A12.04",
    "A16": "A07.02", "A16.01": "A07.03", "A03": "A07", "A04": "A08",
}
# Traditional-medicine names (中医脑病科, 中医心病科) move a Western specialty to its 中医科 counterpart.
_TCM_SIBLING = {
    "A03": "A50.01", "A04": "A50.02", "A04.01": "A50.02", "A04.03": "A50.10", "A05": "A50.03", "A05.01": "A50.03",
    "A05.02": "A50.03", "A07": "A50.04", "A13": "A50.05", "A13.01": "A50.05", "A10": "A50.06", "A11": "A50.07",
    "A12": "A50.08", "A19": "A50.09", "A21": "A50.15", "A20": "A50.16", "A03.10": "A50.12", "A01": "A50.17",
    "A16.03": "A50.01", **{f"A03.{i:02d}": "A50.01" for i in range(1, 10)},
}
_TCM_EXPLICIT = ("中医", "国医")
# When nothing fits, a name still gets the dictionary's catch-all codes, clearly marked as such.
CATCH_ALL = {"clinical": "A69", "admin": "D99"}
_ADMIN_MARKERS = ("办公室", "办", "处", "部", "委", "会", "所", "股", "队")
_CLINICAL_MARKERS = ("门诊", "病区", "病房", "诊室", "治疗", "检查", "室", "中心", "医学", "科")


def _parse_keywords(table: str) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for line in table.strip().splitlines():
        if not line.strip():
            continue
        code, *words = line.split()
        pairs.extend((unicodedata.normalize("NFKC", word).upper(), code) for word in words)
    return sorted(pairs, key=lambda pair: -len(pair[0]))  # the longest keyword decides


KEYWORDS: list[tuple[str, str]] = _parse_keywords(KEYWORD_TABLE + "\n" + CONCEPT_TABLE)

# Codes whose own name only makes sense with the parent's name (中医科 > 内科专业 is 中医内科).
_QUALIFY_PREFIX = {"A50": "中医", "A51": "民族医"}
_GENERIC_CHILD_NAMES = {"其他", "其它"}

_BRACKETS = re.compile(r"[（(【\[〔<《][^）)】\]〕>》]*[）)】\]〕>》]")
_PREFIXES = re.compile(
    r"^(?:第?[一二三四五六七八九十]+院区|[东西南北中新老]院区?|本部|院本部|总院|分院|特需|特诊|专家|名医|"
    r"夜间|周末|国际|VIP|便捷)+")
_CODE_PREFIX = re.compile(r"^[A-Z]*\d[A-Z0-9\-_.]*(?=[\u4e00-\u9fff])")
# Where the unit is rather than what it is: floors, buildings, campuses, bed ranges at the end of a name.
_LOCATION_SUFFIX = re.compile(
    r"(?:(?:[东西南北中新老本总分][院部]区?|第?[一二三四五六七八九十0-9]+院区|院本部|本部|[A-Z]?\d+[FL楼层]|"
    r"[一二三四五六七八九十]+楼|[A-Z]座|\d+号楼|\d+-\d+床?)+)$")
# A prefix qualifies the specialty (特需心内科 is 心内科); alone it is the unit (特需医疗部, 国际医疗部).
_GENERIC_REST = {"", "医疗", "医疗部", "医疗中心", "门诊", "门诊部", "病房", "病区", "诊疗部", "诊疗中心", "部", "科",
                 "中心", "诊室", "服务中心", "医学部", "服务部"}
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
    text = _LOCATION_SUFFIX.sub("", text) or text
    stripped = _PREFIXES.sub("", text)
    return text if stripped in _GENERIC_REST else stripped


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
                 parents: Mapping[str, str | None] | None = None, learned: Mapping[str, str] | None = None, aliases: Mapping[str, str] | None = None,
                 keywords: list[tuple[str, str]] | None = None) -> None:
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
        self.exact = {normalize(name): code for code, name in names.items() if name not in _GENERIC_CHILD_NAMES}
        self.aliases = {k: v for k, v in (aliases if aliases is not None else ALIASES).items() if v in names}
        self.keywords = [(word, code) for word, code in (keywords if keywords is not None else KEYWORDS)
                         if code in names]
        self.learned: dict[str, str] = {}
        for local_name, code in (learned or {}).items():
            if code in names and stem(local_name):
                self.learned[stem(local_name)] = code

    def suggest(self, local_name: str, limit: int = 5) -> list[Suggestion]:
        """The best ``limit`` codes for one local name, best first; never empty for a non-empty name:
        when nothing fits, the dictionary's catch-all codes come with a low score that says so."""
        local = stem(local_name)
        if not local:
            return []
        scored = {e.code: self._score_entry(local, local_name, e) for e in self.entries}
        keyword_hits = self._keyword_hits(local_name, local)
        for code, (value, reason) in {**keyword_hits, **self._alias_hits(local)}.items():
            if code in scored and value > scored[code][0]:
                scored[code] = (value, reason)
        for code, (value, reason) in keyword_hits.items():
            if code in scored and value > scored[code][0]:
                scored[code] = (value, reason)
        text = normalize(local_name)
        if any(m in text for m in _TCM_EXPLICIT) and "中西医" not in text:
            # 中医脑病科 says more than 中医科: the specialty ranks above the bare 中医科 it belongs to.
            floor = scored.get("A50", (0.0, ""))[0]
            for code, (value, reason) in list(scored.items()):
                sibling = _TCM_SIBLING.get(code)
                if sibling in scored and value >= 0.6:
                    lifted = min(0.94, max(value, floor) + 0.02)
                    if lifted > scored[sibling][0]:
                        scored[sibling] = (lifted, f"中医的{self.names[sibling]}（{reason}）")
        exact = self.exact.get(text)
        alias = self.aliases.get(local) or self.aliases.get(_CONJ.sub("", local))
        if alias is not None:  # 感染科: the everyday meaning (传染科) beats the same-named admin code D73
            for code, (value, reason) in list(scored.items()):
                if code != alias and value > 0.9 and reason == "名称相同":
                    scored[code] = (0.9, reason)
        if exact is not None and (alias is None or alias == exact):
            # A code meant for other institutions (CDC, supervision) keeps its demotion even by exact name.
            scored[exact] = (self.by_code[exact].weight, "与字典名称完全相同")
        if len(local) >= 2:  # a specific name: a leaf code (专业) wins a tie with its parent
            for code, (value, reason) in list(scored.items()):
                if self.by_code[code].leaf and 0 < value < 0.99 and code != exact:
                    scored[code] = (min(0.99, value + 0.01), reason)
        ranked = sorted(
            scored.items(),
            key=lambda item: (round(item[1][0], 3), self.by_code[item[0]].leaf, -len(item[0])),
            reverse=True,
        )
        out = [Suggestion(code, self.names[code], round(min(1.0, value), 3), reason)
               for code, (value, reason) in ranked[:limit] if value > 0]
        if not out or out[0].score < RELIABLE_SCORE:
            out = self._with_catch_all(local_name, out, limit)
        return out

    def _with_catch_all(self, local_name: str, found: list[Suggestion], limit: int) -> list[Suggestion]:
        kind = "admin" if _looks_administrative(local_name) else "clinical"
        order = [CATCH_ALL[kind], CATCH_ALL["admin" if kind == "clinical" else "clinical"]]
        extra = [Suggestion(code, self.names[code], CATCH_ALL_SCORE if i == 0 else 0.2,
                            "没有可靠的匹配：归入字典的「其他」类代码，请人工确认")
                 for i, code in enumerate(order) if code in self.names]
        rest = [s for s in found if s.code not in order]
        merged = sorted([*extra, *rest], key=lambda s: -s.score)  # stable: the catch-all wins a tie
        return merged[:limit]

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
        # A name the hospital confirmed is certain (100%); a built-in alias is strong but not certain.
        for table, label, exact_score in ((self.learned, "院内已确认的对照", 1.0), (self.aliases, "别名", 0.95)):
            code = table.get(local) or table.get(_CONJ.sub("", local))  # 皮肤与性病 is 皮肤性病
            if code is not None and code not in hits:
                hits[code] = (exact_score, f"{label}「{local}」")
        joined = _surgical_conjunction(local)  # 神经与脊柱外科: 神经外 and 脊柱外
        conj = _CONJ.search(joined)
        if conj is not None:  # 呼吸与睡眠医学科, 老年医学与全科医学科: the first part names the department
            head = joined[:conj.start()]
            for table, label in ((self.learned, "院内已确认的名称"), (self.aliases, "别名")):
                code = table.get(head)
                if code is not None and code not in hits:
                    hits[code] = (0.93, f"第一部分是{label}「{head}」")
        # A confirmed name or an alias inside a longer name (心内 in 小儿心内 is weaker than 小儿心内 itself);
        # a confirmed name carries over to its variants (心内一病区, 东院心内...).
        for table, label, base in ((self.learned, "含院内已确认的名称", 0.68), (self.aliases, "含别名", 0.62)):
            for alias, code in table.items():
                if len(alias) >= 2 and alias != local and _contains_word(local, alias):  # CT not in OCT
                    value = base + 0.3 * len(alias) / len(local)
                    if value > hits.get(code, (0.0, ""))[0]:
                        hits[code] = (value, f"{label}「{alias}」")
        return hits

    def _keyword_hits(self, raw_name: str, local: str) -> dict[str, tuple[float, str]]:
        """Concept words (data: KEYWORD_TABLE, CONCEPT_TABLE) found as whole words; the longest one decides,
        a word inside a longer one found already (监护 in 胎心监护) is only a weak second opinion."""
        text = _surgical_conjunction(normalize(raw_name))
        conj = _CONJ.search(text)
        pediatric = any(m in text for m in _PEDIATRIC)
        found: list[tuple[str, str, int, bool]] = []  # word, code, position, inside a longer word
        for word, code in self.keywords:
            pos = _find_word(text, word)
            if pos < 0:
                continue
            if pediatric and code in _PEDIATRIC_SIBLING and _PEDIATRIC_SIBLING[code] in self.names:
                code = _PEDIATRIC_SIBLING[code]
            if any(c == code for _, c, _, _ in found):
                continue
            inside = any(pos < p + len(w) and p < pos + len(word) for w, _, p, _ in found)  # shares letters
            found.append((word, code, pos, inside))
            if len(found) >= 2:
                break
        hits: dict[str, tuple[float, str]] = {}
        for i, (word, code, pos, inside) in enumerate(found):
            # A keyword that carries the room/clinic suffix (免疫室, 干部病房) says more than the bare stem.
            value = 0.96 if len(word) > len(local) else min(0.93, 0.84 + 0.1 * len(word) / max(len(local), 1))
            value += _context_bonus(local, code) - 0.02 * i - (0.06 if inside else 0)
            if "外" in local and code.startswith(("A03", "A32.09")):
                value -= 0.1  # 甲状腺乳腺外科, 血管与介入外科: the surgery decides, not the organ
            others = [c for _, c, _, _ in found if c != code]
            if any(code.startswith(c + ".") for c in others):
                value += 0.04  # the finer code of two (CT in 放射科CT室, 基因 in 临床基因扩增实验室)
            elif others and pos == 0 and text[len(word):len(word) + 1] == "科":
                value += 0.05  # 检验科急诊室: the owning department, the room is one of its places
            if code.startswith(("A32.", "A30.")) and others:
                value += 0.02  # an examination or treatment (超声, 核素, CT) says more than the organ it looks at
            if code == "A20" and pos == 0 and word == "急诊" and text.endswith("科"):
                value += 0.05  # 急诊创伤外科, 急诊儿科: a department of the emergency service
            if conj is not None and pos < conj.start() and others:
                value += 0.03  # 呼吸与睡眠医学科: the first concept names the department
            hits[code] = (value, f"含关键词「{word}」")
        return hits

    def _score_entry(self, local: str, raw_name: str, entry: _Entry) -> tuple[float, str]:
        value, reason = similarity(local, entry.stem)
        value *= entry.weight
        value += _context_bonus(local, entry.code)
        return max(0.0, min(1.0, value)), reason


CATCH_ALL_SCORE = 0.4  # the catch-all's own score: above noise, below any candidate worth a look
RELIABLE_SCORE = 0.5  # below this the best match is a guess: the catch-all codes lead


def _contains_word(text: str, word: str) -> bool:
    """Chinese keywords match anywhere; Latin abbreviations only as a whole token (CT not in PICT)."""
    return _find_word(text, word) >= 0


def _find_word(text: str, word: str) -> int:
    """Where ``word`` stands in ``text`` (-1: nowhere); Latin abbreviations only as whole tokens."""
    if not word.isascii():
        return text.find(word)
    for found in re.finditer(re.escape(word), text):
        before = text[found.start() - 1] if found.start() else ""
        after = text[found.end()] if found.end() < len(text) else ""
        if not (before.isascii() and before.isalpha()) and not (after.isascii() and after.isalpha()):
            return found.start()
    return -1


_CONJ = re.compile(r"(?<=[\u4e00-\u9fff])[与和及暨](?=[\u4e00-\u9fff])")


def _surgical_conjunction(text: str) -> str:
    """血管与介入外科 names two surgeries: 血管外 and 介入外 (the same for …与…内科)."""
    found = _CONJ.search(text)
    if found is None:
        return text
    head, tail = text[:found.start()], text[found.start():]
    for kind in ("外", "内"):
        if (f"{kind}科" in tail or tail.endswith(kind)) and not head.endswith(kind):
            return head + kind + tail
    return text


def _looks_administrative(name: str) -> bool:
    text = normalize(name)
    if any(m in text for m in ("门诊", "病区", "病房", "诊室", "治疗", "检查", "医学")):
        return False
    return text.endswith(_ADMIN_MARKERS) or any(code == "D99" for word, code in KEYWORDS if word in text)


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
        # 普外 ⊂ 普通外: an abbreviation keeps the first character and drops some in between.
        best = 0.74 + 0.2 * len(local) / len(national)
        if local[0] != national[0]:
            best -= 0.2
        reason = f"简称（{local} ⊂ {national}）"
    elif len(national) >= 2 and national in local:
        best, reason = 0.66 + 0.26 * len(national) / len(local), f"包含（{national} ⊂ {local}）"
    elif len(national) >= 2 and _is_subsequence(national, local):
        # 病理 scattered through 慢病管理: letters, not a word -- weak evidence.
        best, reason = 0.3 + 0.2 * len(national) / len(local), f"字符分散（{national} ⊂ {local}）"
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
