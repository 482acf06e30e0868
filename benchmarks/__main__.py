"""``python -m benchmarks``: the speed aims table (`benchmarks.aims`), then every other benchmark.

The aims table runs ``bench_paxtor``, ``bench_paxos``, ``bench_distribution``
and ``bench_actors`` in interleaved rounds with the baselines shared; every
other ``benchmarks/bench_*.py`` module's ``main()`` runs after it, in turn.
``python -m benchmarks [NAME ...]`` runs only modules whose name contains one
of the NAMEs (``python -m benchmarks actors``; ``aims`` for the table alone).
"""

from __future__ import annotations

import importlib
import sys
import traceback
from pathlib import Path


def bench_modules() -> list[str]:
    here = Path(__file__).resolve().parent
    return sorted(p.stem for p in here.glob("bench_*.py"))


def main(argv: list[str] | None = None) -> int:
    from benchmarks.aims import MODULES

    wanted = sys.argv[1:] if argv is None else argv
    names = ["aims", *(name for name in bench_modules() if wanted or name not in MODULES)]
    failures = 0
    for name in names:
        if wanted and not any(w in name for w in wanted):
            continue
        print(f"== {name}", flush=True)
        saved_argv = sys.argv
        sys.argv = [f"benchmarks.{name}"]  # each main() parses its own (empty) argv
        try:
            module = importlib.import_module(f"benchmarks.{name}")
            status = module.main()
        except Exception:  # noqa: BLE001 - report and go on with the others
            traceback.print_exc()
            status = 1
        finally:
            sys.argv = saved_argv
        failures += 1 if status else 0
        print(flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
