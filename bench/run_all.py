"""Run every benchmark in bench/ in turn and print their figures (``make bench``; ``make bench LARGE=1``
adds the 1,000,000-upload size to the scale benchmark, which takes a while).

The scale benchmark (every admin page over HTTP) runs at 10,000 and 100,000 uploads on SQLite and on
PostgreSQL when ``BENCH_PG_URL`` (default postgresql://postgres@127.0.0.1:5432/test_h8) is reachable.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
RUNS = [
    ["bench_crypto.py"],
    ["bench_pipeline.py", "--n", "40"],
    ["bench_deptmatch.py"],
    ["bench_upload_log.py", "10000", "100000", "--db", "sqlite"],
    ["bench_worker.py", "--slots", "600", "--workers", "1", "2", "--repeat", "3", "--ceiling"],
    ["bench_scale.py", "--pg-url", os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test_h8"),
     *(["--large"] if "--large" in sys.argv or os.environ.get("LARGE") else [])],
]

if __name__ == "__main__":
    failed = 0
    for args in RUNS:
        print(f"\n=== {' '.join(args)} ===", flush=True)
        failed |= subprocess.call([sys.executable, str(BENCH / args[0]), *args[1:]])
    sys.exit(failed)
