"""``python -m bench``: run every benchmark and print each figure with its same-run reference."""

import datetime
import sys

from bench import protocol_decode
from bench.common import machine


def main() -> int:
    sys.stdout.write(f"# Anju benchmarks — {datetime.date.today().isoformat()} — {machine()}\n")
    decode = protocol_decode.run()
    sys.stdout.write(
        "protocol decode (100-reading SenML batches, validating): "
        f"{decode['decode_readings_per_s'] / 1e6:.2f} M readings/s; "
        f"reference orjson.loads of the same bytes: {decode['orjson_loads_readings_per_s'] / 1e6:.2f} M readings/s; "
        f"ratio {decode['ratio']:.2f}\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
