#!/usr/bin/env python3
"""Benchmark: EBS direct transfers of a 2 GiB disk image, openami's client vs coldsnap vs qemu-img, in one run.

One release `openami serve` on a temp data dir. A deterministic 2 GiB mixed-content raw image
(~40% random, ~40% zero runs written as holes, ~20% compressible text; run lengths in 512-byte
sectors, mostly not 512 KiB-aligned) is uploaded and downloaded over loopback with
`openami snapshot upload|download` and with coldsnap (`--omit-zero-blocks`, as openami skips zero
blocks); every download is compared byte for byte with the source (the volume is rounded up to whole
GiB: the tail must be zeros). Each first upload (openami, coldsnap, qcow2) gets its own variant of the
image, same layout but other bytes, so none finds its blocks already stored (the server dedups).
Upload times run until DescribeSnapshots says `completed`. Then 1% of the blocks (spread out) change
and `openami snapshot upload --parent` is timed against a full upload of the changed file (for both,
99% of the blocks are already in the store). The baseline is `qemu-img convert -f raw -O qcow2` of the same file (local, no
network). When `openami snapshot upload` has `--format`, the qcow2 made by qemu-img is uploaded and
downloaded as qcow2 too (checked with `qemu-img compare`). All files live in the page cache (the
source is read several times), so this measures the clients and the server, not the disk.

The coldsnap upload (`--workers`, default 64, as coldsnap's own default) is also compared with
`cp` + `sync` of the same file, timed in the same run: the issue's target is >= 0.5x (stretch 1x).
Both sides are the best of three runs (each upload its own variant of the image), and coldsnap's own
CPU time is printed with the ratio it alone allows on this machine's CPUs.
`--coldsnap-only` skips everything but that comparison (e.g. `--size-mib 512 --coldsnap-only`).

Usage: python3 bench/ebs_transfer.py [--size-mib 2048] [--workers 64] [--coldsnap-only] [--openami target/release/openami] [--coldsnap PATH]
Needs: a release build of openami (built if missing), boto3, qemu-img, coldsnap (else its rows are skipped),
and the `cryptography` package for fast deterministic random data (else a slower hashlib fallback).
"""

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from openami_server import REGION, OpenamiServer

ROOT = Path(__file__).resolve().parents[1]
MIB = 1 << 20
GIB = 1 << 30
BLOCK = 512 * 1024
SECTOR = 512


class Keystream:
    """Deterministic pseudo-random bytes: AES-128-CTR of zeros (fast), else SHAKE-256 (slow)."""

    def __init__(self, seed: bytes):
        import hashlib
        key = hashlib.sha256(seed).digest()[:16]
        try:
            from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
            self._enc = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()
            self._shake = None
        except ImportError:
            self._enc, self._shake, self._n = None, key, 0

    def read(self, n: int) -> bytes:
        if self._enc is not None:
            return self._enc.update(bytes(n))
        import hashlib
        self._n += 1
        return hashlib.shake_256(self._shake + self._n.to_bytes(8, "little")).digest(n)


def text_pool(rng_bytes: bytes) -> bytes:
    """~1 MiB of log-like lines from a small vocabulary (compresses well, but not one repeated block)."""
    words = [b"GET", b"PUT", b"POST", b"/api/v1/items", b"/var/log/syslog", b"kernel:", b"systemd[1]:",
             b"Started", b"session", b"user", b"root", b"eth0", b"link", b"up", b"200", b"404", b"OK",
             b"cache", b"miss", b"hit", b"worker", b"request", b"completed", b"in", b"ms", b"INFO", b"WARN"]
    out, i = bytearray(), 0
    while len(out) < MIB:
        r = rng_bytes[i % len(rng_bytes):i % len(rng_bytes) + 8].ljust(8, b"\0")
        i += 8
        line = b"2026-11-28T12:%02d:%02dZ host-%02d " % (r[0] % 60, r[1] % 60, r[2] % 32)
        line += b" ".join(words[b % len(words)] for b in r[3:8]) + b" %d\n" % (r[0] * 7 + r[1])
        out += line
    return bytes(out[:MIB])


