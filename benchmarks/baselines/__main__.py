"""Worker: ``python -m benchmarks.baselines --json-out PATH`` measures and writes JSON.

Started by ``run_baselines_in_subprocess``; SIGTERM is turned into SystemExit
so the cluster context managers stop their servers and remove their dirs.
With ``--serve`` it keeps the clusters up and answers phase requests on
stdin (`benchmarks.baselines.service`).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

from . import BASELINE_NAMES, run_one
from .harness import BenchSettings


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.baselines")
    parser.add_argument("--json-out", type=Path, help="write results here (default: stdout)")
    parser.add_argument("--settings", default="{}", help="BenchSettings fields as JSON")
    parser.add_argument("--only", default=",".join(BASELINE_NAMES))
    parser.add_argument("--install", dest="install", action="store_true", default=None)
    parser.add_argument("--no-install", dest="install", action="store_false")
    parser.add_argument("--serve", action="store_true", help="keep the clusters up, measure phases on request")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    settings = BenchSettings(**json.loads(args.settings))
    if args.serve:
        from .service import serve

        answers, sys.stdout = sys.stdout, sys.stderr  # nothing else may write into the answers
        serve(list(filter(None, args.only.split(","))), settings, args.install, answers, sys.stdin)
        return 0
    results = {}
    for name in filter(None, args.only.split(",")):
        print(f"baselines: {name} ...", file=sys.stderr, flush=True)
        results[name] = run_one(name, settings, args.install)
        status = results[name].get("skipped") or results[name].get("error") or "measured"
        print(f"baselines: {name}: {status}", file=sys.stderr, flush=True)
    text = json.dumps(results, indent=1, sort_keys=True)
    if args.json_out:
        args.json_out.write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
