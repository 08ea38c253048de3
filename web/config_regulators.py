"""配置管理 › 监管平台设置: each plugin's regulator settings (endpoint URLs, institution codes, credentials,
crypto profile, timeouts), edited through core.settings so a change applies to the next upload.

Only admins change a regulator's settings (web.permissions): whoever may change the URL may send the
credentials anywhere. Secrets are write-only: the page shows them masked (core.settings.shown_value), an
empty field leaves them unchanged, a replaced one is never shown again. When a save changes the host (or
port) an endpoint URL points to, every secret of that regulator not re-entered in the same save is
cleared, so the credentials never follow a new address unless a person typed them for it. A non-secret
setting may not hold a secret's value (nothing reaches pages, audit or logs that way).

测试连接 (admins only) goes to the SAVED addresses only, never follows a redirect, and reports what it
proved, step by step: TCP connection, TLS handshake (https), the HTTP status, and whether the
regulator's own protocol answered — only the plugin's ``test_connection`` hook (a harmless request of the
regulator's protocol, answering a structured ``ProbeResult``) can prove that; a plain HTTP answer proves
only that something answers there, and 3xx/404/405/5xx count as failures.

密钥核对 (known answer): the hospital pastes a key, a plaintext and the regulator's ciphertext; Baosong
says which SM4 (core.crypto.detect_sm4_profile) or SM2 (detect_sm2_profile, with a private key) profile
reproduces it, and can store an SM4 profile into the regulator's sm4_* settings.
"""

from __future__ import annotations

import socket
import ssl
import time
from typing import Any
from urllib.parse import urlsplit

import requests
from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for

from core import settings as core_settings
from core.crypto import IV_IS_KEY, CryptoError, SM4Profile, detect_sm2_profile, detect_sm4_profile
from core.db import db
from core.errors import ConfigurationError
from core.hook_types import ProbeResult, Regulator, Settings
from core.plugins import registry
from web import audit
from web.auth import require_role
from web.models import Role

bp = Blueprint("config_regulators", __name__, url_prefix="/config/regulators")
PROBE_TIMEOUT = 5.0  # seconds, at most: the admin is waiting for the answer
SM4_SETTING_KEYS = {"mode": "sm4_mode", "padding": "sm4_padding", "key_format": "sm4_key_format",
                    "output": "sm4_output", "iv": "sm4_iv"}
MAX_SAMPLE = 20000


def _regulator_or_404(name: str) -> Regulator:
    regulator = registry().regulators.get(name)
    if regulator is None:
        abort(404)
    return regulator


def _is_admin() -> bool:
    user = getattr(g, "user", None)
    return bool(user and user.is_admin)


def shown_settings(regulator: Regulator) -> list[dict[str, Any]]:
    settings = core_settings.regulator_settings(regulator.name)
    secret_values = set(settings.secrets())
    rows = []
    for f in regulator.settings:
        value = core_settings.shown_value(regulator.name, f.key)
        if not f.secret and value and value in secret_values:
            value = core_settings.mask(value)  # a key stored in a plain setting (by an older version)
        rows.append({"field": f, "value": value, "is_set": bool(settings.get(f.key))})
    return rows


def destination(value: str) -> str | None:
    """host:port an endpoint setting points to (None when it is not an absolute http(s) URL)."""
    value = (value or "").strip()
    if not value.lower().startswith(("http://", "https://")):
        return None
    try:
        parts = urlsplit(value)
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    except ValueError:
        return "?invalid"
    return f"{(parts.hostname or '').lower()}:{port}"


def _is_endpoint(field_key: str, *values: str) -> bool:
    return "url" in field_key.lower() or any(destination(v) for v in values)


def save_settings(regulator: Regulator, form, *, admin: bool) -> tuple[list[str], list[str]]:
    """Apply the submitted values; returns (changed keys, errors). Nothing is saved if any value is wrong."""
    changed, errors, _cleared = save_settings_clearing(regulator, form, admin=admin)
    return changed, errors


