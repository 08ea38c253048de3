"""A ``baosong worker --burst`` that starts up, says it is ready, and takes no job until released.

bench_worker.py starts every worker this way, so that the measured span (first attempt to last) holds
work only: started together and let go at once, two workers' start-ups (about a second of CPU each:
imports, the crypto self-test, the app) used to overlap the first worker's sending and were counted as
its time. A deployed worker starts once and runs for months, so its start-up is measured apart.

    python bench/ready_worker.py READY_DIR     # touches READY_DIR/ready-<pid>, waits for READY_DIR/go
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path


def main(ready_dir: Path) -> int:
    from core.app import process_app
    from core.crypto import self_test
    from core.plugins import registry

    # What worker.main does before its loop, done once here; worker.main repeats it from warm caches.
    self_test()
    registry()
    with process_app().app_context():
        pass
    import worker

    (ready_dir / f"ready-{os.getpid()}").touch()
    while not (ready_dir / "go").exists():
        time.sleep(0.001)
    profile_dir = os.environ.get("BENCH_WORKER_PROFILE")  # a directory: each worker's cProfile lands there
    if not profile_dir:
        return worker.main(burst=True)
    import cProfile

    # CPU time, not wall time: a worker sharing two cores with another is descheduled at times, and wall
    # time would count that against whatever function it was in.
    profiler = cProfile.Profile(time.process_time)
    try:
        return profiler.runcall(worker.main, burst=True)
    finally:
        profiler.dump_stats(str(Path(profile_dir) / f"worker-{os.getpid()}.prof"))


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
