"""The ``baosong`` command: the core's commands; plugins (and the admin) add theirs through the
``register_commands`` hook."""

from __future__ import annotations

import logging
import os
import sys
from datetime import datetime

import click

from core import clock


def _app():
    from core.app import create_app

    return create_app()


def _setup_logging() -> None:
    from core.logs import setup

    setup()


# Commands that run before a deployment is configured (making its key) are exempt from the check.
_UNCHECKED_COMMANDS = frozenset({"new-secret-key"})


@click.group()
@click.option("--production", is_flag=True,
              help="Production mode (same as BAOSONG_ENV=production): refuse embedded defaults.")
@click.pass_context
def main(ctx: click.Context, production: bool) -> None:
    """Baosong（报送）：医院监管数据上报平台。"""
    if production:
        os.environ["BAOSONG_ENV"] = "production"  # inherited by every child process
    _setup_logging()
    if ctx.invoked_subcommand in _UNCHECKED_COMMANDS:
        return
    exit_unless_production_ready()


def exit_unless_production_ready() -> None:
    """In production mode, end the process (status 78) naming every variable that is missing; the
    check of every entry point (``baosong ...``, ``python worker.py``)."""
    from core.config import require_production_ready
    from core.errors import ConfigurationError

    try:
        require_production_ready()
    except ConfigurationError as exc:
        click.echo(str(exc), err=True)
        sys.exit(78)  # EX_CONFIG: systemd shows the unit failed, with the message in its journal


@main.command("init-db")
def init_db_command() -> None:
    """Create or upgrade the database schema and scheduled tasks."""
    from core.bootstrap import init_db

    init_db(_app())
    click.echo("数据库已就绪")


@main.command("plugins")
def plugins_command() -> None:
    """List installed plugins and the report types they own."""
    from core.plugins import LOAD_ERRORS, registry

    listing = registry().listing()
    for name, error in LOAD_ERRORS.items():
        click.echo(f"{name}  [加载失败: {error}]")
    for plugin, report_types in listing:
        click.echo(plugin)
        for rt in report_types:
            when = rt.cron or "事件触发"
            state = "" if rt.available else f"  [不可用: {rt.unavailable_reason}]"
            click.echo(f"  {rt.name:32} {rt.title}  ({when}){state}")


@main.command("worker")
@click.option("--burst", is_flag=True, help="Exit when the queue is empty.")
@click.option("--fork", "fork", is_flag=True,
              help="Fork a work-horse per job (RQ's Worker) instead of running jobs in-process (SimpleWorker).")
def worker_command(burst: bool, fork: bool) -> None:
    """Run an RQ worker (same as worker.py)."""
    import worker

    sys.exit(worker.main(burst=burst, worker_class="fork" if fork else "simple"))


@main.group("stats")
def stats_group() -> None:
    """Statistics aggregates."""


@stats_group.command("rebuild")
def stats_rebuild_command() -> None:
    """Recompute the statistics aggregates from the upload ledger (stop the workers first)."""
    from core import aggregates

    with _app().app_context():
        counts = aggregates.rebuild()
        aggregates.optimize_planner(full=True)
    click.echo(f"已重建统计：{counts['uploads']} 条上报，{counts['attempts']} 次发送，"
               f"{counts['counters']} 个计数，{counts['indicators']} 条指标")


@main.group("search-keys")
def search_keys_group() -> None:
    """The upload log's exact search keys (core/search_keys.py)."""


@search_keys_group.command("rebuild")
def search_keys_rebuild_command() -> None:
    """Recompute the exact search keys (ID numbers, phone, visit numbers...) from the upload ledger."""
    from core import search_keys
    from core.db import db

    with _app().app_context(), db.engine.connect() as conn:
        if not search_keys.has_tables(conn):
            click.echo("数据库尚未初始化：请先运行 baosong init-db", err=True)
            sys.exit(1)
        keys = search_keys.rebuild(conn, commit=conn.commit)
        conn.commit()
    click.echo(f"已重建检索键：{keys} 个")


@main.command("scheduler")
def scheduler_command() -> None:
    """Run the scheduler (one acts; others wait as standby)."""
    from core.scheduler_process import run

    run()


