"""``baosong settings show|set|unset|import|export``: regulator settings and platform flags from the
command line, for an ops person scripting a deployment.

Validation is core.settings' (the admin form uses the same functions) and values are read as the form
reads them: surrounding spaces dropped, an empty secret leaves the stored one. Secrets are read only from
standard input or a file — never from the command line (shell history, ``ps``) — and never printed;
``export`` leaves them out unless ``--with-secrets``, which writes only to a file created with mode
0600. Every change is audited with the actor ``cli:<login>``.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
from typing import Any

import click

from core.errors import ConfigurationError

PLATFORM = "platform"  # the TARGET naming the platform flags instead of a regulator


def _app():
    from core.app import create_app

    return create_app()


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:
        return "cli"


def _audit(action: str, target: str, before: Any = None, after: Any = None) -> None:
    from core.db import db
    from core.models import AuditLog

    db.session.add(AuditLog(actor=_actor(), action=action, target=target[:200], before=before, after=after))


def _regulator(name: str):
    from core.plugins import registry

    regulator = registry().regulators.get(name)
    if regulator is None:
        known = "、".join(sorted(registry().regulators)) or "无"
        raise ConfigurationError(f"没有名为 {name} 的监管平台（已安装：{known}；平台参数用 {PLATFORM}）")
    return regulator


def _field(regulator, key: str):
    fields = {f.key: f for f in regulator.settings}
    if key not in fields:
        raise ConfigurationError(f"{regulator.title} 没有设置项 {key}（可设置：{'、'.join(fields)}）")
    return fields[key]


def _read_secret(from_file: str | None) -> str:
    if from_file:
        with open(from_file, encoding="utf-8") as handle:
            return handle.read().strip("\r\n")
    if sys.stdin.isatty():
        return click.prompt("请输入（不回显）", hide_input=True, confirmation_prompt=True)
    return sys.stdin.read().strip("\r\n")


def current_document(*, with_secrets: bool) -> dict:
    """Every platform flag and every declared regulator setting, as export writes them."""
    from core import settings
    from core.plugins import registry

    regulators: dict[str, dict[str, str]] = {}
    omitted: dict[str, list[str]] = {}
    for name, regulator in sorted(registry().regulators.items()):
        values = settings.regulator_settings(name)
        regulators[name] = {}
        for f in regulator.settings:
            if f.secret and not with_secrets:
                omitted.setdefault(name, []).append(f.key)
                continue
            regulators[name][f.key] = values.get(f.key, "")
    document: dict[str, Any] = {"platform": {k: v for k, v in settings.flags().items() if k in settings.FLAG_SPECS},
                                "regulators": regulators}
    if omitted:
        document["secrets_omitted"] = omitted
    return document


def apply_document(document: dict) -> list[str]:
    """Validate everything in an exported/hand-written document, then store it in one transaction.
    Returns what changed ("target.key"); nothing is stored if anything is wrong."""
    from core import settings
    from core.db import db

    if not isinstance(document, dict) or not set(document) <= {"platform", "regulators", "secrets_omitted"}:
        raise ConfigurationError("文件应为 {\"platform\": {...}, \"regulators\": {监管平台: {设置项: 值}}}")
    errors: list[str] = []
    flags: dict[str, str] = {}
    for name, value in (document.get("platform") or {}).items():
        try:
            flags[name] = settings.validate_flag(name, value)
        except ConfigurationError as exc:
            errors.append(str(exc))
    values: list[tuple[Any, Any, str]] = []
    for reg_name, entries in (document.get("regulators") or {}).items():
        try:
            regulator = _regulator(reg_name)
        except ConfigurationError as exc:
            errors.append(str(exc))
            continue
        for key, value in (entries or {}).items():
            try:
                field = _field(regulator, key)
            except ConfigurationError as exc:
                errors.append(str(exc))
                continue
            value = "" if value is None else str(value).strip()  # as the admin form reads its fields
            if field.secret and not value:
                continue  # as in the admin form: an empty secret leaves the stored one (``unset`` clears it)
            problem = settings.setting_problem(field, value)
            if problem:
                errors.append(f"{reg_name}.{problem}")
            else:
                values.append((regulator, field, value))
    if errors:
        raise ConfigurationError("未导入任何设置：\n  " + "\n  ".join(errors))
    changed: list[str] = []
    current_flags = settings.flags()
    for name, value in flags.items():
        if current_flags.get(name) != value:
            _audit("settings.flag", name, before={name: current_flags.get(name)}, after={name: value})
            settings.set_flag(name, value)
            changed.append(f"{PLATFORM}.{name}")
    current: dict[str, Any] = {}
    for regulator, field, value in values:
        if regulator.name not in current:
            current[regulator.name] = settings.regulator_settings(regulator.name)
        if current[regulator.name].get(field.key, "") == value:
            continue
        settings.save_regulator_setting(regulator.name, field.key, value)
        shown = "（已更换）" if field.secret else value
        _audit("regulator.settings", regulator.name, after={field.key: shown})
        changed.append(f"{regulator.name}.{field.key}")
    db.session.commit()
    return changed


@click.group("settings")
def settings_group() -> None:
    """Regulator settings and platform flags (secrets only from stdin or a file)."""


def _fail(exc: ConfigurationError):
    raise click.ClickException(str(exc))


@settings_group.command("show")
@click.argument("target", required=False)
def show_command(target: str | None) -> None:
    """Show the platform flags and regulator settings (secrets masked)."""
    from core import settings
    from core.plugins import registry

    with _app().app_context():
        if target in (None, PLATFORM):
            click.echo(f"[{PLATFORM}] 平台参数")
            values = settings.flags()
            for name, spec in settings.FLAG_SPECS.items():
                default = "" if values[name] != settings.FLAG_DEFAULTS[name] else "  （默认）"
                click.echo(f"  {name:26} {values[name]:>8}  {spec.label}{default}")
        names = sorted(registry().regulators) if target in (None,) else ([] if target == PLATFORM else [target])
        for name in names:
            try:
                regulator = _regulator(name)
            except ConfigurationError as exc:
                _fail(exc)
            click.echo(f"[{name}] {regulator.title}")
            for f in regulator.settings:
                value = settings.shown_value(name, f.key)
                click.echo(f"  {f.key:26} {value or '（未设置）'}  {f.label}{'（密钥）' if f.secret else ''}")


@settings_group.command("set")
@click.argument("target")
@click.argument("key")
@click.argument("value", required=False)
@click.option("--from-file", "from_file", type=click.Path(exists=True, dir_okay=False),
              help="read the value (a secret) from this file")
@click.option("--stdin", "from_stdin", is_flag=True, help="read the value from standard input")
def set_command(target: str, key: str, value: str | None, from_file: str | None, from_stdin: bool) -> None:
    """Set KEY of TARGET (a regulator, or 'platform'). Secrets: --stdin or --from-file only."""
    with _app().app_context():
        try:
            secret = target != PLATFORM and _field(_regulator(target), key).secret
        except ConfigurationError as exc:
            _fail(exc)
        if value is not None and secret:
            raise click.ClickException(f"{key} 是密钥：不能写在命令行（会留在 shell 历史和进程列表中），"
                                       "请用 --stdin 或 --from-file 读取")
        if value is None:
            if not (from_file or from_stdin or secret):
                raise click.ClickException("缺少 VALUE（或用 --stdin / --from-file）")
            value = _read_secret(from_file)
        if secret and not value.strip():
            raise click.ClickException(f"{key} 为空：未修改（清除密钥请用 baosong settings unset {target} {key}）")
        if target == PLATFORM:
            document = {"platform": {key: value}}
        else:
            document = {"regulators": {target: {key: value}}}
        try:
            changed = apply_document(document)
        except ConfigurationError as exc:
            _fail(exc)
    click.echo(f"已保存 {target}.{key}" if changed else f"{target}.{key} 没有变化")


@settings_group.command("unset")
@click.argument("target")
@click.argument("key")
def unset_command(target: str, key: str) -> None:
    """Remove a stored value of TARGET: its default applies again."""
    from core import settings
    from core.db import db
    from core.models import Flag

    with _app().app_context():
        try:
            if target == PLATFORM:
                settings.validate_flag(key, settings.FLAG_DEFAULTS.get(key, "0"))
                row = db.session.get(Flag, key)
                removed = row is not None
                if row is not None:
                    db.session.delete(row)
            else:
                field = _field(_regulator(target), key)
                removed = settings.delete_regulator_setting(target, field.key)
        except ConfigurationError as exc:
            _fail(exc)
        if removed:
            _audit("settings.unset", f"{target}.{key}")
        db.session.commit()
    click.echo(f"已清除 {target}.{key}，恢复默认值" if removed else f"{target}.{key} 本来就是默认值")


@settings_group.command("export")
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None, help="write to this file")
@click.option("--with-secrets", is_flag=True, help="include secrets (only with --output; file mode 0600)")
def export_command(output: str | None, with_secrets: bool) -> None:
    """Export settings as JSON (secrets left out unless --with-secrets)."""
    if with_secrets and not output:
        raise click.ClickException("--with-secrets 只能写入文件（--output），不会打印到终端")
    with _app().app_context():
        document = current_document(with_secrets=with_secrets)
    text = json.dumps(document, ensure_ascii=False, indent=2) + "\n"
    if output is None:
        click.echo(text, nl=False)
        return
    if os.path.exists(output):
        os.remove(output)  # recreate: an existing file's looser mode must not be kept
    fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if with_secrets else 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    click.echo(f"已导出到 {output}{'（含密钥，权限 0600）' if with_secrets else '（不含密钥）'}")


@settings_group.command("import")
@click.argument("source", type=click.File("r", encoding="utf-8"))
def import_command(source) -> None:
    """Import settings from a JSON file (or '-' for stdin); nothing is stored if anything is wrong."""
    try:
        document = json.load(source)
    except ValueError as exc:
        raise click.ClickException(f"不是有效的 JSON：{exc}") from None
    with _app().app_context():
        try:
            changed = apply_document(document)
        except ConfigurationError as exc:
            _fail(exc)
    click.echo(f"已导入 {len(changed)} 项修改" + (f"：{'、'.join(changed)}" if changed else ""))
