"""测试连接 for the key-data platform: the document has no call that proves the protocol without data.

keydata-key-indicators.txt 五 defines exactly three interfaces, 数据日报, 医疗机构各科室就诊日报 and
数据月报, and each of them writes figures (dataFlag 1 新增 / 2 更新 / 3 删除): no query, heartbeat,
token or sign-in interface, and no answer code that tells a wrong authCode from a wrong SM4 key
(only ``code`` 200 / 非200 with a free-text ``message``). Anything sent to those addresses would be
report data, or a request the document does not define. So nothing is sent: the probe says so
(``conclusive=False``) and checks what can be checked here, through the same code uploads use:
that the settings an upload needs are filled in, and that the SM4 key and profile (mode, padding,
key format, output, body wrapping) encrypt and decrypt a sample body (``spec.encrypt_body`` /
``spec.decrypt_body``). Whether the platform accepts this authCode and this key shows only with the
first upload (or a known answer from the platform: 密钥核对). The page itself checks that the saved
addresses answer HTTP.
"""

from __future__ import annotations

from core.crypto import CryptoError
from core.errors import ConfigurationError
from core.hook_types import ProbeResult, ProbeStep, Settings
from plugins.keydata import spec

NOT_DEFINED = ("文档未定义无副作用的测试接口（只有数据日报、科室就诊日报、数据月报三个上报接口，调用即写入数据；"
               "没有查询、心跳或令牌接口）：未向平台发送任何请求，authCode 与 SM4 密钥是否被平台接受要到首次上报才能确认")
REQUIRED = (("hospital_daily_url", "数据日报接口地址"), ("dept_daily_url", "科室就诊日报接口地址"),
            ("monthly_url", "数据月报接口地址"), ("org_code", "医院机构代码 orgCode"),
            ("auth_code", "接口权限码 authCode"), ("sm4_key", "SM4 密钥"))


def run(settings: Settings) -> ProbeResult:
    """Local checks only (module docstring); always ``conclusive=False``."""
    missing = [label for key, label in REQUIRED if not settings.get(key).strip()]
    steps = [ProbeStep("设置", not missing, "缺少：" + "、".join(missing) if missing else "上报所需设置均已填写")]
    crypto_ok = False
    if settings.get("sm4_key"):
        try:
            profile = spec.sm4_profile(settings)
            wrapping, field = settings.get("body_wrapping", "raw"), settings.get("wrap_field", "data")
            sample = spec.encode_document({"orgCode": settings.get("org_code") or "probe"})
            body = spec.encrypt_body(sample, settings.get("sm4_key"), profile, wrapping, field)
            crypto_ok = spec.encode_document(spec.decrypt_body(body, settings.get("sm4_key"), profile, wrapping,
                                                               field)) == sample
            steps.append(ProbeStep("SM4 加密自检", crypto_ok, f"{profile.describe()}，请求体 {wrapping}："
                                   + ("本地加密、解密一致" if crypto_ok else "解密结果与明文不一致")))
        except (ConfigurationError, CryptoError, ValueError) as exc:
            steps.append(ProbeStep("SM4 加密自检", False, f"SM4 密钥或加密参数有误：{exc}"))
    else:
        steps.append(ProbeStep("SM4 加密自检", False, "未设置 SM4 密钥"))
    return ProbeResult.local_checks_only(NOT_DEFINED, steps, passed=bool(not missing and crypto_ok))
