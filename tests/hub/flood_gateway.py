"""A gateway that floods, then (``--replay``) behaves like an edge until the hub has acked all it sent.

``python -m tests.hub.flood_gateway PORT GATEWAY N [--rate MSGS_PER_S] [--replay ACK_TIMEOUT_S] [--deadline S]
[--channel data|alarm]``

Runs in its own process (tests/hub/test_ingest_limits_flow.py), so its publishing does not share the hub's GIL.
Publishes N 100-reading batches of session 1, seq 1..N, on ``anju/v1/load/GATEWAY/data`` (or ``alarm``) at QoS 1 (device
times an hour back, values quiet), ``--rate`` messages a second (0: as fast as paho can), printing ``flooding``
as it starts and ``published N`` once the broker has PUBACKed the last one. With ``--replay``, it then
republishes every batch above the hub's ack in seq order whenever the ack has not advanced for ACK_TIMEOUT_S (as
edge/agent.py does) and prints ``acked N`` once the hub acked seq N, or ``unacked K`` when ``--deadline`` seconds
passed first.
"""

import argparse
import queue
import sys
import time

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from protocol import Ack, Batch, Reading, decode_ack, encode_batch

READINGS_PER_BATCH = 100


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")  # the lines the parent test waits for
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("gateway")
    parser.add_argument("messages", type=int)
    parser.add_argument("--rate", type=float, default=0.0)
    parser.add_argument("--replay", type=float, default=None, metavar="ACK_TIMEOUT_S")
    parser.add_argument("--deadline", type=float, default=60.0)
    parser.add_argument("--channel", choices=("data", "alarm"), default="data")
    args = parser.parse_args()
    gateway: str = args.gateway
    acks: queue.Queue[int] = queue.Queue()

    def on_message(client: paho.Client, userdata: object, message: paho.MQTTMessage) -> None:
        ack = decode_ack(bytes(message.payload))
        if isinstance(ack, Ack) and ack.session == 1:
            acks.put(ack.seq)

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"flood-{gateway}-{time.monotonic_ns()}")
    client.max_inflight_messages_set(1000)
    client.on_message = on_message
    client.connect("127.0.0.1", args.port)
    client.subscribe(f"anju/v1/load/{gateway}/ack", qos=1)
    client.loop_start()
    t0_ms = time.time_ns() // 1_000_000 - 3_600_000
    sensors = [f"{gateway}-s{s:04d}" for s in range(1, READINGS_PER_BATCH + 1)]
    payloads = [b""] + [
        encode_batch(Batch("load", gateway, 1, seq, tuple(Reading(s, t0_ms + seq * 100, 1.0, "%LEL") for s in sensors)))
        for seq in range(1, args.messages + 1)
    ]
    name = f"anju/v1/load/{gateway}/{args.channel}"
    _say("flooding")
    start = time.monotonic()
    info = None
    for seq in range(1, args.messages + 1):
        if args.rate > 0:
            due = start + (seq - 1) / args.rate
            if (wait := due - time.monotonic()) > 0:
                time.sleep(wait)
        info = client.publish(name, payloads[seq], 1)
    assert info is not None
    info.wait_for_publish(60)
    _say(f"published {args.messages}")
    if args.replay is not None:
        acked = 0
        progress = time.monotonic()
        deadline = time.monotonic() + args.deadline
        while acked < args.messages and time.monotonic() < deadline:
            try:
                seq = acks.get(timeout=0.05)
            except queue.Empty:
                seq = acked
            if seq > acked:
                acked, progress = seq, time.monotonic()
            elif time.monotonic() - progress >= args.replay:
                for again in range(acked + 1, args.messages + 1):
                    client.publish(name, payloads[again], 1)
                progress = time.monotonic()
        _say(f"acked {acked}" if acked >= args.messages else f"unacked {args.messages - acked}")
    client.disconnect()
    client.loop_stop()


if __name__ == "__main__":
    main()