def save_settings_clearing(regulator: Regulator, form, *, admin: bool) -> tuple[list[str], list[str], list[str]]:
    """``save_settings`` that also returns the secrets it cleared because an endpoint host changed."""
    current = core_settings.regulator_settings(regulator.name)
    secret_values = {v for v in current.secrets() if v}
    changes: dict[str, str] = {}
    errors: list[str] = []
    if not admin:
        return [], ["只有管理员可以修改监管平台设置（接口地址、机构身份和密钥）"], []
    for f in regulator.settings:
        if f.key not in form:
            continue
        value = (form.get(f.key) or "").strip()
        if f.secret:
            if not value:
                continue  # empty means unchanged: the stored secret is never sent to the browser
        elif value == current.get(f.key, ""):
            continue
        elif value and value in secret_values:
            errors.append(f"{f.label}：不能填写密钥或权限码（该设置不保密，会显示在页面和审计日志中）")
            continue
        problem = core_settings.setting_problem(f, value)  # the one validation, shared with the CLI
        if problem:
            errors.append(problem)
            continue
        changes[f.key] = value
    if errors:
        return [], errors, []
    moved = [f for f in regulator.settings if not f.secret and f.key in changes
             and _is_endpoint(f.key, current.get(f.key, ""), changes[f.key])
             and destination(current.get(f.key, "")) != destination(changes[f.key])
             and (destination(current.get(f.key, "")) or destination(changes[f.key]))]
    cleared: list[str] = []
    if moved:
        for f in regulator.settings:
            if f.secret and f.key not in changes and current.get(f.key):
                changes[f.key] = ""
                cleared.append(f.key)
    before = {k: ("（已设置）" if k in current.secret_keys else current.get(k, "")) for k in changes}
    for key, value in changes.items():
        core_settings.save_regulator_setting(regulator.name, key, value)
    if changes:
        secret = {f.key for f in regulator.settings if f.secret}
        after = {k: (("（已清除）" if k in cleared else "（已更换）") if k in secret else v) for k, v in changes.items()}
        audit.record("regulator.settings", regulator.name, before=before, after=after)
    db.session.commit()
    return sorted(changes), [], cleared


# --- 测试连接 ---------------------------------------------------------------------------------------------

def _step(name: str, ok: bool, detail: str) -> dict[str, Any]:
    return {"name": name, "ok": ok, "detail": detail}


HTTP_VERDICTS = {
    404: "HTTP 404：该地址上没有这个接口（路径可能有误）",
    405: "HTTP 405：该地址不接受这种请求；说明有 HTTP 服务应答，但不能证明是监管平台接口",
}


def probe_url(url: str, timeout: float = PROBE_TIMEOUT) -> dict[str, Any]:
    """TCP, then TLS for https, then one GET that never follows a redirect. Each step says what it proved."""
    started = time.monotonic()
    steps: list[dict[str, Any]] = []
    result = {"url": url, "steps": steps, "status": None, "ok": False, "error": None}

    def done(error: str | None = None) -> dict[str, Any]:
        result["error"] = error
        result["ms"] = round((time.monotonic() - started) * 1000)
        return result

    try:
        parts = urlsplit(url)
        host, scheme = parts.hostname, parts.scheme.lower()
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        return done("地址格式无效")
    if scheme not in ("http", "https") or not host:
        return done("地址应以 http:// 或 https:// 开头")
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            steps.append(_step("TCP", True, f"已连接 {host}:{port}"))
            if scheme == "https":
                try:
                    context = ssl.create_default_context()
                    with context.wrap_socket(sock, server_hostname=host) as tls:
                        steps.append(_step("TLS", True, f"握手成功（{tls.version()}，证书有效）"))
                except (ssl.SSLError, OSError) as exc:
                    steps.append(_step("TLS", False, f"握手失败：{type(exc).__name__}"))
                    return done("TLS 握手失败（证书无效或协议不符）")
    except TimeoutError:
        steps.append(_step("TCP", False, f"连接 {host}:{port} 超时"))
        return done("超时（无应答）")
    except OSError:
        steps.append(_step("TCP", False, f"无法连接 {host}:{port}"))
        return done("无法连接（地址、端口或网络不通）")
    try:
        answer = requests.get(url, timeout=timeout, allow_redirects=False, stream=True)
        answer.close()
    except requests.RequestException as exc:
        steps.append(_step("HTTP", False, _short_error(exc)))
        return done(_short_error(exc))
    status = result["status"] = answer.status_code
    if answer.is_redirect or 300 <= status < 400:
        steps.append(_step("HTTP", False, f"HTTP {status}：要求跳转到 {answer.headers.get('Location', '?')[:200]}（未跟随）"))
        return done("对方要求跳转，未跟随；请确认接口地址")
    if status in HTTP_VERDICTS:
        steps.append(_step("HTTP", False, HTTP_VERDICTS[status]))
        return done(HTTP_VERDICTS[status])
    if status >= 500:
        steps.append(_step("HTTP", False, f"HTTP {status}：对方服务出错"))
        return done(f"HTTP {status}：对方服务出错")
    steps.append(_step("HTTP", True, f"HTTP {status}：有 HTTP 服务应答"))
    result["ok"] = True  # reachable; whether it is the regulator is not proved by a GET
    return done()


