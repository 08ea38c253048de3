"""The ``baosong`` command."""

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
    from core.secrets import install_log_redaction

    logging.basicConfig(level=os.environ.get("BAOSONG_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    install_log_redaction()


@click.group()
def main() -> None:
    """Baosong（报送）：医院监管数据上报平台。"""
    _setup_logging()


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


@main.command("web")
@click.option("--host", default="127.0.0.1")
@click.option("--port", default=5000, type=int)
def web_command(host: str, port: int) -> None:
    """Serve the admin."""
    from web import create_app

    create_app().run(host=host, port=port, debug=False, use_reloader=False, threaded=True)


@main.command("worker")
@click.option("--burst", is_flag=True, help="Exit when the queue is empty.")
def worker_command(burst: bool) -> None:
    """Run an RQ worker (same as worker.py)."""
    import worker

    sys.exit(worker.main(burst=burst))


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

    from werkzeug.serving import run_simple

    from core.config import instance_dir
    from core.sandbox import RawHeadersHandler, combined_app, load_configs

    path = Path(config_path) if config_path else instance_dir() / "sandbox.json"
    run_simple(host, port, combined_app(load_configs(path)), threaded=True, request_handler=RawHeadersHandler)


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


@main.command("demo")
@click.option("--port", default=5000, type=int)
@click.option("--sandbox-port", default=5001, type=int)
@click.option("--workers", default=1, type=int)
def demo_command(port: int, sandbox_port: int, workers: int) -> None:
    """Run everything on embedded defaults: admin, worker, scheduler, sandboxes, demo hospital."""
    from core.demo import run

    run(port=port, sandbox_port=sandbox_port, workers=workers)


def _attach_web_commands() -> None:
    # Added by the web helper: the admin's `create-admin` command lives in web/cli.py (imported lazily
    # so a core-only install still has a working `baosong`).
    try:
        from web.cli import create_admin_command
    except ImportError:
        return
    main.add_command(create_admin_command)


_attach_web_commands()


if __name__ == "__main__":
    main()
