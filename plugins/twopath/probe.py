"""测试连接 for the Jiangxi platform: one 9001 sign-in (签到) with the saved settings.

The document names 签到 among the common interfaces (2.3 公用依赖接口) and every later envelope carries
the ``sign_no`` it returns (1.1 #17 "通过签到【9001】交易获取"); its input and output are those of the specs
README (``{"signIn": {opter_no, mac, ip}}`` -> ``{"signinoutb": {sign_time, sign_no}}``). A sign-in
writes no report data and is what every upload does first, so it proves, in one call, what an upload
needs: the address and interface template, the gateway authentication (CSB AccessKey/SecretKey or TIF
paasid/token, and the server's clock), the envelope (institution code and name, 就医地医保区划,
接收方系统代码, 接口版本号) and the data signature (cainfo) when one is configured. 5311/5301 would need
a person number (a patient's data), so they are not used.

The envelope, the msgid and the headers are built by the very functions uploads use
(``client.checked_input``, ``client.make_envelope``, ``client.outbound_request``). The sign-in goes as
the scheduled tasks' operator (定时任务经办人). It is sent directly, not through the ledger, and never
follows a redirect (测试连接 goes to the saved address only); the ``sign_no`` it gets is not kept and
never shown, and there is no 9002 sign-out afterwards, because on platforms that hand an operator the
same ``sign_no`` for the day that would end the session the scheduled tasks are using.
"""

from __future__ import annotations

import json
import time
from typing import Any

import requests

from core.errors import BaosongError
from core.hook_types import TRANSPORT_NOT_SENT, ProbeResult, ProbeStep, Settings
from core.http import classify
from plugins.twopath import client, protocol

INFNO = "9001"
MAX_SECONDS = 10.0  # an admin waits for the answer
STEP_BUILD = "报文与签名"
STEP_SEND = "请求"
STEP_GATEWAY = "网关认证"
STEP_ANSWER = "应答格式"
STEP_SIGN_IN = "签到【9001】"
GATEWAY_HINT = {
    "csb": "请核对网关类型、CSB AccessKey/SecretKey、接口版本与服务器时间",
    "tif": "请核对网关类型、TIF paasid/token 与服务器时间（允许误差 ±180 秒）",
    "none": "平台要求网关认证：请选择 csb 或 tif 并填写密钥",
}


def _excerpt(text: str, limit: int = 120) -> str:
    text = " ".join(str(text or "").split())
    return text if len(text) <= limit else text[:limit] + "…"


def _gateway_message(body: str) -> str:
    """What a gateway says when it refuses (its JSON message, or the start of its body)."""
    try:
        answer = json.loads(body)
    except ValueError:
        return _excerpt(body)
    if isinstance(answer, dict):
        for key in ("message", "msg", "err_msg", "error", "errorMessage"):
            if answer.get(key):
                return _excerpt(answer[key])
    return _excerpt(body)


def _build(settings: Settings) -> tuple[dict[str, Any], Any, str]:
    opter = settings.get("default_opter", "baosong")
    opter_name = settings.get("default_opter_name", "报送定时同步")
    input_node = client.checked_input(INFNO, client.sign_in_input(opter, settings))
    envelope = client.make_envelope(INFNO, input_node, settings, opter=opter, opter_name=opter_name,
                                    opter_type=settings.get("opter_type", "1"), sign_no="")
    return envelope, client.outbound_request(envelope, settings), opter


