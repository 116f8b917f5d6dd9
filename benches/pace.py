#!/usr/bin/env python3
"""pace.py FILE RATE — writes FILE's lines to stdout at RATE lines per second (steady, in
batches of 50), so that `slawatch replay -` sees a stream at a soak's rate (benches/README.md,
§7 "What grows"):

    python3 benches/pace.py stream.jsonl 500 | slawatch replay --data-dir D --specs S -
"""
import sys
import time

path, rate = sys.argv[1], float(sys.argv[2])
out = sys.stdout.buffer
t0 = time.monotonic()
with open(path, "rb") as f:
    for i, line in enumerate(f):
        if i % 50 == 0:
            out.flush()
            wait = t0 + i / rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        out.write(line)
out.flush()
