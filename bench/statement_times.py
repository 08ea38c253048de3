"""Print the SQL statement times that workers wrote with ``BENCH_WORKER_SQLTIME`` (bench/ready_worker.py),
per upload, for one run or side by side for two (one worker against two, say).

    BENCH_WORKER_SQLTIME=/tmp/one python bench/bench_worker.py --workers 1 --warmup 0
    BENCH_WORKER_SQLTIME=/tmp/two python bench/bench_worker.py --workers 2 --warmup 0
    python bench/statement_times.py /tmp/one /tmp/two

Uploads are counted by the attempts inserted (one per upload in a back-fill that all succeeds).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def load(directory: Path) -> tuple[dict[str, list[float]], int]:
    totals: dict[str, list[float]] = {}
    for path in sorted(directory.glob("worker-*.json")):
        for name, values in json.loads(path.read_text()).items():
            entry = totals.setdefault(name, [0, 0.0, 0.0])
            for i, value in enumerate(values):
                entry[i] += value
    uploads = int(totals.get("INSERT attempts", [0])[0]) or 1
    return totals, uploads


def main(directories: list[Path]) -> int:
    runs = [load(d) for d in directories]
    names = sorted({n for totals, _ in runs for n in totals}, key=lambda n: -runs[-1][0].get(n, [0, 0, 0])[1])
    head = "".join(f" | {d.name[:12]:>12} {'calls':>6} {'CPU µs':>7} {'wall µs':>7}" for d in directories)
    print(f"{'statement':36}{head}")
    for name in names + ["all"]:
        cells = []
        for totals, uploads in runs:
            if name == "all":
                count, cpu, wall = (sum(v[i] for v in totals.values()) for i in range(3))
            else:
                count, cpu, wall = totals.get(name, [0, 0.0, 0.0])
            cells.append(f" | {'':12} {count / uploads:6.2f} {cpu / uploads * 1e6:7.1f} {wall / uploads * 1e6:7.1f}")
        print(f"{name:36}{''.join(cells)}")
    print("per upload; uploads: " + ", ".join(str(u) for _, u in runs))
    return 0


if __name__ == "__main__":
    sys.exit(main([Path(a) for a in sys.argv[1:]]))
