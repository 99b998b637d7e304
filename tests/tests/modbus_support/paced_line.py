#!/usr/bin/env python3
"""A serial line at a baud rate: two pseudo-terminals whose bytes cross at the pace of a
real RS-485 line (10 bits a character: start, 8 data, stop), for the RTU throughput
benchmark (a socat pty pair passes bytes as fast as the kernel copies them, so it cannot
show what a 9600-baud bus allows).

    paced_line.py --gateway PATH --device PATH --baud 9600

Links PATH names to the two ptys' slave ends, prints "ready" once they exist, then relays.
Each direction is paced on its own (RS-485 is half duplex, and Modbus never talks both ways
at once). Every second it prints "bytes <to device> <to gateway>" so the caller can compute
how busy the line was.
"""
import argparse
import os
import select
import sys
import time
import tty


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--gateway", required=True)
    p.add_argument("--device", required=True)
    p.add_argument("--baud", type=int, default=9600)
    args = p.parse_args()
    char_s = 10.0 / args.baud
    ends = {}
    for name in ("gateway", "device"):
        master, slave = os.openpty()
        tty.setraw(master)
        tty.setraw(slave)
        path = getattr(args, name)
        if os.path.lexists(path):
            os.unlink(path)
        os.symlink(os.ttyname(slave), path)
        ends[name] = (master, slave)
    other = {ends["gateway"][0]: ends["device"][0], ends["device"][0]: ends["gateway"][0]}
    # When each direction's line is free again.
    free_at = {fd: 0.0 for fd in other}
    counts = {ends["gateway"][0]: 0, ends["device"][0]: 0}
    print("ready", flush=True)
    last_report = time.monotonic()
    while True:
        readable, _, _ = select.select(list(other), [], [], 0.2)
        for fd in readable:
            data = os.read(fd, 4096)
            # Each character goes out when the one before it has been sent.
            start = max(time.monotonic(), free_at[fd])
            for i, byte in enumerate(data):
                due = start + (i + 1) * char_s
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                os.write(other[fd], bytes([byte]))
            free_at[fd] = start + len(data) * char_s
            counts[fd] += len(data)
        now = time.monotonic()
        if now - last_report >= 1.0:
            print("bytes %d %d" % (counts[ends["gateway"][0]], counts[ends["device"][0]]), flush=True)
            last_report = now


if __name__ == "__main__":
    try:
        main()
    except (KeyboardInterrupt, BrokenPipeError):
        sys.exit(0)
