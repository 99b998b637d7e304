#!/usr/bin/env python3
"""A SunSpec device for gridlog's Modbus tests: pymodbus serves a register image that
pysunspec2's own encoders build (model 1, then any of 203, 213, 701 and 103 as --models
says, then the end model), on a TCP
port or a serial port (one end of a socat pty pair), and a loopback control port lets the
test change it while gridlog polls.

Control: one JSON object per line, answered "ok" or "error <why>":
  {"op": "set", "model": 203, "points": {"W": 1234, "W_SF": -1}}
                                   raw values (before scaling), all changed at once;
                                   null = "not implemented"
  {"op": "raw", "address": 40070, "words": [203, 9999]}     write registers as they are
  {"op": "mode", "mode": "normal" | "silent" | "slow" | "short", "delay_ms": 2000}
  {"op": "get", "address": 40000, "count": 4}               answers "ok <words…>"

"silent" never answers (until the mode changes), "slow" answers after delay_ms, "short"
answers one register fewer than asked for. The holding registers are the image; the input
registers a copy of the first image, which "set" and "raw" do not change.

With several TCP ports (--port 5020,5021,…) it is that many devices, each with its own image
and serial number (SN42-0, SN42-1, …), for the polling benchmark; the control port then
drives the first.

Prints "ready" on stdout once every port listens. With --dump it only prints the register
image (JSON: base and words) and exits, for the benchmark's in-process server.
"""

import argparse
import asyncio
import json
import sys

import sunspec2.device as sd
from pymodbus.datastore import (
    ModbusSequentialDataBlock,
    ModbusServerContext,
    ModbusSlaveContext,
)
from pymodbus.server import StartAsyncSerialServer, StartAsyncTcpServer

END_MODEL = [0xFFFF, 0]


def build_models(args, serial):
    """The models with their first values (raw, before scale factors)."""
    common = sd.Model(model_id=1)
    common.ID.value, common.L.value = 1, 66
    common.Mn.value = args.manufacturer
    common.Md.value = "Test Meter"
    common.SN.value = serial
    models = [common]
    if "203" in args.models:
        m = sd.Model(model_id=203)
        m.ID.value, m.L.value = 203, 105
        m.A.value, m.A_SF.value = 125, -1
        m.PhV.value, m.V_SF.value = 2301, -1
        m.W.value, m.W_SF.value = 1500, 0
        m.VAR.value, m.VAR_SF.value = 200, 0
        m.TotWhImp.value, m.TotWhExp.value, m.TotWh_SF.value = 1_000_000, 5_000, 0
        models.append(m)
    if "213" in args.models:
        f = sd.Model(model_id=213)
        f.ID.value, f.L.value = 213, 124
        f.A.value, f.PhV.value, f.W.value, f.VAR.value = 12.5, 230.25, -1500.5, 20.0
        f.TotWhImp.value, f.TotWhExp.value = 123456.5, 789.25
        models.append(f)
    if "701" in args.models:
        der = sd.Model(model_id=701)
        der.ID.value, der.L.value = 701, 153
        der.St.value, der.W.value, der.W_SF.value = 1, 3100, 0
        der.TotWhInj.value, der.TotWh_SF.value = 5_000_000_000, 0
        models.append(der)
    if "103" in args.models:
        inv = sd.Model(model_id=103)
        inv.ID.value, inv.L.value = 103, 50
        inv.W.value, inv.W_SF.value = 4200, 0
        inv.WH.value, inv.WH_SF.value = 250_000, 0
        inv.St.value = 4
        models.append(inv)
    return models


def words_of(data):
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