def probe_urls(settings: Settings, regulator: Regulator, timeout: float = PROBE_TIMEOUT) -> list[dict[str, Any]]:
    """``probe_url`` for every saved URL setting (secrets are never probed or shown)."""
    results = []
    for f in regulator.settings:
        url = settings.get(f.key).strip()
        if f.secret or not url.lower().startswith(("http://", "https://")):
            continue
        results.append({"label": f.label, **probe_url(url, timeout)})
    return results


def _short_error(exc: Exception) -> str:
    if isinstance(exc, requests.Timeout):
        return "超时（无应答）"
    if isinstance(exc, requests.ConnectionError):
        return "无法连接（地址、端口或网络不通）"
    return type(exc).__name__


def test_connection(regulator: Regulator) -> dict[str, Any]:
    """Probe the saved addresses, then the plugin's protocol test if it has one. ``ok`` only when the
    regulator's own protocol answered; ``reachable`` when every address at least answered HTTP."""
    settings = core_settings.regulator_settings(regulator.name)
    urls = probe_urls(settings, regulator)
    reachable = bool(urls) and all(u["ok"] for u in urls)

    def clean(text: str | None) -> str:
        text = str(text or "")
        for secret in settings.secrets():  # never echo a credential back
            if secret:
                text = text.replace(secret, "****")
        return text

    for u in urls:
        u["url"] = clean(u["url"])
    reg = registry()
    protocol = None
    if reg.has_probe(regulator.name):
        started = time.monotonic()
        try:
            probe = reg.test_connection(regulator.name, settings)
        except Exception as exc:  # a plugin's probe failing is an outcome to show, not a crash
            probe = ProbeResult(False, f"{type(exc).__name__}: {exc}")
        probe = probe or ProbeResult(False, "插件没有返回检测结果", conclusive=False)
        ms = probe.elapsed_ms if probe.elapsed_ms is not None else round((time.monotonic() - started) * 1000)
        protocol = {"ok": bool(probe.ok and probe.conclusive), "conclusive": probe.conclusive,
                    "message": clean(probe.message), "ms": ms, "url": clean(probe.url), "status": probe.status,
                    "steps": [{"name": clean(s.name), "ok": s.ok, "detail": clean(s.detail)} for s in probe.steps]}
    if protocol is not None and protocol["conclusive"]:
        ok = protocol["ok"]
        message = ("监管平台按其协议应答：" if ok else "协议级测试未通过：") + protocol["message"]
    elif not urls:
        ok, message = False, "没有配置任何接口地址（http:// 或 https://）"
    else:
        ok = False
        message = ("全部地址有 HTTP 应答；但此平台没有协议级测试，未能证明应答来自监管平台接口"
                   if reachable else "部分地址不可达或应答异常（见下表）")
        if protocol is not None:
            message += f"（插件检测：{protocol['message']}）"
    return {"plugin": protocol is not None, "ok": ok, "reachable": reachable, "message": message,
            "protocol": protocol, "urls": urls, "ms": protocol["ms"] if protocol else None}


def _sm4_settings_available(regulator: Regulator) -> bool:
    keys = {f.key for f in regulator.settings}
    return {"sm4_mode", "sm4_padding", "sm4_key_format", "sm4_output"} <= keys


# --- views -----------------------------------------------------------------------------------------------

@bp.get("/")
def index():
    regulators = sorted(registry().regulators.values(), key=lambda r: r.name)
    return render_template("config/regulators_index.html", regulators=regulators)


@bp.get("/<name>")
def edit(name: str):
    regulator = _regulator_or_404(name)
    return render_template("config/regulator_edit.html", regulator=regulator, rows=shown_settings(regulator),
                           is_admin=_is_admin(), sm4_apply=_sm4_settings_available(regulator),
                           has_probe=registry().has_probe(name))


