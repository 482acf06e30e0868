"""A Jepsen-style fault test of real Paxtor clusters (`make chaos`, `python -m tests.chaos`).

Voters and client nodes run as OS processes (`tests.chaos.node_main`, which
is `python -m paxtor node` plus a `FaultInjector` and a slow disk the harness
drives by remote spawn of `tests.chaos.agent` functions), each on its own
loopback address so iptables can partition them (`firewall`), some under
libfaketime (`clocks`); this process joins as the `console` node, hosts the
fenced resource and the recorder, checks the histories afterwards and draws
them (`plot`).
"""

import sys
from pathlib import Path

# pytest may import this directory as the package `chaos` (tests/ has no __init__.py); the
# modules import each other, and travel to the nodes, as `tests.chaos.*`: make that importable.
_REPO_ROOT = str(Path(__file__).resolve().parents[2])
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)
