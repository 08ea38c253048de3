"""Per-regulator settings (secrets sealed at rest) and platform flags, read fresh on every use so a
change in the admin takes effect without a restart."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import sqlalchemy as sa

from core.config import Config
from core.db import db
from core.errors import ConfigurationError
from core.hook_types import SettingField, Settings
from core.models import Flag, RegulatorSetting
from core.plugins import registry
from core.secrets import SecretBox, load_or_create_key, mask, register_secret_for_logs

# Platform flags and their defaults (the hospital's retry requirement: every 5 minutes, at most 3 times).
FLAG_DEFAULTS = {
    "retry_interval_minutes": "5",
    "retry_max": "3",
    "auto_retry_stopped": "0",
    "send_lease_seconds": "120",
    "retention_days": "180",  # attempt bodies (patient data) are pruned after this (core.retention)
    # Roles (comma-separated) that see patient identifiers unmasked; web.permissions reads it.
    "patient_identifier_roles": "admin",
}


@dataclass(frozen=True)
class FlagSpec:
    label: str
    minimum: int
    maximum: int
    help: str = ""


# What a person may set, and its bounds: the one validation the admin form and `baosong settings` share.
FLAG_SPECS = {
    "retry_interval_minutes": FlagSpec("自动重试间隔（分钟）", 1, 1440, "失败后隔多久自动重试"),
    "retry_max": FlagSpec("自动重试次数", 0, 50, "超过后标记为失败，等待人工处理"),
    "send_lease_seconds": FlagSpec("发送租约（秒）", 30, 3600,
                                   "工作进程发送一条上报最多占用的时间；超时视为进程中断，由清扫任务以幂等方式重发"),
    "retention_days": FlagSpec("报文保留天数", 7, 3650, "超过后清除尝试的明文、发送报文和响应（元数据与代码保留）"),
    "auto_retry_stopped": FlagSpec("停止全部自动重试（1 停止，0 恢复）", 0, 1),
}


def validate_flag(name: str, value: str) -> str:
    """The normalised value of a platform flag, or ConfigurationError saying what is allowed."""
    spec = FLAG_SPECS.get(name)
    if spec is None:
        raise ConfigurationError(f"未知的平台参数 {name}（可设置：{'、'.join(FLAG_SPECS)}）")
    text = str(value).strip()
    try:
        number = int(text)
    except ValueError:
        raise ConfigurationError(f"{spec.label}：应为整数，收到「{text[:40]}」") from None
    if not spec.minimum <= number <= spec.maximum:
        raise ConfigurationError(f"{spec.label}：应在 {spec.minimum} 到 {spec.maximum} 之间，收到 {number}")
    return str(number)


def setting_problem(field: SettingField, value: str) -> str | None:
    """Why ``value`` cannot be stored for a regulator setting (None: it can). Shared by the admin form
    and `baosong settings`."""
    if field.choices and value not in field.choices and value != "":
        return f"{field.label}：应为 {'、'.join(field.choices)} 之一"
    if "\x00" in value:
        return f"{field.label}：含有不可见的空字符"
    return None


def delete_regulator_setting(regulator: str, key: str) -> bool:
    """Remove a stored setting (its default applies again). The caller commits (and audits)."""
    row = db.session.execute(
        db.select(RegulatorSetting).filter_by(regulator=regulator, key=key)).scalar_one_or_none()
    if row is None:
        return False
    db.session.delete(row)
    return True


@functools.cache
def _box(key_file: str) -> SecretBox:
    from pathlib import Path

    return SecretBox(load_or_create_key(Path(key_file)))


def secret_box() -> SecretBox:
    return _box(str(Config.from_env().secret_key_file))


def regulator_settings(regulator: str) -> Settings:
    declared = registry().regulators.get(regulator)
    fields = {f.key: f for f in declared.settings} if declared else {}
    values = {key: f.default for key, f in fields.items()}
    secret_keys = {key for key, f in fields.items() if f.secret}
    # Read on every attempt: plain columns (no ORM objects); the box opens each sealed value once.
    rows = db.session.execute(sa.select(RegulatorSetting.key, RegulatorSetting.value, RegulatorSetting.secret)
                              .where(RegulatorSetting.regulator == regulator))
    for key, value, secret in rows:
        if secret:
            values[key] = secret_box().open(value)
            secret_keys.add(key)
            register_secret_for_logs(values[key])
        else:
            values[key] = value
    return Settings(regulator=regulator, values=values, secret_keys=frozenset(secret_keys))


IV_SETTING = "sm4_iv"


def save_regulator_setting(regulator: str, key: str, value: str) -> None:
    """Store one setting; secrets are sealed. The caller commits (and audits).

    A secret never lands in a plain setting: a plain value equal to one of the regulator's secrets is
    refused, and a fixed SM4 IV equal to the key is stored as the flag ``IV_IS_KEY`` ("key") instead."""
    from core.crypto import IV_IS_KEY

    declared = registry().regulators.get(regulator)
    fields = {f.key: f for f in declared.settings} if declared else {}
    if declared is not None and key not in fields:
        raise ConfigurationError(f"{declared.title} 没有设置项 {key}")
    secret = fields[key].secret if key in fields else False
    if value and len(value) >= 4:
        current = regulator_settings(regulator)
        if secret and current.get(IV_SETTING, "").lower() == value.lower() and IV_SETTING not in current.secret_keys:
            _store(regulator, IV_SETTING, IV_IS_KEY, secret=False)  # an IV that was the key's bytes
        elif not secret and value.lower() in {s.lower() for s in current.secrets()}:
            if key == IV_SETTING:
                value = IV_IS_KEY
            else:
                label = fields[key].label if key in fields else key
                raise ConfigurationError(f"{label}：不能填写密钥或权限码（该设置不保密）")
    _store(regulator, key, value, secret=secret)


def _store(regulator: str, key: str, value: str, *, secret: bool) -> None:
    row = db.session.execute(
        db.select(RegulatorSetting).filter_by(regulator=regulator, key=key)
    ).scalar_one_or_none()
    if row is None:
        row = RegulatorSetting(regulator=regulator, key=key)
        db.session.add(row)
    row.secret = secret
    row.value = secret_box().seal(value) if secret else value


def shown_value(regulator: str, key: str) -> str:
    """A setting as the admin may see it: secrets masked."""
    settings = regulator_settings(regulator)
    value = settings.get(key)
    return mask(value) if key in settings.secret_keys else value


def flags() -> dict[str, str]:
    """Every platform flag in one query (defaults for those never set)."""
    stored = dict(db.session.execute(sa.select(Flag.name, Flag.value)).all())
    return {**FLAG_DEFAULTS, **{k: v for k, v in stored.items() if k in FLAG_DEFAULTS}}


def flag(name: str) -> str:
    row = db.session.get(Flag, name)
    return row.value if row else FLAG_DEFAULTS[name]


def flag_int(name: str) -> int:
    return int(flag(name))


def set_flag(name: str, value: str) -> None:
    if name not in FLAG_DEFAULTS:
        raise ConfigurationError(f"未知的开关 {name}")
    if name in FLAG_SPECS:
        value = validate_flag(name, value)
    row = db.session.get(Flag, name)
    if row is None:
        db.session.add(Flag(name=name, value=value))
    else:
        row.value = value
