"""配置管理 › 监管平台设置: each plugin's regulator settings (endpoint URLs, institution codes, credentials,
crypto profile, timeouts), edited through core.settings so a change applies to the next upload.

Secrets are write-only: the page shows them masked (core.settings.shown_value), an empty field leaves them
unchanged, a replaced one is never shown again, and only admins may change them.

测试连接: the plugin that declared the regulator may implement the ``test_connection`` hook (a harmless
request of the regulator's own protocol, answering a structured ``ProbeResult``); otherwise every URL
setting gets a plain HTTP GET with a short timeout, reporting reachable / status / latency.

密钥核对 (known answer): the hospital pastes a key, a plaintext and the regulator's ciphertext; Baosong
says which SM4 (core.crypto.detect_sm4_profile) or SM2 (detect_sm2_profile, with a private key) profile
reproduces it, and can store an SM4 profile into the regulator's sm4_* settings.
"""

from __future__ import annotations

import time
from typing import Any

import requests
from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for

from core import settings as core_settings
from core.crypto import CryptoError, SM4Profile, detect_sm2_profile, detect_sm4_profile
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
    return [{"field": f, "value": core_settings.shown_value(regulator.name, f.key),
             "is_set": bool(core_settings.regulator_settings(regulator.name).get(f.key))}
            for f in regulator.settings]


def save_settings(regulator: Regulator, form, *, admin: bool) -> tuple[list[str], list[str]]:
    """Apply the submitted values; returns (changed keys, errors). Nothing is saved if any value is wrong."""
    current = core_settings.regulator_settings(regulator.name)
    changes: dict[str, str] = {}
    errors: list[str] = []
    for f in regulator.settings:
        if f.key not in form:
            continue
        value = (form.get(f.key) or "").strip()
        if f.secret:
            if not value:
                continue  # empty means unchanged: the stored secret is never sent to the browser
            if not admin:
                errors.append(f"{f.label}：只有管理员可以更换密钥和权限码")
                continue
        elif value == current.get(f.key, ""):
            continue
        if f.choices and value not in f.choices and value != "":
            errors.append(f"{f.label}：应为 {'、'.join(f.choices)} 之一")
            continue
        changes[f.key] = value
    if errors:
        return [], errors
    before = {k: ("（已设置）" if k in current.secret_keys else current.get(k, "")) for k in changes}
    for key, value in changes.items():
        core_settings.save_regulator_setting(regulator.name, key, value)
    if changes:
        secret = {f.key for f in regulator.settings if f.secret}
        after = {k: ("（已更换）" if k in secret else v) for k, v in changes.items()}
        audit.record("regulator.settings", regulator.name, before=before, after=after)
    db.session.commit()
    return sorted(changes), []


def probe_urls(settings: Settings, regulator: Regulator, timeout: float = PROBE_TIMEOUT) -> list[dict[str, Any]]:
    """A plain GET to every configured URL: reachable (any HTTP answer), status, latency."""
    results = []
    for f in regulator.settings:
        url = settings.get(f.key).strip()
        if f.secret or not url.lower().startswith(("http://", "https://")):
            continue
        started = time.monotonic()
        try:
            answer = requests.get(url, timeout=timeout, allow_redirects=False)
            results.append({"label": f.label, "url": url, "ok": True, "status": answer.status_code,
                            "ms": round((time.monotonic() - started) * 1000), "error": None})
        except requests.RequestException as exc:
            results.append({"label": f.label, "url": url, "ok": False, "status": None,
                            "ms": round((time.monotonic() - started) * 1000), "error": _short_error(exc)})
    return results


def _short_error(exc: Exception) -> str:
    if isinstance(exc, requests.Timeout):
        return "超时（无应答）"
    if isinstance(exc, requests.ConnectionError):
        return "无法连接（地址、端口或网络不通）"
    return type(exc).__name__


def test_connection(regulator: Regulator) -> dict[str, Any]:
    settings = core_settings.regulator_settings(regulator.name)
    reg = registry()
    if reg.has_probe(regulator.name):
        started = time.monotonic()
        try:
            probe = reg.test_connection(regulator.name, settings)
        except Exception as exc:  # a plugin's probe failing is an outcome to show, not a crash
            probe = ProbeResult(False, f"{type(exc).__name__}: {exc}")
        probe = probe or ProbeResult(False, "插件没有返回检测结果", conclusive=False)

        def clean(text: str | None) -> str:
            text = str(text or "")
            for secret in settings.secrets():  # never echo a credential back
                text = text.replace(secret, "****")
            return text

        ms = probe.elapsed_ms if probe.elapsed_ms is not None else round((time.monotonic() - started) * 1000)
        steps = [{"name": clean(s.name), "ok": s.ok, "detail": clean(s.detail)} for s in probe.steps]
        return {"plugin": True, "ok": probe.ok, "conclusive": probe.conclusive, "message": clean(probe.message),
                "ms": ms, "url": clean(probe.url), "status": probe.status, "steps": steps, "urls": []}
    urls = probe_urls(settings, regulator)
    if not urls:
        return {"plugin": False, "ok": False, "message": "没有配置任何接口地址（http:// 或 https://）", "urls": []}
    ok = all(u["ok"] for u in urls)
    return {"plugin": False, "ok": ok, "message": "全部地址可达" if ok else "部分地址不可达", "urls": urls}


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
@require_role(Role.OPERATOR)
def save(name: str):
    regulator = _regulator_or_404(name)
    try:
        changed, errors = save_settings(regulator, request.form, admin=_is_admin())
    except ConfigurationError as exc:
        db.session.rollback()
        changed, errors = [], [str(exc)]
    if errors:
        for error in errors:
            flash(error, "error")
        flash("未保存任何设置", "error")
    elif changed:
        labels = {f.key: f.label for f in regulator.settings}
        flash(f"已保存：{'、'.join(labels[k] for k in changed)}（下一次上报起生效）", "ok")
    else:
        flash("没有修改", "ok")
    return redirect(url_for("config_regulators.edit", name=name))


@bp.post("/<name>/test")
@require_role(Role.OPERATOR)
def test(name: str):
    regulator = _regulator_or_404(name)
    result = test_connection(regulator)
    audit.record("regulator.test", name, after={"ok": result["ok"]}, commit=True)
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
    values = {setting: ("" if getattr(profile, attr) is None else str(getattr(profile, attr)))
              for attr, setting in SM4_SETTING_KEYS.items() if setting in keys}
    before = {k: current.get(k, "") for k in values}
    for key, value in values.items():
        core_settings.save_regulator_setting(name, key, value)
    audit.record("regulator.sm4_profile", name, before=before, after=values)
    db.session.commit()
    flash(f"已应用 SM4 参数：{profile.describe()}", "ok")
    return redirect(url_for("config_regulators.edit", name=name))
