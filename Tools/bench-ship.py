#!/usr/bin/env python3
"""Tools/bench-ship.py: one timed shipping run for Tools/bench-net.sh.

Writes MIB MiB from SOURCE into IMAGE (dd through the mount, conv=fsync) and waits until
the VM's log bytes shipped grew by them; prints "seconds logBytes sentBytes ddSeconds
pollEndSeconds". The end is the midpoint between the starts of the last two polls (the
bytes landed between them), the first poll counting from dd's end.

Polls ask the mount daemon over its control socket (one JSON line each way), from this one
process: a `replicafs status --json` piped to python per poll cost about a quarter of the
two CPUs (process start-up), slowing the shipping it timed.

Usage: bench-ship.py RUN_DIR MOUNTPOINT VM MIB SEEK_MIB SOURCE IMAGE
"""
import glob
import json
import os
import socket
import subprocess
import sys
import time


def control_socket(run_dir, mountpoint):
    """The socket of the daemon serving MOUNTPOINT, from the mount registry's entries."""
    real = os.path.realpath(mountpoint)
    for entry in glob.glob(os.path.join(run_dir, "*.json")):
        try:
            with open(entry) as f:
                e = json.load(f)
        except (OSError, ValueError):
            continue
        if os.path.realpath(e.get("mountpoint", "")) == real:
            return e["socket"]
    sys.exit(f"bench-ship.py: no daemon recorded for {mountpoint} in {run_dir}")


def fields(sock_path, vm):
    """(logBytesShipped, bytesSent) of VM, asked of the daemon now."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(sock_path)
        s.sendall(b'{"op":"status"}\n')
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            data += chunk
    reply = json.loads(data)
    if not reply.get("ok"):
        sys.exit(f"bench-ship.py: status failed: {reply.get('error')}")
    for v in reply["status"].get("vms", []):
        if v["vm"] == vm:
            return int(v.get("logBytesShipped") or 0), int(v.get("bytesSent") or 0)
    return 0, 0


def main():
    run_dir, mountpoint, vm, mib, seek, source, image = sys.argv[1:8]
    mib, seek = int(mib), int(seek)
    sock = control_socket(run_dir, mountpoint)
    logs0, sent0 = fields(sock, vm)
    start = time.time()
    subprocess.run(["dd", f"if={source}", f"of={image}", "bs=1M", f"count={mib}", f"seek={seek}",
                    "conv=notrunc,fsync", "iflag=fullblock", "status=none"], check=True)
    written = time.time()
    prev = written
    for _ in range(30000):
        poll = time.time()
        logs, sent = fields(sock, vm)
        if logs - logs0 >= mib << 20:
            break
        prev = poll
        time.sleep(0.02)
    else:
        sys.exit(f"bench-ship.py: VM {vm} did not ship {mib} MiB in time")
    seen = time.time()
    end = (prev + poll) / 2
    print(f"{end - start:.2f} {logs - logs0} {sent - sent0} {written - start:.2f} {seen - start:.2f}")


if __name__ == "__main__":
    main()