def make_image(path: Path, size: int, variant: bytes = b"a", seed: bytes = b"openami-ebs-transfer") -> dict:
    """Writes the mixed-content image; returns the bytes of each kind. Variants share the layout
    (same runs of each kind) but not the bytes, so each upload meets a store without its blocks."""
    rnd = Keystream(seed + b"/random/" + variant)
    choice = Keystream(seed + b"/layout")
    pool = text_pool(Keystream(seed + b"/text/" + variant).read(MIB))
    targets = {"random": 0.4, "zero": 0.4, "text": 0.2}
    made = dict.fromkeys(targets, 0)
    pos, seg = 0, 0
    with open(path, "wb") as f:
        while pos < size:
            c = choice.read(8)
            # The kind furthest behind its share (by bytes) goes next, with some randomness.
            want = {k: targets[k] * (pos + 4 * MIB) - made[k] + (c[0] % 16) * 64 * 1024 for k in targets}
            kind = max(want, key=want.get)
            length = (int.from_bytes(c[1:5], "little") % (16 * MIB - 64 * 1024) + 64 * 1024) // SECTOR * SECTOR
            length = min(length, size - pos)
            if kind == "zero":
                f.seek(pos + length)  # a hole
            elif kind == "random":
                for off in range(0, length, 8 * MIB):
                    f.write(rnd.read(min(8 * MIB, length - off)))
            else:
                start = int.from_bytes(c[5:8], "little") % MIB
                buf = bytearray((pool * (length // MIB + 3))[start:start + length])
                for off in range(0, length - 24, 4096):  # stamp each 4 KiB so blocks differ
                    buf[off:off + 24] = b"seg%06d-off%010d\n" % (seg % 1000000, off)  # 24 bytes
                f.write(buf)
            made[kind] += length
            pos += length
            seg += 1
        f.truncate(size)
    return made


def change_blocks(src: Path, dst: Path, fraction: float = 0.01) -> list:
    """Copies src to dst and rewrites `fraction` of its 512 KiB blocks, evenly spread; returns their indexes."""
    subprocess.run(["cp", "--sparse=always", str(src), str(dst)], check=True)
    nblocks = (dst.stat().st_size + BLOCK - 1) // BLOCK
    n = max(1, round(nblocks * fraction))
    idx = sorted({int((i + 0.5) * nblocks / n) for i in range(n)})
    ks = Keystream(b"openami-ebs-transfer/changed")
    with open(dst, "r+b") as f:
        for i in idx:
            f.seek(i * BLOCK)
            f.write(ks.read(min(BLOCK, dst.stat().st_size - i * BLOCK)))
    return idx


def same_prefix_then_zeros(downloaded: Path, original: Path):
    with open(downloaded, "rb") as d, open(original, "rb") as o:
        pos = 0
        while True:
            want = o.read(8 * MIB)
            if not want:
                break
            got = d.read(len(want))
            if got != want:
                sys.exit(f"{downloaded.name}: bytes differ from {original.name} in the 8 MiB at offset {pos}")
            pos += len(want)
        while True:
            rest = d.read(8 * MIB)
            if not rest:
                break
            if rest.count(0) != len(rest):
                sys.exit(f"{downloaded.name}: non-zero bytes past the end of {original.name} (offset {pos})")
            pos += len(rest)


class Openami(OpenamiServer):
    def __init__(self, binary: Path, work: Path):
        super().__init__(binary, work)
        self.ebs = self.client("ebs")

    def run(self, argv, what):
        out = subprocess.run(argv, env=self.env(), capture_output=True, text=True, timeout=3600)
        if out.returncode != 0:
            sys.exit(f"{what} failed (exit {out.returncode}):\n{out.stderr[-3000:]}")
        return out.stdout.strip()

    def wait_completed(self, snap):
        deadline = time.time() + 600
        while time.time() < deadline:
            s = self.ec2.describe_snapshots(SnapshotIds=[snap])["Snapshots"][0]
            if s["State"] == "completed":
                return
            if s["State"] == "error":
                sys.exit(f"{snap} went to state error")
            time.sleep(0.05)
        sys.exit(f"{snap} did not complete")


def timed(fn):
    t = time.perf_counter()
    result = fn()
    return time.perf_counter() - t, result


BASELINE_RUNS = 3


def cp_sync(path: Path, work: Path) -> float:
    """Seconds for `cp` of `path` plus `sync` (after a `sync` of what was dirty before): the best of
    BASELINE_RUNS runs, as in `openami bench` (one run swung by up to 4x here; the fastest makes the
    ratio against it conservative)."""
    best = float("inf")
    copy = work / "cp-sync-baseline.raw"
    for _ in range(BASELINE_RUNS):
        subprocess.run(["sync"], check=True)
        t = time.perf_counter()
        subprocess.run(["cp", str(path), str(copy)], check=True)
        subprocess.run(["sync"], check=True)
        best = min(best, time.perf_counter() - t)
        copy.unlink()
    return best


UPLOAD_RUNS = 3


def process_cpu(pid: int) -> float:
    """CPU seconds (user + sys) a running process has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def coldsnap_vs_cp_sync(server, coldsnap, work: Path, size: int, args):
    """The issue's EBS direct ingest row: coldsnap upload (to completed) against cp + sync.

    Like its baseline, the upload is timed UPLOAD_RUNS times and the fastest counts; each run uploads
    its own variant of the image (same layout, other bytes), so none finds its blocks already stored.
    coldsnap's own CPU time (user + sys) is measured too: on this machine's CPUs the upload can take
    no less than that CPU time spread over every core, which bounds the ratio from above."""
    sources = []
    for run in range(UPLOAD_RUNS):
        cs_src = work / f"disk-coldsnap-{run}.raw"
        make_image(cs_src, size, variant=b"coldsnap-%d" % run)
        sources.append(cs_src)
    t_cp = cp_sync(sources[0], work)
    uploads = []  # (seconds, snapshot, coldsnap CPU seconds)
    for cs_src in sources:
        subprocess.run(["sync"], check=True)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        server_before = process_cpu(server.proc.pid)
        t = time.perf_counter()
        snap = server.run([coldsnap, "--endpoint", server.endpoint, "--region", REGION, "upload", "--no-progress",
                           "--omit-zero-blocks", "--workers", str(args.workers), str(cs_src)], "coldsnap upload")
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        server.wait_completed(snap)
        uploads.append((time.perf_counter() - t, snap,
                        after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime,
                        process_cpu(server.proc.pid) - server_before))
    down = work / "down-coldsnap.raw"
    for cs_src, (_, snap, _, _) in zip(sources, uploads):
        server.run([coldsnap, "--endpoint", server.endpoint, "--region", REGION, "download", "--no-progress", snap,
                    str(down)], "coldsnap download")
        same_prefix_then_zeros(down, cs_src)
        down.unlink()
    t_up, snap, cpu, server_cpu = min(uploads)
    ratio = t_cp / t_up
    cpus = os.cpu_count() or 1
    ceiling = t_cp / (cpu / cpus)
    mib = size / MIB
    print()
    print(f"coldsnap upload of a {args.size_mib} MiB image, {args.workers} workers, against cp + sync of the same file")
    print(f"{'operation':<44} {'seconds':>8} {'MiB/s':>8}  note")
    print(f"{f'cp + sync (durable baseline, best of {BASELINE_RUNS})':<44} {t_cp:>8.2f} {mib / t_cp:>8.0f}")
    print(f"{f'coldsnap upload (to completed, best of {UPLOAD_RUNS})':<44} {t_up:>8.2f} {mib / t_up:>8.0f}  {snap}, "
          f"all {UPLOAD_RUNS} verified; {ratio:.2f}x cp+sync (target >= 0.5x: {'met' if ratio >= 0.5 else 'MISSED'}, "
          f"stretch 1x)")
    print("uploads (each its own variant of the image): " + ", ".join(f"{u[0]:.2f}" for u in uploads) + " s")
    print(f"CPU in that upload: coldsnap {cpu:.2f} core-s, the server {server_cpu:.2f} core-s (both on {cpus} CPUs: "
          f"{(cpu + server_cpu) / cpus:.2f} s). coldsnap's alone, spread over every CPU with no server at all, "
          f"would take {cpu / cpus:.2f} s = {ceiling:.2f}x cp+sync")
    print(f"load average now {os.getloadavg()[0]:.1f} on {cpus} CPUs (other work skews timings)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=2048, help="logical size of the image (default 2048)")
    ap.add_argument("--openami", type=Path, default=ROOT / "target" / "release" / "openami")
    ap.add_argument("--coldsnap", default=os.environ.get("OPENAMI_COLDSNAP") or shutil.which("coldsnap")
                    or str(Path.home() / ".cache/openami-ci/coldsnap-0.12.0/bin/coldsnap"))
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (printed)")
    ap.add_argument("--workers", type=int, default=64, help="coldsnap upload workers (default 64)")
    ap.add_argument("--coldsnap-only", action="store_true",
                    help="only the coldsnap upload and its cp + sync baseline")
    args = ap.parse_args()
    if not args.openami.exists():
        subprocess.run(["cargo", "build", "--release", "--bin", "openami"], cwd=ROOT, check=True)
    if not shutil.which("qemu-img"):
        sys.exit("qemu-img not found (apt-get install qemu-utils)")
    coldsnap = args.coldsnap if args.coldsnap and Path(args.coldsnap).exists() else None
    size = args.size_mib * MIB
    logical_mib = size / MIB
    openami = str(args.openami)

    work = Path(tempfile.mkdtemp(prefix="openami-bench-ebs-"))
    server = None
    rows = []  # (operation, seconds or None, note)
    try:
        src = work / "disk.raw"
        took, made = timed(lambda: make_image(src, size))
        print(f"image: {args.size_mib} MiB in {took:.1f} s: " + ", ".join(
            f"{k} {v / size:.0%}" for k, v in made.items()) + f"; {os.stat(src).st_blocks * 512 / MIB:.0f} MiB allocated",
            file=sys.stderr)

        # Baseline: qemu-img convert to qcow2 (local).
        qcow = work / "disk.qcow2"
        t_convert, _ = timed(lambda: subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(src),
                                                     str(qcow)], check=True))
        rows.append(("qemu-img convert raw -> qcow2 (baseline)", t_convert, ""))
        qcow.unlink()

        server = Openami(args.openami, work)
        ep = ["--endpoint", server.endpoint, "--region", REGION, "--no-progress"]
        if args.coldsnap_only:
            if not coldsnap:
                sys.exit("--coldsnap-only: coldsnap not found (--coldsnap / OPENAMI_COLDSNAP)")
            coldsnap_vs_cp_sync(server, coldsnap, work, size, args)
            return

        # openami full upload + download.
        client_secs = {}

        def up(path, *extra):
            t = time.perf_counter()
            snap = server.run([openami, "snapshot", "upload", str(path), *ep, *extra], "openami snapshot upload")
            client_secs[snap] = time.perf_counter() - t
            if not snap.startswith("snap-"):
                sys.exit(f"openami snapshot upload printed {snap!r}")
            server.wait_completed(snap)
            return snap
        t_up, snap = timed(lambda: up(src))
        rows.append(("openami snapshot upload (to completed)", t_up, f"{snap}, client exited at {client_secs[snap]:.2f} s"))
        down = work / "down-openami.raw"
        t_down, _ = timed(lambda: server.run([openami, "snapshot", "download", snap, str(down), *ep],
                                             "openami snapshot download"))
        same_prefix_then_zeros(down, src)
        rows.append(("openami snapshot download", t_down, "verified"))
        down.unlink()

        # coldsnap.
        t_cs_up = t_cs_down = None
        if coldsnap:
            cs = [coldsnap, "--endpoint", server.endpoint, "--region", REGION]

            cs_src = work / "disk-coldsnap.raw"  # same layout, other bytes: a cold store for coldsnap too
            make_image(cs_src, size, variant=b"b")

            def cs_up():
                t = time.perf_counter()
                s = server.run([*cs, "upload", "--no-progress", "--omit-zero-blocks", "--workers", str(args.workers),
                                str(cs_src)], "coldsnap upload")
                client_secs[s] = time.perf_counter() - t
                server.wait_completed(s)
                return s
            t_cs_up, cs_snap = timed(cs_up)
            t_cs_cp = cp_sync(cs_src, work)
            cs_ratio = t_cs_cp / t_cs_up
            rows.append((f"coldsnap upload --omit-zero-blocks, {args.workers} workers (to completed)", t_cs_up,
                         f"{cs_snap}, client exited at {client_secs[cs_snap]:.2f} s; "
                         f"{cs_ratio:.2f}x cp+sync ({t_cs_cp:.2f} s; target >= 0.5x: {'met' if cs_ratio >= 0.5 else 'MISSED'})"))
            cs_down = work / "down-coldsnap.raw"
            t_cs_down, _ = timed(lambda: server.run([*cs, "download", "--no-progress", cs_snap, str(cs_down)],
                                                    "coldsnap download"))
            same_prefix_then_zeros(cs_down, cs_src)
            rows.append(("coldsnap download", t_cs_down, "verified"))
            cs_down.unlink()
            cs_src.unlink()
        else:
            print("coldsnap not found (--coldsnap / OPENAMI_COLDSNAP): skipping its rows", file=sys.stderr)

        # Incremental: 1% of the blocks changed.
        changed = work / "disk2.raw"
        idx = change_blocks(src, changed)
        t_inc, child = timed(lambda: up(changed, "--parent", snap))
        blocks = []
        pages = server.ebs.get_paginator("list_changed_blocks") if server.ebs.can_paginate("list_changed_blocks") else None
        if pages:
            for page in pages.paginate(FirstSnapshotId=snap, SecondSnapshotId=child):
                blocks += [b["BlockIndex"] for b in page["ChangedBlocks"]]
        else:
            token = None
            while True:
                kw = {"NextToken": token} if token else {}
                page = server.ebs.list_changed_blocks(FirstSnapshotId=snap, SecondSnapshotId=child, **kw)
                blocks += [b["BlockIndex"] for b in page["ChangedBlocks"]]
                token = page.get("NextToken")
                if not token:
                    break
        if sorted(blocks) != idx:
            print(f"WARNING: ListChangedBlocks of the incremental snapshot lists {len(blocks)} blocks, "
                  f"{len(idx)} were changed", file=sys.stderr)
        rows.append((f"openami upload --parent ({len(idx)} of {(size + BLOCK - 1) // BLOCK} blocks changed)",
                     t_inc, f"{child}, {len(blocks)} changed blocks listed, client exited at {client_secs[child]:.2f} s"))
        t_full2, full2 = timed(lambda: up(changed))
        rows.append(("openami full upload of the changed file", t_full2,
                     f"{full2}, 99% of its blocks already stored"))
        down2 = work / "down-incremental.raw"
        server.run([openami, "snapshot", "download", child, str(down2), *ep], "openami snapshot download")
        same_prefix_then_zeros(down2, changed)
        down2.unlink()
        changed.unlink()

        # qcow2 input/output, if the client has it.
        up_help = server.run([openami, "snapshot", "upload", "--help"], "openami snapshot upload --help")
        down_help = server.run([openami, "snapshot", "download", "--help"], "openami snapshot download --help")
        t_q_up = t_q_down = None
        if "--format" in up_help:
            q_src = work / "disk-qcow2-source.raw"  # same layout, other bytes (a cold store again)
            make_image(q_src, size, variant=b"c")
            subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(q_src), str(qcow)], check=True)
            t_q_up, qsnap = timed(lambda: up(qcow, "--format", "qcow2"))
            rows.append(("openami upload of the qcow2 (--format qcow2)", t_q_up,
                         f"{qsnap}, {qcow.stat().st_size / MIB:.0f} MiB file, client exited at {client_secs[qsnap]:.2f} s"))
            if "--format" in down_help:
                qdown = work / "down.qcow2"
                t_q_down, _ = timed(lambda: server.run([openami, "snapshot", "download", qsnap, str(qdown), *ep,
                                                        "--format", "qcow2"], "openami snapshot download --format qcow2"))
                cmp = subprocess.run(["qemu-img", "compare", "-f", "qcow2", "-F", "raw", str(qdown), str(q_src)],
                                     capture_output=True, text=True)
                if cmp.returncode != 0:
                    sys.exit(f"qcow2 download differs from the source: {cmp.stdout}{cmp.stderr}")
                rows.append(("openami download --format qcow2", t_q_down, "verified (qemu-img compare)"))
            else:
                print("note: `openami snapshot download` has no --format: qcow2 download skipped", file=sys.stderr)
        else:
            print("note: `openami snapshot upload` has no --format (raw only): qcow2 upload/download skipped",
                  file=sys.stderr)

        print()
        print(f"EBS direct transfers of a {args.size_mib} MiB image over loopback "
              f"({made['random'] / size:.0%} random, {made['zero'] / size:.0%} zero, {made['text'] / size:.0%} text); "
              f"MiB/s of the logical size; ratio = seconds / qemu-img convert seconds")
        print(f"{'operation':<58} {'seconds':>8} {'MiB/s':>8} {'ratio':>7}  note")
        for op, secs, note in rows:
            print(f"{op:<58} {secs:>8.2f} {logical_mib / secs:>8.0f} {secs / t_convert:>6.2f}x  {note}")
        summary = [f"upload/convert {t_up / t_convert:.2f}x", f"download/convert {t_down / t_convert:.2f}x"]
        if t_cs_up:
            summary += [f"upload time coldsnap/openami {t_cs_up / t_up:.2f}x",
                        f"download time coldsnap/openami {t_cs_down / t_down:.2f}x"]
        summary.append(f"upload time full/incremental {t_full2 / t_inc:.2f}x")
        if t_q_up:
            summary.append(f"qcow2 upload/convert {t_q_up / t_convert:.2f}x")
        if t_q_down:
            summary.append(f"qcow2 download/convert {t_q_down / t_convert:.2f}x")
        print(f"load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (other work skews timings)")
        print()
        print("summary: " + ", ".join(summary))
    finally:
        if server:
            server.stop()
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
