#!/usr/bin/env python3
"""The write load and the verifier of Tools/soak.sh.

write IMAGE JOURNAL --first-seq N --blocks B --seed S
    Writes 4 KiB blocks at random into the first B blocks of IMAGE, each stamped with a
    sequence number, its block number and filler derived from both, and fdatasyncs each one.
    Before a write it appends "W <seq> <block>" to JOURNAL, after fdatasync returned
    "A <seq>": a write is acknowledged once its A line is there. Stops at the first error
    (the mount died) or when JOURNAL.stop exists.

check FILE JOURNAL --blocks B
    For every block with an acknowledged write, FILE must hold that block's last acknowledged
    stamp, or the stamp of the one write in flight when the writer stopped (issued, not
    acknowledged). Prints "lost=<n> inflight-torn=<n> blocks=<n> sha256=<whole FILE>" and one
    line per lost block.
"""
import hashlib, os, random, struct, sys

BLOCK = 4096
MAGIC = b"RFSSOAK1"

def stamp(seq, block):
    head = MAGIC + struct.pack("<QQ", seq, block)
    filler = hashlib.sha256(head).digest() * ((BLOCK - len(head)) // 32 + 1)
    return head + filler[:BLOCK - len(head)]

def read_stamp(data, block):
    if len(data) != BLOCK or data[:8] != MAGIC:
        return 0
    seq, b = struct.unpack_from("<QQ", data, 8)
    return seq if b == block and data == stamp(seq, block) else 0

def args(argv, name, default=None):
    if name in argv:
        return argv[argv.index(name) + 1]
    if default is None:
        sys.exit("soak-stamps: %s is required" % name)
    return default

def write(image, journal, argv):
    seq = int(args(argv, "--first-seq"))
    blocks = int(args(argv, "--blocks"))
    rng = random.Random(int(args(argv, "--seed")))
    j = os.open(journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        fd = os.open(image, os.O_WRONLY)
    except OSError:
        return
    while not os.path.exists(journal + ".stop"):
        block = rng.randrange(blocks)
        os.write(j, b"W %d %d\n" % (seq, block))
        try:
            os.pwrite(fd, stamp(seq, block), block * BLOCK)
            os.fdatasync(fd)
        except OSError:
            return
        os.write(j, b"A %d\n" % seq)
        seq += 1

def journal_state(journal):
    """Last acknowledged seq per block, and the write in flight (issued, never acknowledged)."""
    issued, acked_seqs = {}, set()
    with open(journal) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[0] == "W":
                issued[int(parts[1])] = int(parts[2])
            elif len(parts) == 2 and parts[0] == "A":
                acked_seqs.add(int(parts[1]))
    last = {}
    inflight = {}
    for seq in sorted(issued):
        block = issued[seq]
        if seq in acked_seqs:
            last[block] = seq
        else:
            inflight[seq] = block
    return last, inflight

def check(path, journal, argv):
    blocks = int(args(argv, "--blocks"))
    last, inflight = journal_state(journal)
    # A write in flight at a kill may have landed; only ones newer than the block's last
    # acknowledged stamp count.
    allowed = {}
    for seq, block in inflight.items():
        allowed.setdefault(block, set()).add(seq)
    lost = torn = 0
    lines = []
    with open(path, "rb") as f:
        data = f.read()
    for block in range(blocks):
        want = last.get(block)
        if want is None:
            continue
        found = read_stamp(data[block * BLOCK:(block + 1) * BLOCK], block)
        ok = found == want or (found in allowed.get(block, ()) and found > want)
        if not ok and found == 0 and any(s > want for s in allowed.get(block, ())):
            torn += 1  # an unacknowledged write in flight tore the block: not a loss
            continue
        if not ok:
            lost += 1
            lines.append("LOST block %d: acknowledged stamp %d, found %s" % (block, want, found or "no stamp"))
    print("lost=%d inflight-torn=%d blocks=%d sha256=%s" % (lost, torn, len(last), hashlib.sha256(data).hexdigest()))
    for l in lines[:20]:
        print(l)
    return 1 if lost else 0

def main(argv):
    if len(argv) < 4 or argv[1] not in ("write", "check"):
        sys.exit(__doc__)
    if argv[1] == "write":
        write(argv[2], argv[3], argv)
        return 0
    return check(argv[2], argv[3], argv)

if __name__ == "__main__":
    sys.exit(main(sys.argv))
