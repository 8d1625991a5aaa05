"""Writes seeds/session/: what a real NBD client sends (fixed newstyle handshake, then
requests), in the forms qemu and nbdinfo use. Run: python3 gen_seeds.py"""
import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds", "session")
IHAVEOPT = 0x49484156454F5054
REQUEST_MAGIC = 0x25609513
C_FIXED_NEWSTYLE, C_NO_ZEROES = 1, 2
OPT_EXPORT_NAME, OPT_ABORT, OPT_LIST, OPT_INFO, OPT_GO, OPT_STRUCTURED = 1, 2, 3, 6, 7, 8
READ, WRITE, DISC, FLUSH, TRIM, CACHE, WRITE_ZEROES = 0, 1, 2, 3, 4, 5, 6
FUA, NO_HOLE = 1, 2


def opt(code, data=b""):
    return struct.pack(">QII", IHAVEOPT, code, len(data)) + data


def go(name, infos=(), code=OPT_GO):
    n = name.encode()
    return opt(code, struct.pack(">I", len(n)) + n + struct.pack(">H", len(infos))
               + b"".join(struct.pack(">H", i) for i in infos))


def req(cmd, offset=0, length=0, flags=0, cookie=1, payload=b""):
    return struct.pack(">IHHQQI", REQUEST_MAGIC, flags, cmd, cookie, offset, length) + payload


flags = struct.pack(">I", C_FIXED_NEWSTYLE | C_NO_ZEROES)
seeds = {
    "go-io": flags + go("vol", (0, 1, 2, 3)) + req(WRITE, 4096, 512, FUA, 1, b"\xab" * 512)
    + req(READ, 0, 8192, 0, 2) + req(FLUSH, cookie=3) + req(TRIM, 65536, 4096, cookie=4)
    + req(WRITE_ZEROES, 0, 4096, NO_HOLE, 5) + req(CACHE, 0, 4096, cookie=6) + req(DISC, cookie=7),
    "list-info-abort": flags + opt(OPT_LIST) + go("ro", (3,), OPT_INFO)
    + go("missing") + opt(OPT_STRUCTURED) + opt(OPT_ABORT),
    "export-name-oldstyle": struct.pack(">I", C_FIXED_NEWSTYLE) + opt(OPT_EXPORT_NAME, b"ro")
    + req(READ, 65536, 512, cookie=9) + req(WRITE, 0, 512, payload=b"\0" * 512) + req(DISC),
    "go-out-of-range": flags + go("vol") + req(READ, (1 << 20) - 256, 512)
    + req(READ, 0, 1 << 20) + req(WRITE, 1 << 62, 16, payload=b"x" * 16) + req(99, 0, 0),
}
for name, data in seeds.items():
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)
