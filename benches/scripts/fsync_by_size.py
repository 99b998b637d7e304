#!/usr/bin/env python3
"""How long pwrite + fdatasync takes by write size, on a zero-filled file (what the log's
preallocated segments are), with one thread and with several threads syncing the same file
at once (does the disk overlap concurrent fdatasyncs, or queue them?). Each write goes to
the next offset of the file.

    python3 benches/scripts/fsync_by_size.py [directory]   # default: target/bench-data

Standard library only (threads release the GIL in pwrite and fdatasync). Writes a 256 MiB
file in the directory and removes it afterwards.
"""
import os
import sys
import threading
import time

FILE_BYTES = 256 << 20
SIZES = [4096, 16384, 36864, 65536, 131072]
THREADS = [1, 2, 3]
SECONDS_PER_ROW = 2.0


def measure(fd, size, threads):
    """Syncs per second and each sync's latency with `threads` threads in a closed loop."""
    data = os.urandom(size)
    lock = threading.Lock()
    next_at = [0]
    took = []
    stop = time.perf_counter() + SECONDS_PER_ROW

    def worker():
        mine = []
        while time.perf_counter() < stop:
            with lock:
                at = next_at[0]
                next_at[0] = (at + size) % (FILE_BYTES - size)
            start = time.perf_counter()
            os.pwrite(fd, data, at)
            os.fdatasync(fd)
            mine.append(time.perf_counter() - start)
        with lock:
            took.extend(mine)

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    took.sort()
    return len(took) / SECONDS_PER_ROW, took


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
        print("| bytes | threads | syncs/s | mean | p50 | p99 |")
        print("|---:|---:|---:|---:|---:|---:|")
        for size in SIZES:
            for threads in THREADS:
                rate, took = measure(fd, size, threads)
                us = lambda s: f"{s * 1e6:.0f} µs"
                print(
                    f"| {size} | {threads} | {rate:.0f} | {us(sum(took) / len(took))} "
                    f"| {us(took[len(took) // 2])} | {us(took[int(len(took) * 0.99)])} |",
                    flush=True,
                )
    finally:
        os.close(fd)
        os.remove(path)


if __name__ == "__main__":
    main()
