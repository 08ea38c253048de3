"""测试连接 for the Shangrao supervision platform: the document has no call that proves the protocol
without data.

shangrao-insurance-supervision.txt 3.1 (服务清单) lists exactly three services, ``fee_list_d`` 费用明细上报,
``setl_d`` 结算信息上报 and ``mdtrt_d`` 就诊信息上报, all of which receive report rows; the document has no
签到 (9001-style sign-in), query or heartbeat service, and no other address than
``/metadata/receive/{服务代码}``. An empty or made-up batch would still be a submission the platform
may record (and its msgid is then taken), and an unknown service code is not an interface the
document defines. So nothing is sent: the probe says so (``conclusive=False``) and checks, through the
code uploads use, what can be checked here: every service's settings (``common.check_ready``: address,
institution name, 12-character institution code, infno, SM2 profile) and that the public key is an
SM2 point that encrypts a sample with the configured profile, giving exactly the ciphertext size the
batch cutting expects (``common.ciphertext_chars``). Without the platform's private key nobody here can
tell whether it is the right public key: that shows with the first batch (40006 解密失败). The page
itself checks that the saved address answers HTTP.
"""

from __future__ import annotations

from core.crypto import CryptoError, sm2_encrypt
from core.errors import ConfigurationError
from core.hook_types import ProbeResult, ProbeStep, Settings
from plugins.shangrao_insurance import common

NOT_DEFINED = ("文档未定义无副作用的测试接口（3.1 服务清单只有费用明细、结算信息、就诊信息三个上报服务，没有签到、查询或心跳接口）："
               "未向平台发送任何请求，公钥与机构授权是否被平台接受要到首次上报才能确认")


def run(settings: Settings) -> ProbeResult:
    """Local checks only (module docstring); always ``conclusive=False``."""
    problems = []
    for service in common.SERVICES:
        try:
            common.check_ready(settings, service)
        except ConfigurationError as exc:
            if str(exc) not in problems:
                problems.append(str(exc))
    steps = [ProbeStep("设置", not problems, "；".join(problems) if problems else "三个服务的上报设置均已填写")]
    crypto_ok = False
    if settings.get("public_key").strip():
        try:
            profile = common.sm2_profile(settings)
            sample = common.encode_rows([{"FIXMEDINS_CODE": settings.get("fixmedins_code") or "probe"}])
            data = sm2_encrypt(sample, settings.get("public_key"), profile)
            expected = common.ciphertext_chars(len(sample), profile)
            crypto_ok = len(data) == expected if profile.format == "raw" else len(data) <= expected
            steps.append(ProbeStep("SM2 加密自检", crypto_ok, f"{profile.describe()}："
                                   + ("公钥有效，本地加密成功" if crypto_ok else "密文长度与预计不符")))
        except (ConfigurationError, CryptoError) as exc:
            steps.append(ProbeStep("SM2 加密自检", False, f"监管平台 SM2 公钥或加密设置有误：{exc}"))
    else:
        steps.append(ProbeStep("SM2 加密自检", False, "未设置监管平台 SM2 公钥"))
    return ProbeResult.local_checks_only(NOT_DEFINED, steps, passed=bool(not problems and crypto_ok))
