"""Per-regulator settings (secrets sealed at rest) and platform flags, read fresh on every use so a
change in the admin takes effect without a restart."""

from __future__ import annotations

import functools

from core.config import Config
from core.db import db
from core.errors import ConfigurationError
from core.hook_types import Settings
from core.models import Flag, RegulatorSetting
from core.plugins import registry
from core.secrets import SecretBox, load_or_create_key, mask, register_secret_for_logs

# Platform flags and their defaults (the hospital's retry requirement: every 5 minutes, at most 3 times).
FLAG_DEFAULTS = {
    "retry_interval_minutes": "5",
    "retry_max": "3",
    "auto_retry_stopped": "0",
    "send_lease_seconds": "120",
    # Roles (comma-separated) that see patient identifiers unmasked; web.permissions reads it.
    "patient_identifier_roles": "admin",
}


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
    for row in db.session.execute(db.select(RegulatorSetting).filter_by(regulator=regulator)).scalars():
        if row.secret:
            values[row.key] = secret_box().open(row.value)
            secret_keys.add(row.key)
            register_secret_for_logs(values[row.key])
        else:
            values[row.key] = row.value
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
    stored = {row.name: row.value for row in db.session.execute(db.select(Flag)).scalars()}
    return {**FLAG_DEFAULTS, **{k: v for k, v in stored.items() if k in FLAG_DEFAULTS}}


def flag(name: str) -> str:
    row = db.session.get(Flag, name)
    return row.value if row else FLAG_DEFAULTS[name]


def flag_int(name: str) -> int:
    return int(flag(name))


def set_flag(name: str, value: str) -> None:
    if name not in FLAG_DEFAULTS:
        raise ConfigurationError(f"未知的开关 {name}")
    row = db.session.get(Flag, name)
    if row is None:
        db.session.add(Flag(name=name, value=value))
    else:
        row.value = value