@main.command("sandbox")
@click.option("--host", default="127.0.0.1")
@click.option("--port", default=5001, type=int)
@click.option("--config", "config_path", default=None, help="sandbox config JSON (default instance/sandbox.json)")
def sandbox_command(host: str, port: int, config_path: str | None) -> None:
    """Serve every plugin's sandbox regulator."""
    from pathlib import Path

    from core.config import instance_dir
    from core.sandbox import SandboxServer, combined_app, load_configs

    path = Path(config_path) if config_path else instance_dir() / "sandbox.json"
    server = SandboxServer(host, port, combined_app(load_configs(path)))
    click.echo(f"沙箱监管方：http://{host}:{server.server_port}", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close_connections()
        server.server_close()


def _parse_local(value: str, tz: str) -> datetime:
    from zoneinfo import ZoneInfo

    for fmt in ("%Y-%m-%d %H:%M", "%Y-%m-%d"):
        try:
            return datetime.strptime(value, fmt).replace(tzinfo=ZoneInfo(tz))
        except ValueError:
            continue
    raise click.BadParameter(f"时间「{value}」应为 YYYY-MM-DD 或 'YYYY-MM-DD HH:MM'")


@main.command("backfill")
@click.argument("report_type")
@click.argument("start")
@click.argument("end")
@click.option("--dry-run", is_flag=True, help="Only count the slots.")
@click.option("--replan", is_flag=True, help="Also re-plan slots in error, skipped, held back or lost.")
def backfill_command(report_type: str, start: str, end: str, dry_run: bool, replan: bool) -> None:
    """Run REPORT_TYPE for every slot of its schedule between START and END (local time) that has ended."""
    from core.scheduler import backfill

    tz = str(clock.default_timezone())

    def progress(done: int, uploads: int, errors: int) -> None:
        click.echo(f"  {done} 个时段，{uploads} 条上报" + (f"，{errors} 个出错" if errors else ""), err=True)

    with _app().app_context():
        count = backfill(report_type, _parse_local(start, tz), _parse_local(end, tz), dry_run=dry_run,
                         replan=replan, progress=progress)
    click.echo(f"{'将补传' if dry_run else '已计划'} {count} 个{'时段' if dry_run else '上报'}")


@main.command("run")
@click.argument("report_type")
def run_command(report_type: str) -> None:
    """Run REPORT_TYPE now for its latest due slot."""
    from core.scheduler import run_now

    with _app().app_context():
        ids = run_now(report_type)
    click.echo(f"已计划 {len(ids)} 条上报")


@main.command("sweep")
def sweep_command() -> None:
    """Recover uploads of dead workers and enqueue due retries, once."""
    from core.pipeline import sweep

    with _app().app_context():
        click.echo(sweep())


@main.command("status")
@click.option("--json", "as_json", is_flag=True, help="the /readyz JSON")
def status_command(as_json: bool) -> None:
    """Readiness of this deployment, as /readyz reports it (exit 1 when not ready)."""
    import json

    from core.health import readiness

    with _app().app_context():
        report = readiness()
    if as_json:
        click.echo(json.dumps(report, ensure_ascii=False, indent=1))
    else:
        click.echo(f"报送 {'就绪' if report['ready'] else '未就绪'}")
        for name, check in report["checks"].items():
            click.echo(f"  {'✓' if check['ok'] else '✗'} {name:12} {check['detail']}")
    sys.exit(0 if report["ready"] else 1)


@main.command("prune")
@click.option("--dry-run", is_flag=True, help="Only count what would be removed.")
@click.option("--days", type=int, default=None, help="Override the retention setting (days).")
def prune_command(dry_run: bool, days: int | None) -> None:
    """Remove attempt bodies (plaintext, wire body, answer) older than the retention period."""
    from core.retention import prune

    with _app().app_context():
        result = prune(dry_run=dry_run, days=days)
    verb = "将清除" if dry_run else "已清除"
    click.echo(f"{verb} {result['attempts']} 次尝试的报文（保留 {result['days']} 天，{result['before']:%Y-%m-%d %H:%M} 之前）")


@main.command("alerts")
def alerts_command() -> None:
    """Evaluate the alert rules once and send what changed (deploy/baosong-alerts.timer runs this every
    minute, independently of the scheduler and workers, so their absence is noticed too)."""
    from core.alerts import evaluate

    with _app().app_context():
        events = evaluate()
        for event in events:
            failed = [d["channel"] for d in event.deliveries if not d["ok"]]
            click.echo(f"{event.title}" + (f"（发送失败：{'、'.join(failed)}）" if failed else ""))
    if not events:
        click.echo("没有需要发送的告警")


@main.command("new-secret-key")
@click.argument("path", type=click.Path(dir_okay=False))
def new_secret_key_command(path: str) -> None:
    """Write a new at-rest key to PATH (mode 0600); refuses to overwrite an existing one."""
    from cryptography.fernet import Fernet

    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise click.ClickException(f"{path} 已存在：不会覆盖（覆盖将使已保存的密钥无法解密）") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(Fernet.generate_key())
    click.echo(f"已生成 {path}（权限 0600）。请与数据库一起备份，并设置 BAOSONG_SECRET_KEY_FILE={path}")


def _attach_settings_commands() -> None:
    from core.settings_cli import settings_group

    main.add_command(settings_group)


_attach_settings_commands()


def _plugin_commands() -> None:
    """Commands of the installed plugins (hook ``register_commands``): the admin's ``web``,
    ``create-admin`` and ``demo`` arrive this way too, so a core-only install still has a working
    ``baosong`` and the core never imports the admin."""
    from core.plugins import registry

    try:
        registry().pm.hook.register_commands(cli=main)
    except Exception as exc:  # a broken plugin must not take the command line down
        logging.getLogger("baosong.cli").error("plugin commands failed to load: %s", exc)


_plugin_commands()


if __name__ == "__main__":
    main()