class Device:
    """The register image and how the device answers."""

    def __init__(self, args, serial):
        self.base = args.base
        self.models = build_models(args, serial)
        self.mode = "normal"
        self.delay_ms = 0
        self.changed = asyncio.Event()
        image = [0x5375, 0x6E53]
        self.model_at = {}
        for m in self.models:
            self.model_at[m.model_id] = self.base + len(image)
            image.extend(words_of(m.get_mb()))
        image.extend(END_MODEL)
        self.block = ModbusSequentialDataBlock(self.base, image)
        # Input registers: the first image, which "set" and "raw" leave as it is.
        self.input_block = ModbusSequentialDataBlock(self.base, list(image))

    def set_points(self, model_id, points):
        model = next(m for m in self.models if m.model_id == model_id)
        for point, value in points.items():
            getattr(model, point).value = value
        # One write of the whole model: a poll sees all of the change or none of it.
        self.block.setValues(self.model_at[model_id], words_of(model.get_mb()))


class SlaveContext(ModbusSlaveContext):
    """Answers as the device's mode says."""

    def __init__(self, device):
        super().__init__(hr=device.block, ir=device.input_block, zero_mode=True)
        self.device = device

    async def async_getValues(self, fc_as_hex, address, count=1):
        d = self.device
        while d.mode == "silent":
            d.changed.clear()
            await d.changed.wait()
        if d.mode == "slow":
            await asyncio.sleep(d.delay_ms / 1000)
        values = self.getValues(fc_as_hex, address, count)
        if d.mode == "short":
            return values[:-1]
        return values


async def control(device, reader, writer):
    while line := await reader.readline():
        try:
            cmd = json.loads(line)
            answer = "ok"
            if cmd["op"] == "set":
                device.set_points(cmd["model"], cmd["points"])
            elif cmd["op"] == "raw":
                device.block.setValues(cmd["address"], cmd["words"])
            elif cmd["op"] == "mode":
                device.mode = cmd["mode"]
                device.delay_ms = cmd.get("delay_ms", 0)
                device.changed.set()
            elif cmd["op"] == "get":
                words = device.block.getValues(cmd["address"], cmd["count"])
                answer = "ok " + " ".join(str(w) for w in words)
            else:
                answer = "error unknown op"
        except Exception as e:  # the test reads the reason
            answer = f"error {e!r}"
        writer.write((answer + "\n").encode())
        await writer.drain()


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", help="Modbus TCP port(s) on 127.0.0.1, comma-separated")
    p.add_argument("--serial", dest="serial_port", help="serial device (RTU)")
    p.add_argument("--baud", type=int, default=9600)
    p.add_argument("--control-port", type=int, required=True)
    p.add_argument("--unit", type=int, default=1)
    p.add_argument("--base", type=int, default=40000)
    p.add_argument("--models", default="203,103")
    p.add_argument("--manufacturer", default="Acme")
    p.add_argument("--sn", dest="serial", default="SN42")
    p.add_argument("--dump", action="store_true", help="print the image and exit")
    args = p.parse_args()
    if args.dump:
        device = Device(args, args.serial)
        words = device.block.getValues(args.base, len(device.block.values))
        print(json.dumps({"base": args.base, "words": list(words)}), flush=True)
        return
    ports = [int(x) for x in args.port.split(",")] if args.port else [None]
    serials = [args.serial] if len(ports) == 1 else [f"{args.serial}-{i}" for i in range(len(ports))]
    devices = [Device(args, serial) for serial in serials]
    await asyncio.start_server(
        lambda r, w: control(devices[0], r, w), "127.0.0.1", args.control_port
    )
    tasks = []
    for device, port in zip(devices, ports):
        context = ModbusServerContext(slaves={args.unit: SlaveContext(device)}, single=False)
        if args.serial_port:
            server = StartAsyncSerialServer(
                context=context, framer="rtu", port=args.serial_port, baudrate=args.baud
            )
        else:
            server = StartAsyncTcpServer(context=context, address=("127.0.0.1", port))
        tasks.append(asyncio.create_task(server))
    await asyncio.sleep(0.3 + 0.01 * len(tasks))
    for task in tasks:
        if task.done():
            task.result()
    print("ready", flush=True)
    await asyncio.gather(*tasks)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
