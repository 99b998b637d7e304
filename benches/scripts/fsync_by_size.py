#!/usr/bin/env python3
"""How long pwrite + fdatasync takes by write size, on a zero-filled file (what the log's
preallocated segments are). One thread; each size written at successive offsets.

    python3 benches/scripts/fsync_by_size.py [directory]   # default: target/bench-data

Standard library only. Writes a 256 MiB file in the directory and removes it afterwards.
"""
import os
import sys
import time

FILE_BYTES = 256 << 20
SIZES = [4096, 16384, 36864, 65536, 131072]
SYNCS_PER_SIZE = 800


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    directory = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "..", "target", "bench-data")
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "fsync-by-size.tmp")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        zeros = bytes(1 << 20)
        for _ in range(FILE_BYTES >> 20):
            os.write(fd, zeros)
        os.fsync(fd)
        print("| bytes | mean | p50 | p99 |")
        print("|---:|---:|---:|---:|")
        for size in SIZES:
            data = os.urandom(size)
            took = []
            at = 0
            for _ in range(SYNCS_PER_SIZE):
                start = time.perf_counter()
                os.pwrite(fd, data, at)
                os.fdatasync(fd)
                took.append(time.perf_counter() - start)
                at = (at + size) % (FILE_BYTES - size)
            took.sort()
            us = lambda s: f"{s * 1e6:.0f} µs"
            print(f"| {size} | {us(sum(took) / len(took))} | {us(took[len(took) // 2])} | {us(took[int(len(took) * 0.99)])} |")
    finally:
        os.close(fd)
        os.remove(path)


if __name__ == "__main__":
    main()