@bp.post("/<name>")
@require_role(Role.ADMIN)
def save(name: str):
    regulator = _regulator_or_404(name)
    try:
        changed, errors, cleared = save_settings_clearing(regulator, request.form, admin=_is_admin())
    except ConfigurationError as exc:
        db.session.rollback()
        changed, errors, cleared = [], [str(exc)], []
    labels = {f.key: f.label for f in regulator.settings}
    if errors:
        for error in errors:
            flash(error, "error")
        flash("未保存任何设置", "error")
    elif changed:
        kept = [k for k in changed if k not in cleared]
        if kept:
            flash(f"已保存：{'、'.join(labels[k] for k in kept)}（下一次上报起生效）", "ok")
        if cleared:
            flash(f"接口地址指向了新的主机，为防止密钥被发往未经确认的地址，已清除：{'、'.join(labels[k] for k in cleared)}。"
                  "请重新填写后再上报（未填写前上报将失败）。", "warn")
    else:
        flash("没有修改", "ok")
    return redirect(url_for("config_regulators.edit", name=name))


@bp.post("/<name>/test")
@require_role(Role.ADMIN)
def test(name: str):
    regulator = _regulator_or_404(name)
    result = test_connection(regulator)
    audit.record("regulator.test", name, after={"ok": result["ok"], "reachable": result["reachable"]}, commit=True)
    return render_template("config/_regulator_test.html", result=result)


@bp.post("/<name>/known-answer")
@require_role(Role.OPERATOR)
def known_answer(name: str):
    """Which SM4/SM2 profile reproduces the regulator's sample. The key is used for this check only."""
    regulator = _regulator_or_404(name)
    algorithm = request.form.get("algorithm", "sm4")
    key = (request.form.get("key") or "").strip()
    plaintext = request.form.get("plaintext") or ""
    ciphertext = "".join((request.form.get("ciphertext") or "").split())
    error, profiles = None, []
    if not key or not plaintext or not ciphertext:
        error = "请填写密钥、明文和密文"
    elif len(plaintext) > MAX_SAMPLE or len(ciphertext) > MAX_SAMPLE * 3:
        error = "样例过长，请使用较短的样例"
    else:
        try:
            detect = detect_sm4_profile if algorithm == "sm4" else detect_sm2_profile
            profiles = detect(key, plaintext.encode("utf-8"), ciphertext)
        except (CryptoError, ValueError) as exc:
            error = f"无法核对：{exc}"
    audit.record("regulator.known_answer", name, after={"algorithm": algorithm, "matches": len(profiles)},
                 commit=True)
    return render_template("config/_known_answer.html", regulator=regulator, algorithm=algorithm,
                           profiles=profiles, error=error, sm4_apply=_sm4_settings_available(regulator))


@bp.post("/<name>/apply-sm4")
@require_role(Role.ADMIN)
def apply_sm4(name: str):
    """Store a detected SM4 profile into the regulator's sm4_* settings."""
    regulator = _regulator_or_404(name)
    if not _sm4_settings_available(regulator):
        abort(400)
    try:
        profile = SM4Profile(mode=request.form.get("mode", ""), padding=request.form.get("padding", ""),
                             key_format=request.form.get("key_format", ""), output=request.form.get("output", ""),
                             iv=request.form.get("iv") or None)
    except (CryptoError, TypeError) as exc:
        flash(f"参数无效：{exc}", "error")
        return redirect(url_for("config_regulators.edit", name=name))
    keys = {f.key for f in regulator.settings}
    current = core_settings.regulator_settings(name)
    if profile.iv not in (None, IV_IS_KEY) and profile.iv in {s.lower() for s in current.secrets() if s}:
        flash("固定 IV 与密钥相同：请应用“IV = 密钥”参数（不会把密钥写入非保密设置）", "error")
        return redirect(url_for("config_regulators.edit", name=name))
    values = {setting: ("" if getattr(profile, attr) is None else str(getattr(profile, attr)))
              for attr, setting in SM4_SETTING_KEYS.items() if setting in keys}
    before = {k: current.get(k, "") for k in values}
    for key, value in values.items():
        core_settings.save_regulator_setting(name, key, value)
    audit.record("regulator.sm4_profile", name, before=before, after=values)
    db.session.commit()
    flash(f"已应用 SM4 参数：{profile.describe()}", "ok")
    return redirect(url_for("config_regulators.edit", name=name))
