#!/usr/bin/env python3
"""Writes the committed seed corpus of the fuzz targets (Tools/fuzz/corpus/<target>/).
HRL seeds: a flags byte (see Tools/fuzz/FuzzSupport/HRLInput.swift) then logs; with the
checksum flag set the harness repairs checksums, without it the log is taken as is, so the raw
seeds carry valid CRC-32C checksums. Run again after a format change."""
import os, struct, sys

def crc32c(data, crc=0):
    table = crc32c.table
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF
crc32c.table = []
for i in range(256):
    c = i
    for _ in range(8):
        c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    crc32c.table.append(c)

def header(name, chain, seq, first_lsn, size):
    h = bytearray(512)
    h[0:8] = b"RFSHRL\r\n"
    struct.pack_into("<HHIQQQQ", h, 8, 1, 512, 0, seq, first_lsn, 1_700_000_000_000_000_000, size)
    h[48:64] = chain
    n = name.encode()
    struct.pack_into("<H", h, 64, len(n))
    h[66:66 + len(n)] = n
    struct.pack_into("<I", h, 508, crc32c(bytes(h[:508])))
    return bytes(h)

def record(rtype, lsn, offset, extent, data=b""):
    r = bytearray(48)
    struct.pack_into("<IBBHQQQII", r, 0, 0x524C5248, rtype, 0, 0, lsn, offset, extent, len(data), crc32c(data))
    struct.pack_into("<I", r, 44, crc32c(bytes(r[:44])))
    return bytes(r) + data

def log(name, chain, seq, lsn, size, body, sealed=True):
    out = header(name, chain, seq, lsn, size)
    count = data_bytes = 0
    for kind, *args in body:
        if kind == "write":
            off, payload = args
            out += record(1, lsn, off, len(payload), payload); data_bytes += len(payload)
        elif kind == "size":
            out += record(2, lsn, args[0], 0)
        elif kind == "zero":
            out += record(3, lsn, args[0], args[1])
        elif kind == "marker":
            k, cut, label = args
            out += record(4, lsn, 0, 0, struct.pack("<HxxxxxxQQ", k, cut, 1_700_000_000_000_000_001) + label)
        lsn += 1; count += 1
    if sealed:
        out += record(5, lsn, 0, 0, struct.pack("<BxxxxxxxQQQQ", 1, 1, count, data_bytes, 1_700_000_000_000_000_002))
        lsn += 1
    return out, lsn

def write(target, name, data):
    d = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)

chain = bytes(range(16))
body = [("write", 0, b"A" * 4096), ("write", 6000, b"hello world" * 10), ("zero", 1024, 2048),
        ("marker", 1, 7, b"cut"), ("size", 20000), ("write", 12288, bytes(range(256)) * 4)]
one, nxt = log("disk0.img", chain, 1, 1, 8192, body)
two, _ = log("disk0.img", chain, 2, nxt, 20000, [("write", 100, b"B" * 700), ("size", 4096), ("marker", 2, 8, b"")])
torn, _ = log("disk0.img", chain, 1, 1, 8192, body, sealed=False)
torn = torn[:-30]
for target in ("hrl-scan", "hrl-apply", "store-commit"):
    write(target, "raw-sealed", b"\x00" + one)
    write(target, "raw-chain-first", b"\x00" + two)
    write(target, "raw-torn", b"\x00" + torn)
    write(target, "repaired-sealed", b"\x1f" + one)
    write(target, "repaired-chain", b"\x1f" + one + two)
    write(target, "repaired-checksums-only", b"\x01" + one + two)
    write(target, "repaired-unsealed", b"\x1f" + torn)

requests = [b'{"op":"status"}', b'{"op":"ping"}', b'{"op":"rotate"}',
            b'{"op":"snapshot","vm":"vm1","appConsistent":true}', b'{"op":"resume","vm":"db-1"}',
            b'{"op":"resync","vm":"a","now":true}', b'{"op":"freeze"}', b'{"op":"ship"}']
responses = [b'{"ok":true}', b'{"ok":false,"error":"unknown VM x"}', b'{"ok":true,"shippedBytes":4096}',
             b'{"ok":true,"rotation":{}}',
             b'{"ok":true,"status":{"pid":12,"mountpoint":"/m","disksDir":"/d","writebackCache":false,"images":[],"vms":[]}}',
             b'{"ok":true,"failover":{"pid":3,"vm":"v","store":"/s","kind":"test","point":2,"mountpoint":"/f","frozen":false,'
             b'"disks":[{"name":"d","size":4096,"writtenBytes":0,"overlayBytes":0,"refusedWrites":0}]}}',
             b'{"ok":true,"point":{"id":1,"timeNanos":5,"consistency":"crash","cut":3,"diskSizes":{"d":4096}}}']
for i, line in enumerate(requests + responses):
    write("control-decode", "line-%02d" % i, line + b"\n")

plans = {
    "example": b"""name: finance
target: /srv/dr-store
mountRoot: /srv/failover
point: latest
networkMapping:
  prod-lan: dr-lan
  backup: dr-backup
groups:
  - name: databases
    pre: "echo stopping"
    post: "echo started"
    vms:
      - name: db1
        point: latest-app
      - name: db2
        target: /srv/other-store
        mount: /srv/db2-drill
  - name: web
    vms: [{name: web1}]
""",
    "flow": b'{name: p, target: store, mountRoot: m, groups: [{name: g, vms: [{name: a, point: "2026-01-02T03:04:05Z"}, {name: b, point: 3, disksDir: ../d}]}]}\n',
    "anchors": b"name: p\ntarget: &t /s\ngroups:\n  - name: g\n    vms:\n      - {name: a, mount: /m/a, target: *t}\n      - {name: b, mount: /m/b}\n",
    "bad-key": b"name: p\ntarget: /s\nmountRoot: /m\ngroups:\n  - name: g\n    vm: [a]\n",
    "multiline": b"name: p\ntarget: /s\nmountRoot: /m\ngroups:\n  - name: g\n    pre: |\n      echo one\n      echo two\n    vms: [{name: a}]\n",
}
for name, text in plans.items():
    write("plan-parse", name, text)
