"""The Python baseline of the replay figures: `json.loads` of every line of a JSON Lines file.

`python3 benches/json_loads.py FILE` prints `seconds records bytes` (read and parse only; no
validation, no windows; a line that is not JSON counts, as slawatch counts its rejects), the same three figures `benches/throughput.rs --child` prints first.
"""

import json
import sys
import time


def main() -> None:
    path = sys.argv[1]
    started = time.perf_counter()
    records = 0
    size = 0
    loads = json.loads
    with open(path, "rb") as f:
        for line in f:
            size += len(line)
            records += 1
            try:
                loads(line)
            except ValueError:
                pass  # a dirty line (drift-heavy stream): rejected, as slawatch rejects it
    print(f"{time.perf_counter() - started} {records} {size}")


if __name__ == "__main__":
    main()
