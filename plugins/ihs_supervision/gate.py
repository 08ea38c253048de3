"""The known-answer gate: nothing is sent to the IHS platform until an admin has entered one worked
example from the vendor (appid, key, service, randomstr, uptime, data, expected sign) and the
configured recipe reproduces it.

Verifying stores a fingerprint of (live key, recipe) keyed with the deployment's at-rest key, never
the key itself; changing the key or the recipe afterwards no longer matches it, so the gate closes
until someone verifies again. The state is recomputed on every use (planning, every attempt, the
admin), from the example and the current settings.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime

from core import clock
from core.db import db
from core.errors import ConfigurationError
from core.hook_types import Settings
from core.settings import secret_box

from . import recipes
from .models import SignGate

REGULATOR = "ihs_supervision"
EXAMPLE_FIELDS = ("appid", "service", "randomstr", "uptime", "data", "expected_sign")


@dataclass(frozen=True)
class GateState:
    open: bool
    reason: str  # why closed, or what verified it
    recipe: recipes.SignRecipe | None = None
    verified_at: datetime | None = None
    verified_by: str | None = None
    has_example: bool = False

    @property
    def label(self) -> str:
        return "已验证，允许发送" if self.open else "未通过，拒绝发送"


def fingerprint(key: str, recipe: recipes.SignRecipe) -> str:
    """HMAC-SHA256 under the at-rest key of (recipe, key): equal iff both are unchanged."""
    return hmac.new(_install_secret(), f"{recipe.id}\x1f{key}".encode(), hashlib.sha256).hexdigest()


def _install_secret() -> bytes:
    from core.config import Config
    from core.secrets import load_or_create_key

    return hmac.new(load_or_create_key(Config.from_env().secret_key_file), b"baosong-ihs-gate",
                    hashlib.sha256).digest()


def record(regulator: str = REGULATOR) -> SignGate | None:
    return db.session.get(SignGate, regulator)


def example_values(gate: SignGate) -> dict[str, str]:
    return {"appid": gate.appid, "service": gate.service, "randomstr": gate.randomstr, "uptime": gate.uptime,
            "data": gate.data}


def example_key(gate: SignGate) -> str:
    return secret_box().open(gate.example_key) if gate.example_key else ""


def save_example(values: dict[str, str], key: str | None, actor: str, regulator: str = REGULATOR) -> SignGate:
    """Store (or replace) the worked example; ``key`` None keeps the stored one. The gate closes until
    verified again. The caller commits."""
    gate = record(regulator)
    if gate is None:
        gate = SignGate(regulator=regulator)
        db.session.add(gate)
    for name in EXAMPLE_FIELDS:
        setattr(gate, name, (values.get(name) or "").strip() if name != "data" else values.get(name) or "")
    if key is not None:
        gate.example_key = secret_box().seal(key)
    gate.fingerprint = None
    gate.verified_recipe = None
    gate.verified_at = None
    gate.verified_by = None
    gate.last_result = f"示例已由 {actor} 保存，尚未验证"
    return gate


def _reproduces(gate: SignGate, recipe: recipes.SignRecipe) -> bool:
    key = example_key(gate)
    if not key or not gate.expected_sign:
        return False
    return hmac.compare_digest(recipe.sign(example_values(gate), key), gate.expected_sign.strip())


def verify(settings: Settings, actor: str) -> GateState:
    """Check the configured recipe against the example; open the gate for the current key on success.
    The caller commits (and audits)."""
    gate = record(settings.regulator)
    if gate is None or not gate.expected_sign:
        return state(settings)
    try:
        recipe = recipes.from_settings(settings.values)
    except recipes.RecipeError as exc:
        gate.fingerprint = None
        gate.last_result = f"签名方案设置有误：{exc}"
        return state(settings)
    live_key = settings.get("app_secret")
    if recipe is None:
        gate.fingerprint, gate.last_result = None, "尚未选择签名方案"
    elif not live_key:
        gate.fingerprint, gate.last_result = None, "尚未设置签名密钥 app_secret"
    elif not _reproduces(gate, recipe):
        gate.fingerprint = None
        gate.last_result = f"签名方案 {recipe.describe()} 不能复现示例的 sign"
    else:
        gate.fingerprint = fingerprint(live_key, recipe)
        gate.verified_recipe = recipe.id
        gate.verified_at = clock.utc_naive(clock.now())
        gate.verified_by = actor
        gate.last_result = f"签名方案 {recipe.describe()} 复现了示例的 sign"
    return state(settings)


def state(settings: Settings) -> GateState:
    """Open only when an example exists, the configured recipe reproduces it, and the key and recipe
    are the ones that were verified."""
    gate = record(settings.regulator)
    if gate is None or not gate.expected_sign:
        return GateState(False, "尚未录入厂商提供的签名示例（已知答案），拒绝发送")
    try:
        recipe = recipes.from_settings(settings.values)
    except recipes.RecipeError as exc:
        return GateState(False, f"签名方案设置有误：{exc}", has_example=True)
    if recipe is None:
        return GateState(False, "尚未选择签名方案（规范第 4 节缺失）", has_example=True)
    if not _reproduces(gate, recipe):
        return GateState(False, f"当前签名方案不能复现示例的 sign：{recipe.describe()}", recipe, has_example=True)
    live_key = settings.get("app_secret")
    if not live_key:
        return GateState(False, "尚未设置签名密钥 app_secret", recipe, has_example=True)
    if not gate.fingerprint:
        return GateState(False, "示例可复现，但尚未点击“验证”", recipe, has_example=True)
    if not hmac.compare_digest(gate.fingerprint, fingerprint(live_key, recipe)):
        return GateState(False, "签名密钥或签名方案在验证后被修改，需重新验证", recipe, has_example=True)
    return GateState(True, gate.last_result or "已验证", recipe, gate.verified_at, gate.verified_by, True)


def require_open(settings: Settings) -> recipes.SignRecipe:
    """The verified recipe, or ConfigurationError with the reason the gate is closed."""
    current = state(settings)
    if not current.open or current.recipe is None:
        raise ConfigurationError(f"签名已知答案校验未通过：{current.reason}")
    return current.recipe


def search(regulator: str = REGULATOR) -> list[recipes.SignRecipe]:
    """"Which recipe is this?": every recipe that reproduces the stored example."""
    gate = record(regulator)
    if gate is None or not gate.expected_sign:
        return []
    return recipes.find_recipes(example_values(gate), example_key(gate), gate.expected_sign)
