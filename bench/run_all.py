"""Run every benchmark in bench/ in turn and print their figures (``make bench``).

The upload-log benchmark runs at 10,000 and 100,000 uploads on SQLite here; pass sizes to
``bench/bench_upload_log.py`` yourself for 1,000,000 or PostgreSQL (it takes a while).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
RUNS = [
    ["bench_crypto.py"],
    ["bench_pipeline.py", "--n", "40"],
    ["bench_deptmatch.py"],
    ["bench_upload_log.py", "10000", "100000", "--db", "sqlite"],
]

if __name__ == "__main__":
    failed = 0
    for args in RUNS:
        print(f"\n=== {' '.join(args)} ===", flush=True)
        failed |= subprocess.call([sys.executable, str(BENCH / args[0]), *args[1:]])
    sys.exit(failed)
