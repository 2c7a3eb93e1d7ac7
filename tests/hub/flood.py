"""A gateway replaying a long backlog, as fast as paho can publish: ``python -m tests.hub.flood PORT GATEWAY N``.

Runs in its own process (tests/hub/test_ingest_flow.py), so its publishing does not share the hub's GIL. Publishes
N 100-reading batches of session 1, seq 1..N, on ``anju/v1/load/GATEWAY/data`` at QoS 1, device times an hour
back (a backlog), values quiet; prints ``published N`` once the broker has PUBACKed the last one.
"""

import sys
import time

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from protocol import Batch, Reading, encode_batch

READINGS_PER_BATCH = 100


def main(port: int, gateway: str, messages: int) -> None:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"flood-{gateway}-{time.monotonic_ns()}")
    client.max_inflight_messages_set(1000)
    client.connect("127.0.0.1", port)
    client.loop_start()
    t0_ms = time.time_ns() // 1_000_000 - 3_600_000
    sensors = [f"{gateway}-s{s:04d}" for s in range(1, READINGS_PER_BATCH + 1)]
    info = None
    for seq in range(1, messages + 1):
        readings = tuple(Reading(sensor, t0_ms + seq * 100, 1.0, "%LEL") for sensor in sensors)
        info = client.publish(f"anju/v1/load/{gateway}/data", encode_batch(Batch("load", gateway, 1, seq, readings)), 1)
    assert info is not None
    info.wait_for_publish(60)
    sys.stdout.write(f"published {messages}\n")  # the line the parent test waits for
    sys.stdout.flush()
    client.disconnect()
    client.loop_stop()


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], int(sys.argv[3]))
