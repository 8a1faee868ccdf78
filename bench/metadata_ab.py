"""Metadata store A/B: 64 KiB durable tus PATCHes with PostgreSQL and with SQLite metadata, this checkout's
``src`` against another tree's, same run.

Four servers (``chunkd serve --no-auth``, durable, local files), started once: PostgreSQL metadata (a fresh
database each, dropped on stop) and SQLite metadata, each for this checkout and for ``--base-src`` (e.g. the
``src`` of ``git worktree add /tmp/base main``), put first on ``PYTHONPATH``. Rounds alternate the order so
that background load hits them alike; each round measures 1 and 8 connections (``bench/workers_ab.py``'s
``rate``: requests/s and the server tree's CPU-ms per request). Prints every measurement and the medians.

    .venv/bin/python bench/metadata_ab.py --base-src /tmp/base/src [--rounds 5] [--seconds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.peers import Chunkd, stop_all
from bench.small_extra import PgChunkd
from bench.workers_ab import rate

HERE = str(Path(__file__).resolve().parent.parent / "src")


class Pg(PgChunkd):
    def __init__(self, work: Path, label: str, src: str) -> None:
        self.src = src
        super().__init__(work)
        self.name, self.workdir = label, work / label

    def env(self) -> dict[str, str]:
        return {**super().env(), "PYTHONPATH": self.src}


class Lite(Chunkd):
    def __init__(self, work: Path, label: str, src: str) -> None:
        self.src = src
        super().__init__(work, label=label)

    def env(self) -> dict[str, str]:
        return {**super().env(), "PYTHONPATH": self.src}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base-src", required=True)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--work", default="/tmp/chunkd-metadata-ab")
    args = ap.parse_args()
    work = Path(args.work)
    servers = [Pg(work, "pg", HERE), Pg(work, "pg-base", args.base_src),
               Lite(work, "sqlite", HERE), Lite(work, "sqlite-base", args.base_src)]
    results: dict[tuple[str, int], list[dict[str, object]]] = {}
    try:
        for s in servers:
            s.start()
        for s in servers:
            rate(s, 1, 1.0)  # warm-up
        for r in range(args.rounds):
            for conns in (1, 8):
                for s in servers if r % 2 == 0 else servers[::-1]:
                    x = rate(s, conns, args.seconds)
                    results.setdefault((s.name, conns), []).append(x)
                    print(r, conns, s.name, x["rps"], x["cpu_ms"], flush=True)
    finally:
        stop_all()
    for (name, conns), xs in sorted(results.items()):
        rps = statistics.median(float(str(x["rps"])) for x in xs)
        cpu = statistics.median(float(str(x["cpu_ms"])) for x in xs)
        print(f"{name:12} {conns} conn: {rps:8.1f} req/s  {cpu:.3f} CPU-ms/req  "
              f"(rounds {', '.join(str(x['rps']) for x in xs)})")


if __name__ == "__main__":
    main()
