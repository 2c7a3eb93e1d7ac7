"""Liveness at a district's scale (issue 4): 300,000 sensors on 1,500 gateways.

Figures: CPU per reading of ``Liveness.observe_rows`` on 50,000-reading commit rounds (each round 500 batches of
100 consecutive sensors of one gateway, as gateways publish them), and one ``sweep`` of every sensor. References in
the same run: a bare numpy scatter of the same rounds (``last_seen[rows] = now``, the least any per-reading
liveness can cost) and ``observe`` by sensor id (a dict lookup per reading, what the ingest round avoids by passing
registry rows).

``python -m bench.liveness``
"""

import logging
import sys
import time

import numpy as np

from hub.config import Deployment
from hub.ingest.liveness import Liveness
from hub.ingest.registry import Registry
from hub.metrics import Metrics

__all__ = ["run"]

GATEWAYS, SENSORS, ROUND, ROUNDS = 1_500, 200, 50_000, 40
T0 = 1_764_400_000_000


def _deployment() -> Deployment:
    return Deployment.model_validate(
        {
            "community": {"id": "bench", "name": "基准社区"},
            "grids": [{"id": "grid-1", "name": "网格", "managers": ["p"]}],
            "people": [{"id": "p", "name": "值班"}],
            "gateways": [
                {
                    "id": f"gw-{g}",
                    "sensors": [
                        {"id": f"s-{g}-{s}", "kind": "gas", "unit_id": s + 1, "location": "厨房", "grid": "grid-1"}
                        for s in range(SENSORS)
                    ],
                }
                for g in range(GATEWAYS)
            ],
        }
    )


def run() -> dict[str, float]:
    logging.getLogger("anju.hub.liveness").setLevel(logging.ERROR)
    registry = Registry(_deployment())
    for gateway in registry.gateways:
        registry.set_state(gateway, online=True, session=1)
    liveness = Liveness(registry=registry, metrics=Metrics())
    liveness.sweep(T0, connected=True)
    rng = np.random.default_rng(7)
    rounds = []
    for _ in range(ROUNDS):
        starts = rng.integers(0, GATEWAYS, ROUND // 100) * SENSORS + rng.integers(0, SENSORS - 100, ROUND // 100)
        rounds.append((starts[:, None] + np.arange(100)).ravel().astype(np.intp))
    by_row = sorted(registry.by_id.values(), key=lambda info: info.index)
    ids = [by_row[row].id for row in rounds[0].tolist()]

    np.median(np.zeros((1, 3)), axis=1)  # its first call imports numpy.ma (~0.1 s): not a per-reading cost
    started = time.perf_counter()
    for k, rows in enumerate(rounds):
        now = T0 + 1_000 * (k + 1)
        liveness.observe_rows(rows, np.full(rows.size, now, np.int64), now)
    observe_s = (time.perf_counter() - started) / (ROUNDS * ROUND)

    last_seen = np.full(len(registry.by_id), -1, np.int64)
    started = time.perf_counter()
    for k, rows in enumerate(rounds):
        last_seen[rows] = T0 + 1_000 * (k + 1)
    scatter_s = (time.perf_counter() - started) / (ROUNDS * ROUND)

    started = time.perf_counter()
    for k in range(5):
        now = T0 + 1_000 * (ROUNDS + k + 1)
        liveness.observe(ids, np.full(len(ids), now, np.int64), now)
    by_id_s = (time.perf_counter() - started) / (5 * len(ids))

    sweeps = []
    for k in range(10):
        started = time.perf_counter()
        liveness.sweep(T0 + 1_000 * (ROUNDS + 10) + k, connected=True)
        sweeps.append(time.perf_counter() - started)
    return {
        "observe_rows_ns": observe_s * 1e9,
        "scatter_ns": scatter_s * 1e9,
        "observe_by_id_ns": by_id_s * 1e9,
        "sweep_ms": float(np.median(sweeps)) * 1e3,
        "sensors": float(len(registry.by_id)),
    }


def main() -> int:
    figures = run()
    sys.stdout.write(
        f"liveness, {figures['sensors']:.0f} sensors: observe_rows {figures['observe_rows_ns']:.0f} ns/reading "
        f"(50k-reading rounds); reference: bare numpy scatter of the same rounds {figures['scatter_ns']:.0f} ns, "
        f"observe by sensor id {figures['observe_by_id_ns']:.0f} ns/reading; one sweep {figures['sweep_ms']:.1f} ms\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
