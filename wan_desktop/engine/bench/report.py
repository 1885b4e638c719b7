"""Join ``wan bench`` JSON documents into one report: a table per run and one JSON file.

    python -m wan_desktop.engine.bench.report RUN.json... [--out REPORT.json]

Used by ``bench/gpu_acceptance.sh``; the table is the one ``wan bench`` prints.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from wan_desktop.models.atomic import atomic_write_json

from .cli import table

SCHEMA = "wan.bench.report/1"


def report(docs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    results = [r for d in docs for r in d["results"]]
    return {
        "schema": SCHEMA,
        "device_name": docs[0]["device_name"] if docs else None,
        "hardware": docs[0]["hardware"] if docs else None,
        "runs": list(docs),
        "ok": bool(results) and all(r["ok"] for r in results),
        "wall_s": round(sum(d.get("wall_s", 0.0) for d in docs), 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wan_desktop.engine.bench.report")
    parser.add_argument("runs", nargs="+", type=Path, help="wan bench --json documents")
    parser.add_argument("--out", type=Path, help="write the joined report here")
    args = parser.parse_args(argv)
    docs = [json.loads(path.read_text("utf-8")) for path in args.runs]
    doc = report(docs)
    for run in docs:
        print(table(run))
        print()
    failed = [
        f"{d['model']} {d['job']['width']}x{d['job']['height']}x{d['job']['frames']} "
        f"{r['strategy']}"
        for d in docs
        for r in d["results"]
        if not r["ok"]
    ]
    print(
        f"{len(docs)} runs, {doc['wall_s']:.0f} s measuring; failed: {', '.join(failed) or 'none'}"
    )
    if args.out is not None:
        atomic_write_json(args.out, doc, indent=2)
        print(f"report: {args.out}")
    return 0 if doc["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
