"""Client nodes: lock handoffs from eight client nodes against the same work on the
voters, and what an idle full mesh of twenty nodes costs.

``python -m benchmarks.bench_clients [--seconds S] [--idle-seconds S] [--skip-idle]``

Every node is a ``python -m paxtor node`` OS process on 127.0.0.1 (voters
durable, fsync; clients ``--client``, memory, given one voter each as their
only seed: the mesh connects the rest). This process joins as a client
that hosts nothing and drives the workloads by remote spawn.

  handoffs     32 processes lock and unlock 4 keys (8 per key) for S
               seconds: once spread over 8 client nodes (4 each), once over
               the 3 voters, in the same run (voters, clients, voters
               again: the voters' figure is the mean of the two). The
               ratio clients / voters; the aim is >= 0.8.
  idle mesh    20 nodes (3 voters, 17 clients) meshed and idle, beside one
               idle node alone (a one-voter cluster), for S seconds in the
               same window: CPU seconds per node per minute, and the ratio.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import gevent

from benchmarks.bench_paxtor import _quiet_logs, _receive_tagged, lock_loop
from benchmarks.process_cpu import cpu_seconds

KEYS = 4
PER_NODE = 4
CLIENT_NODES = 8
MESH_NODES = 20
FLAGS = ["--heartbeat-interval", "1", "--heartbeat-timeout", "5"]


def _clients(cluster: Any, count: int) -> list[str]:
    """Start `count` client node processes, each seeded with one voter; their names."""
    names = [f"client-{i}" for i in range(count)]
    for i, name in enumerate(names):
        voter = i % cluster.size + 1
        cluster.start_client(name, "--seeds", f"127.0.0.1:{cluster.base_port + voter}")
    return names


def _contend(nodes: list[str], processes: int, seconds: float) -> float:
    """`processes` lock loops over `KEYS` keys, spread over `nodes`: handoffs per second."""
    from paxtor.actors import self_pid, spawn

    me = self_pid()
    start_at = time.time() + 1.0
    for i in range(processes):
        spawn(lock_loop, me, ("bench-clients", i % KEYS), seconds, start_at, ("contend", i), node=nodes[i % len(nodes)])
    return sum(_receive_tagged("contend")[1] for _ in range(processes)) / seconds


def handoffs(seconds: float) -> dict[str, Any]:
    from paxtor import testing

    with testing.LocalCluster(3, flags=FLAGS, prefix="bench-clients-") as cluster:
        cluster.start_all()
        clients = _clients(cluster, CLIENT_NODES)
        node = cluster.join("bench-driver", singletons=False, reconnect_max=1.0)
        testing.wait_for_nodes(node, [*cluster.voters, *clients], 60)
        testing.wait_for_quorum([node], 60)
        processes = CLIENT_NODES * PER_NODE
        first = node.run(_contend, cluster.voters, processes, seconds)
        on_clients = node.run(_contend, clients, processes, seconds)
        second = node.run(_contend, cluster.voters, processes, seconds)
    on_voters = (first + second) / 2
    return {
        "processes": processes,
        "keys": KEYS,
        "client_nodes_handoffs_per_s": on_clients,
        "voters_handoffs_per_s": on_voters,
        "voters_runs": [first, second],
        "clients_over_voters": on_clients / on_voters if on_voters else None,
    }


def idle_mesh(seconds: float) -> dict[str, Any]:
    from paxtor import testing

    with testing.LocalCluster(3, flags=FLAGS, prefix="bench-mesh-") as mesh, \
            testing.LocalCluster(1, flags=FLAGS, prefix="bench-alone-") as alone:  # fmt: skip
        mesh.start_all()
        alone.start_all()
        clients = _clients(mesh, MESH_NODES - mesh.size)
        for name in clients:  # every client connected to every other node: the mesh is whole
            testing.wait_until(lambda name=name: len(mesh.processes[name].peers_up()) >= MESH_NODES - 1, 120, step=0.2)
        alone.processes["node1"].wait_for_log("lease_gained", 60)
        gevent.sleep(2.0)  # start-up is over
        mesh_pids = [p.pid for p in mesh.processes.values()]
        alone_pids = [p.pid for p in alone.processes.values()]
        before = cpu_seconds(mesh_pids), cpu_seconds(alone_pids)
        gevent.sleep(seconds)
        after = cpu_seconds(mesh_pids), cpu_seconds(alone_pids)
        mesh.check_running()
    per_minute = 60.0 / seconds
    mesh_node = (after[0] - before[0]) / MESH_NODES * per_minute
    alone_node = (after[1] - before[1]) * per_minute
    return {
        "seconds": seconds,
        "mesh_nodes": MESH_NODES,
        "mesh_cpu_s_total": after[0] - before[0],
        "mesh_cpu_s_per_node_per_min": mesh_node,
        "alone_cpu_s_per_min": alone_node,
        "mesh_node_over_alone": mesh_node / alone_node if alone_node else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_clients", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="each handoff run (default 5)")
    parser.add_argument("--idle-seconds", type=float, default=60.0, help="the idle mesh window (default 60)")
    parser.add_argument("--skip-idle", action="store_true")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    _quiet_logs()
    results: dict[str, Any] = {"handoffs": handoffs(args.seconds)}
    h = results["handoffs"]
    print(f"handoffs/s, {h['processes']} processes on {KEYS} keys: {CLIENT_NODES} client nodes "
          f"{h['client_nodes_handoffs_per_s']:.0f}, 3 voters {h['voters_handoffs_per_s']:.0f} "
          f"(runs {h['voters_runs'][0]:.0f}, {h['voters_runs'][1]:.0f}): "
          f"ratio {h['clients_over_voters']:.2f} (aim >= 0.8)")  # fmt: skip
    if not args.skip_idle:
        results["idle_mesh"] = m = idle_mesh(args.idle_seconds)
        print(f"idle CPU over {m['seconds']:.0f} s: {m['mesh_cpu_s_per_node_per_min']:.2f} s/min per node in a "
              f"{MESH_NODES}-node mesh, {m['alone_cpu_s_per_min']:.2f} s/min for one node alone: "
              f"ratio {m['mesh_node_over_alone']:.2f} (mesh total {m['mesh_cpu_s_total']:.1f} s)")  # fmt: skip
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
