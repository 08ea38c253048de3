"""The RQ worker entry (``python worker.py`` or ``baosong worker``).

On start it runs the crypto self-test (uploads stop with a clear message if it fails) and a sweep,
so uploads a killed worker left behind are re-run.
"""

from __future__ import annotations

import logging
import sys

log = logging.getLogger("baosong.worker")


def main(burst: bool = False) -> int:
    from rq import Worker

    from core.app import process_app
    from core.crypto import CryptoError, self_test
    from core.pipeline import sweep
    from core.queue import connection, queues

    try:
        self_test()
    except CryptoError as exc:
        log.error("加密自检失败，工作进程不处理上报：%s", exc)
        return 2
    from core.plugins import registry

    registry()  # import every plugin once, before RQ forks a work-horse per job
    with process_app().app_context():
        log.info("start-up sweep: %s", sweep())
    worker = Worker(queues(), connection=connection())
    worker.work(burst=burst, with_scheduler=False)
    return 0


if __name__ == "__main__":
    from core.cli import _setup_logging

    _setup_logging()
    sys.exit(main(burst="--burst" in sys.argv))
