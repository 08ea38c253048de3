"""Run every benchmark in bench/ in turn and print their figures (``make bench``; ``make bench LARGE=1``
adds the 1,000,000-upload size to the scale benchmark, which takes a while).

The scale benchmark (every admin page over HTTP) runs at 10,000 and 100,000 uploads on SQLite and on
PostgreSQL, and the worker benchmark on both ledgers, when ``BENCH_PG_URL`` (default
postgresql://postgres@127.0.0.1:5432/test; each benchmark works in a schema of its own and drops it)
is reachable.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bench_upload_log import PG_URL  # this folder is on the path when run as a script

BENCH = Path(__file__).resolve().parent
# An even number of rounds: the worker counts take the first place after a pause equally often.
WORKERS = ["bench_worker.py", "--slots", "600", "--workers", "1", "2", "--repeat", "4", "--ceiling"]
RUNS = [
    ["bench_crypto.py"],
    ["bench_pipeline.py", "--n", "40"],
    ["bench_deptmatch.py"],
    ["bench_upload_log.py", "10000", "100000", "--db", "sqlite"],
    WORKERS,
    [*WORKERS, "--db", "postgres", "--pg-url", PG_URL],
    ["bench_scale.py", "--pg-url", PG_URL, *(["--large"] if "--large" in sys.argv or os.environ.get("LARGE") else [])],
]

if __name__ == "__main__":
    failed = 0
    for args in RUNS:
        print(f"\n=== {' '.join(args)} ===", flush=True)
        failed |= subprocess.call([sys.executable, str(BENCH / args[0]), *args[1:]])
    sys.exit(failed)