def run(settings: Settings) -> ProbeResult:
    """The 9001 probe (module docstring); a ProbeResult with the steps it got through."""
    steps: list[ProbeStep] = []

    def result(ok: bool, message: str, **kwargs) -> ProbeResult:
        return ProbeResult(ok, message, steps=tuple(steps), **kwargs)

    if not settings.get("base_url").strip():
        steps.append(ProbeStep(STEP_BUILD, False, "未配置接口地址前缀 base_url"))
        return result(False, "未配置接口地址前缀 base_url，未发送", conclusive=False)
    try:
        envelope, request, opter = _build(settings)
    except (BaosongError, ValueError) as exc:  # a setting missing or invalid (timeout): nothing was sent
        steps.append(ProbeStep(STEP_BUILD, False, str(exc)))
        return result(False, f"设置不完整或有误，未发送：{exc}", conclusive=False)
    gateway = settings.get("gateway", "csb")
    signed = f"数据签名 {envelope['signtype']}" if envelope["signtype"] else "不做数据签名（cainfo 为空）"
    steps.append(ProbeStep(STEP_BUILD, True, f"msgid {envelope['msgid']}；网关认证 {gateway}；{signed}"))

    url = request.url
    started = time.monotonic()
    try:
        answer = requests.post(url, data=request.body.encode("utf-8"), headers=request.headers,
                               timeout=min(request.timeout, MAX_SECONDS), allow_redirects=False)
        body = answer.text
    except requests.RequestException as exc:
        elapsed = round((time.monotonic() - started) * 1000)
        sent = classify(exc) != TRANSPORT_NOT_SENT
        if isinstance(exc, requests.Timeout):
            what = "等待应答超时" if sent else "连接超时"
        else:
            what = "连接中断，没有应答" if sent else "无法连接（地址、端口或网络不通）"
        steps.append(ProbeStep(STEP_SEND, False, f"{what}（{type(exc).__name__}）"))
        return result(False, f"医保平台没有应答：{what}", url=url, elapsed_ms=elapsed)
    elapsed = round((time.monotonic() - started) * 1000)
    status = answer.status_code
    common = {"url": url, "status": status, "elapsed_ms": elapsed}
    steps.append(ProbeStep(STEP_SEND, 200 <= status < 300, f"HTTP {status}，{elapsed} ms"))

    if 300 <= status < 400:
        return result(False, f"地址返回重定向（HTTP {status}），测试连接不跟随：请核对接口地址前缀与交易地址模板",
                      **common)
    if status in (401, 403):
        said = _gateway_message(body)
        steps.append(ProbeStep(STEP_GATEWAY, False, said or f"HTTP {status}"))
        return result(False, f"网关拒绝（HTTP {status}{'：' + said if said else ''}）："
                             f"{GATEWAY_HINT.get(gateway, GATEWAY_HINT['csb'])}", **common)
    if status >= 500 or status == 429:
        return result(False, f"平台暂时不可用（HTTP {status}）：稍后再试，或联系医保平台运维", **common)
    if status != 200:
        return result(False, f"HTTP {status}：交易地址可能有误，请核对接口地址前缀与交易地址模板", **common)
    steps.append(ProbeStep(STEP_GATEWAY, True, "网关已放行" if gateway != "none" else "未使用网关认证"))

    try:
        document = json.loads(body)
        if not isinstance(document, dict):
            raise ValueError
    except ValueError:
        steps.append(ProbeStep(STEP_ANSWER, False, f"不是 JSON：{_excerpt(body, 80)}"))
        return result(False, "应答不是平台约定的 JSON：该地址可能不是医保平台的交易接口", **common)
    code = protocol.parse_infcode(document.get("infcode"))
    if code is None:
        steps.append(ProbeStep(STEP_ANSWER, False, "缺少可识别的 infcode"))
        return result(False, "应答缺少交易状态码 infcode：该地址可能不是医保平台的交易接口", **common)
    steps.append(ProbeStep(STEP_ANSWER, True, f"infcode {document.get('infcode')}"))

    if code != 0:
        err_msg = _excerpt(document.get("err_msg") or "平台未说明原因", 200)
        steps.append(ProbeStep(STEP_SIGN_IN, False, err_msg))
        return result(False, f"平台拒绝签到【9001】（infcode {code}）：{err_msg}。请按提示核对机构编号与名称、"
                             "就医地医保区划、接收方系统代码、接口版本号、签到 MAC/IP 或数据签名设置", **common)
    output = document.get("output") or {}
    if isinstance(output, str):
        try:
            output = json.loads(output) if output.strip() else {}
        except ValueError:
            output = {}
    info = output.get("signinoutb") if isinstance(output, dict) else None
    if not isinstance(info, dict) or not info.get("sign_no"):
        steps.append(ProbeStep(STEP_SIGN_IN, False, "成功应答中没有 signinoutb.sign_no"))
        return result(False, "平台答复成功，但没有返回签到号 sign_no：后续交易无法进行", **common)
    when = str(info.get("sign_time") or "")
    steps.append(ProbeStep(STEP_SIGN_IN, True, f"经办人 {opter} 已签到" + (f"（{when}）" if when else "")
                           + "；签到号未保存"))
    return result(True, f"签到【9001】成功：网关认证、报文头与数据签名均被平台接受（经办人 {opter}）", **common)
