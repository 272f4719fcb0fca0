"""local (1 worker) against ray (2 workers on a two-node local cluster), side by side.

    sudo unshare -n bash -c 'ip link set lo up && .venv/bin/python examples/ray_cluster_benchmark.py'

Runs one experiment config (default: search_configs/best_of_n.yaml, the shipped model,
20 problems) both ways, checks that the record sets are identical (timing fields left
out), and prints one JSON object: wall seconds, records/s after start-up, Ray's start-up
costs, and how many records/s the driver's crash-safe store can write (its ceiling).
It refuses to start Ray outside a loopback-only network namespace (Ray issue #59110).
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import tempfile
import time
from pathlib import Path

TIMING = ("seconds",)  # record fields that may differ between runs


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="search_configs/best_of_n.yaml")
    parser.add_argument("--batch-size", type=int, default=2, help="problems per item (the same for both runs)")
    parser.add_argument("--model", help="a model folder or shipped name (default: the config's, else the shipped default)")
    args = parser.parse_args()
    if [name for _, name in socket.if_nameindex()] != ["lo"]:
        sys.exit("run me inside a loopback-only network namespace: sudo unshare -n bash -c 'ip link set lo up && ...'")
    import torch

    torch.set_num_threads(1)
    out = Path(tempfile.mkdtemp(prefix="ray-bench-"))
    result = {"config": args.config, "batch_size": args.batch_size}
    local_dir, result["local"] = timed_run(args, out / "local", ["executor.workers=1"])
    start = time.perf_counter()
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "node_ip_address": "127.0.0.1"})
    cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
    cluster.wait_for_nodes()
    result["cluster_start_s"] = round(time.perf_counter() - start, 1)
    try:
        ray_dir, result["ray"] = timed_run(args, out / "ray", ["executor.kind=ray", f"executor.address={cluster.address}",
                                                               "executor.workers=2"])
    finally:
        cluster.shutdown()
    result["identical_records"] = records(local_dir) == records(ray_dir)
    result["ratio_wall"] = round(result["local"]["wall_s"] / result["ray"]["wall_s"], 2)
    result["ratio_records_per_s"] = round(result["ray"]["records_per_s"] / result["local"]["records_per_s"], 2)
    result["driver_store_records_per_s"] = store_ceiling(out / "store", ray_dir)
    print(json.dumps(result, indent=2))
    return 0 if result["identical_records"] else 1


def timed_run(args, run_dir: Path, overrides: list[str]) -> tuple[Path, dict]:
    from reflective_search.experiments import load_experiment, run_experiment

    model = [f"model={args.model}"] if args.model else []
    spec = load_experiment(args.config, [f"output_dir={run_dir}", f"batch_size={args.batch_size}", *model, *overrides])
    start = time.time()
    summary = run_experiment(spec, show_progress=False)
    wall = time.time() - start
    events = [json.loads(line) for line in (run_dir / "executor.jsonl").read_text().splitlines()]
    done = [e["at"] for e in events if e["event"] == "done"]
    ready = [e["at"] for e in events if e["event"] == "ready"]  # none for local
    # Steady rate: records after the first item, over the time since it finished.
    steady = (summary.records - len(events[[e["event"] for e in events].index("done")]["records"])) / (max(done) - min(done))
    return run_dir, {"wall_s": round(wall, 1), "records": summary.records, "startup_s": round(max(ready) - start, 1) if ready else None,
                     "records_per_s": round(steady, 2)}


def records(run_dir: Path) -> dict:
    lines = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    return {(json.dumps(r["problem_id"]), json.dumps(r["point"]), r["seed"]): {k: v for k, v in r.items() if k not in TIMING}
            for r in lines}


def store_ceiling(run_dir: Path, source: Path, count: int = 300) -> float:
    """Records/s that ResultStore.append (one O_APPEND write + fsync each) sustains here."""
    from reflective_search.experiments.results import ResultStore

    record = json.loads((source / "results.jsonl").read_text().splitlines()[0])
    run_dir.mkdir()
    with ResultStore.open(run_dir) as store:
        start = time.perf_counter()
        for index in range(count):
            store.append({**record, "problem_id": index})
        return round(count / (time.perf_counter() - start))


if __name__ == "__main__":
    sys.exit(main())
