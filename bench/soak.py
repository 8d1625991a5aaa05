#!/usr/bin/env python3
"""Soak test: many concurrent clients of two accounts against one openami for a bounded time,
then invariants over everything they were told.

Usage: python3 bench/soak.py [--duration 600] [--clients 8] [--max-ops N] [--seed S] [--bin PATH]
                             [--keep] [--rss-limit-mib 400] [--fd-slack 64] [--gc-interval 5]
                             [--inject-corruption]

It starts its own `openami serve` (PATH, else $OPENAMI_BIN, else target/release/openami) on a
temp data dir, listening on a free port of 127.0.0.1 (no traffic leaves loopback), with
`--gc-interval` so the server's own GC runs while the clients write, and creates two accounts
with `openami account create`. N client threads (alternating between the accounts, each with its
own boto3 session and clients, retries off, client-side validation off) run a weighted random mix
until --duration seconds or --max-ops calls:

  reads    DescribeImages (own, shared with me, public), DescribeSnapshots, DescribeVolumes,
           DescribeAvailabilityZones
  uploads  EBS direct StartSnapshot, PutSnapshotBlock (random, zero, repeated and compressible
           blocks, sometimes one overwritten), CompleteSnapshot; some incremental on a parent,
           some abandoned (left pending)
  churn    CreateVolume from a snapshot, CreateSnapshot of it, DeleteVolume, DeleteSnapshot
  reading  ListSnapshotBlocks + GetSnapshotBlock of a live snapshot, compared with what was sent
  images   RegisterImage, ModifyImageAttribute launchPermission add/remove (the other account or
           all) with the other account describing it, DeregisterImage
  probes   the other account's private snapshots, volumes, images and blocks, and bad requests:
           these must answer 4xx

An account's resources are shared by its threads, so their calls race as users' would: a 4xx such
a race explains (InvalidSnapshot.InUse, ...) is counted, not failed. The SHA-256 of every
acknowledged block is recorded. A sampler reads the server's VmRSS/VmHWM and open fds every second.

Invariants checked at the end (each printed PASS/FAIL; exit status 1 if any fails):
  no-5xx     no call answered 5xx or failed to connect; the server stayed up
  probes-4xx every probe and bad request answered 4xx
  strict     calls no race can fail (uploads without parent, puts, reads) succeeded
  catalog    the server lists exactly the snapshots (completed/pending/error), volumes and images
             the clients kept, and every image's snapshot exists
  bit-exact  every live snapshot reads back (ListSnapshotBlocks + GetSnapshotBlock) exactly as
             acknowledged, parent blocks of incrementals included; so does a fresh snapshot of
             every live volume
  sigterm    the server exits 0 on SIGTERM
  scrub      `openami store scrub` exits 0
  gc-exact   after `openami store gc` the block files (objects/blocks/<hh>/<sha256>) are exactly the
             distinct non-zero blocks of live snapshots and volumes and of pending uploads, `store
             stats` agrees, and a second gc deletes nothing
  fds        open fds after the run <= peak during warm-up + --fd-slack
  rss        peak RSS (VmHWM) <= --rss-limit-mib
  script     the soak itself raised no exception

It prints calls, throughput, count / 4xx / 5xx / p50 / p99 per action, peak RSS and fds, verdicts.
--inject-corruption flips a byte of one stored block before the scrub: a self-test, scrub must FAIL.
"""

import argparse
import base64
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.request
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

ROOT = Path(__file__).resolve().parents[1]
REGION, AZ = "us-east-1", "us-east-1a"
BLOCK = 512 * 1024
ZERO = bytes(BLOCK)
ZERO_HEX = hashlib.sha256(ZERO).hexdigest()
INDEXES = 64  # uploads write blocks 0..63 of a 1 GiB volume, so incrementals overlap parents
MAX_SNAPSHOTS, MAX_VOLUMES, MAX_IMAGES = 24, 4, 6  # live per account; beyond, deletes win
INVARIANTS = ["no-5xx", "probes-4xx", "strict", "catalog", "bit-exact", "sigterm", "scrub",
              "gc-exact", "fds", "rss", "script"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def brief(kw) -> str:
    """A call's parameters for a message, without block data or client objects."""
    return str({k: f"<{len(v)} bytes>" if isinstance(v, bytes) else v for k, v in kw.items() if k != "ebs"})


def percentile(sorted_values, q):
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))] if sorted_values else 0.0


class Stats:
    """Latency and status of every call, and the failures of each invariant."""

    def __init__(self):
        self.lock = threading.Lock()
        self.latency = defaultdict(list)
        self.status = defaultdict(Counter)
        self.failures = defaultdict(list)
        self.calls = 0

    def record(self, action, seconds, status):
        with self.lock:
            self.calls += 1
            self.latency[action].append(seconds)
            self.status[action]["5xx" if status == 0 or status >= 500 else "4xx" if status >= 400 else "ok"] += 1

    def fail(self, invariant, message):
        with self.lock:
            self.failures[invariant].append(message)


class Account:
    """What the clients of one account were told, guarded by `lock`. Contents are {index: sha256 hex}
    of non-zero blocks; uploads map every written index (zeros too) to its last block's hash."""

    def __init__(self, name, creds):
        self.name, self.creds, self.id = name, creds, creds["AccountId"]
        self.lock = threading.Lock()
        self.snapshots = {}  # live completed snapshot -> content
        self.uploads = {}  # upload left pending (abandoned, or its CompleteSnapshot failed) -> written
        self.volumes = {}  # live volume -> content of the snapshot it came from
        self.images = {}  # live image -> its root snapshot


class Soak:
    def __init__(self, args):
        self.args = args
        self.stats = Stats()
        self.rng = random.Random(args.seed)
        self.shared_blocks = [self.rng.randbytes(BLOCK) for _ in range(12)]  # dedup across uploads
        self.start = self.deadline = 0.0
        self.samples = []  # (seconds since start, VmRSS kB, VmHWM kB, open fds)
        self.stop_sampling = threading.Event()
        self.stopping = False  # set before the SIGTERM: the server may exit from then on

    # --- server ------------------------------------------------------------------------------

    def start_server(self, work: Path):
        self.data = work / "data"
        self.log_path = work / "server.log"
        self.log = open(self.log_path, "wb")
        port = free_port()
        self.endpoint = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [self.args.bin, "serve", "--data-dir", str(self.data), "--listen", f"127.0.0.1:{port}",
             "--gc-interval", str(self.args.gc_interval)],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, "OPENAMI_LOG": os.environ.get("OPENAMI_LOG", "warn")})
        deadline = time.time() + 60
        while True:
            if self.proc.poll() is not None:
                sys.exit(f"openami exited during startup:\n{self.log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.endpoint + "/health", timeout=1):
                    break
            except OSError:
                if time.time() > deadline:
                    sys.exit("openami did not start")
                time.sleep(0.05)
        self.accounts = [Account(n, json.loads(self.openami("account", "create", n).stdout))
                         for n in ("soak-a", "soak-b")]

    def openami(self, *args, check=True):
        return subprocess.run([self.args.bin, *args, "--data-dir", str(self.data)],
                              capture_output=True, text=True, check=check)

    def client(self, session, service, account):
        return session.client(service, endpoint_url=self.endpoint, region_name=REGION,
                              aws_access_key_id=account.creds["AccessKeyId"],
                              aws_secret_access_key=account.creds["SecretAccessKey"],
                              config=Config(retries={"total_max_attempts": 1, "mode": "standard"},
                                            parameter_validation=False, connect_timeout=10,
                                            read_timeout=120))

    def sample(self):
        pid = self.proc.pid
        while not self.stop_sampling.wait(1.0):
            try:
                status = Path(f"/proc/{pid}/status").read_text()
                kb = {line.split(":")[0]: int(line.split()[1]) for line in status.splitlines()
                      if line.startswith(("VmRSS", "VmHWM"))}
                fds = len(os.listdir(f"/proc/{pid}/fd"))
            except (OSError, ValueError):
                if self.proc.poll() is not None:
                    if not self.stopping:
                        self.stats.fail("no-5xx", f"the server exited ({self.proc.returncode}) during the run")
                    return
                continue
            self.samples.append((time.monotonic() - self.start, kb["VmRSS"], kb["VmHWM"], fds))

    # --- calls -------------------------------------------------------------------------------

    def call(self, action, fn, expect="ok", **kw):
        """One API call, timed and checked. expect: "ok" (no race can fail it), "any" (a 4xx
        is a legitimate outcome) or "4xx" (a probe). Returns (response or None, error code)."""
        t0 = time.monotonic()
        try:
            resp, code = fn(**kw), None
            status = resp["ResponseMetadata"]["HTTPStatusCode"]
        except ClientError as e:
            resp, code = None, e.response.get("Error", {}).get("Code", "?")
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        except (BotoCoreError, OSError) as e:  # refused, reset, timed out
            resp, code, status = None, repr(e), 0
        self.stats.record(action, time.monotonic() - t0, status)
        if status == 0 or status >= 500:
            self.stats.fail("no-5xx", f"{action} {brief(kw)}: {status} {code}")
        elif expect == "4xx" and status < 400:
            self.stats.fail("probes-4xx", f"{action} {brief(kw)} answered {status}")
        elif expect == "ok" and status >= 400:
            self.stats.fail("strict", f"{action} {brief(kw)}: {status} {code}")
        return resp, code

    def unsigned(self):
        """A request without a signature: must be 4xx."""
        t0, status = time.monotonic(), 0
        req = urllib.request.Request(self.endpoint + "/", data=b"Action=DescribeImages&Version=2016-11-15",
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                status = r.status
        except urllib.error.HTTPError as e:
            status = e.code
        except OSError:
            pass
        self.stats.record("Unsigned[bad]", time.monotonic() - t0, status)
        if status == 0 or status >= 500 or status < 400:
            self.stats.fail("no-5xx" if status == 0 or status >= 500 else "probes-4xx", f"unsigned request: {status}")

    def wait_state(self, action, fn, key, rid, want):
        """Polls a Describe call until the resource reaches `want` or leaves pending states;
        returns its last state, or None if it vanished."""
        deadline, state = time.monotonic() + 120, None
        while time.monotonic() < deadline:
            r, _ = self.call(action, fn, expect="any", **{key + "Ids": [rid]})
            if r is None:
                return None
            state = r[key + "s"][0]["State"]
            if state not in ("pending", "creating"):
                return state
            time.sleep(0.2)
        return state

    # --- run ---------------------------------------------------------------------------------

    def done(self):
        return time.monotonic() >= self.deadline or (self.args.max_ops and self.stats.calls >= self.args.max_ops)

    def run(self):
        n = self.args.clients
        clients = [Client(self, i, self.accounts[i % 2], self.accounts[1 - i % 2]) for i in range(n)]
        self.start = time.monotonic()
        self.deadline = self.start + self.args.duration
        sampler = threading.Thread(target=self.sample, daemon=True)
        sampler.start()
        for c in clients:
            c.start()
        for c in clients:
            c.join()
        self.run_seconds = time.monotonic() - self.start
        self.run_calls = self.stats.calls
        time.sleep(3)  # let the server settle, then count its fds
        self.fds_end = len(os.listdir(f"/proc/{self.proc.pid}/fd")) if self.proc.poll() is None else 0
        try:
            verify(self)
        except Exception:  # e.g. a listing that answered 5xx
            self.stats.fail("script", f"verify: {traceback.format_exc()}")
        self.stop_sampling.set()
        sampler.join()
        self.check_resources()

    def check_resources(self):
        """fds after the run against the warm-up, peak RSS against the limit."""
        warm = [s for s in self.samples if s[0] <= self.warmup] or self.samples[:1]
        self.fds_warm = max((s[3] for s in warm), default=0)
        if self.fds_end > self.fds_warm + self.args.fd_slack:
            self.stats.fail("fds", f"{self.fds_end} open fds after the run > {self.fds_warm} after warm-up + {self.args.fd_slack}")
        self.peak_rss = max((s[2] for s in self.samples), default=0) / 1024
        if self.peak_rss > self.args.rss_limit_mib:
            self.stats.fail("rss", f"peak RSS {self.peak_rss:.1f} MiB > {self.args.rss_limit_mib} MiB")


class Client(threading.Thread):
    """One client thread: its own boto3 session and clients for its account and the other."""

    def __init__(self, soak, index, me, other):
        super().__init__(name=f"client-{index}", daemon=True)
        self.soak, self.me, self.other = soak, me, other
        self.rng = random.Random(f"{soak.args.seed}/{index}")
        session = boto3.session.Session()
        self.ec2 = soak.client(session, "ec2", me)
        self.ebs = soak.client(session, "ebs", me)
        self.other_ec2 = soak.client(session, "ec2", other)
        self.call = soak.call

    def run(self):
        while not self.soak.done():
            me = self.me
            with me.lock:
                crowded = (len(me.snapshots) > MAX_SNAPSHOTS, len(me.volumes) >= MAX_VOLUMES,
                           len(me.images) >= MAX_IMAGES)
            ops = [(30, self.read), (20, self.upload), (8, self.volume_churn),
                   (60 if crowded[0] else 6, self.delete_snapshot), (12 if crowded[1] else 3, self.delete_volume),
                   (2 if crowded[2] else 5, self.register_image), (6, self.share_image),
                   (12 if crowded[2] else 3, self.deregister_image), (6, self.probe_other), (3, self.bad_request),
                   (4, self.read_snapshot)]
            op = self.rng.choices([o for _, o in ops], weights=[w for w, _ in ops])[0]
            try:
                op()
            except Exception:  # a bug of the soak itself must not pass silently
                self.soak.stats.fail("script", f"{op.__name__}: {traceback.format_exc()}")

    def pick(self, pool, exclude=()):
        with self.me.lock:
            keys = [k for k in getattr(self.me, pool) if k not in exclude]
            return self.rng.choice(keys) if keys else None

    def block(self) -> bytes:
        k = self.rng.random()
        if k < 0.45:
            return self.rng.randbytes(BLOCK)
        if k < 0.6:
            return ZERO
        if k < 0.85:
            return self.rng.choice(self.soak.shared_blocks)
        line = f"soak line {self.rng.randrange(1 << 30)} of compressible text\n".encode()
        return (line * (BLOCK // len(line) + 1))[:BLOCK]

    # --- the mix -----------------------------------------------------------------------------

    def read(self):
        ec2, rng = self.ec2, self.rng
        name, fn, kw = rng.choice([
            ("DescribeImages[own]", ec2.describe_images, {"Owners": ["self"]}),
            ("DescribeImages[shared]", ec2.describe_images, {"ExecutableUsers": ["self"]}),
            ("DescribeImages[public]", ec2.describe_images, {"ExecutableUsers": ["all"]}),
            ("DescribeSnapshots", ec2.describe_snapshots, {"OwnerIds": ["self"]}),
            ("DescribeVolumes", ec2.describe_volumes, {}),
            ("DescribeAvailabilityZones", ec2.describe_availability_zones, {}),
        ])
        self.call(name, fn, **kw)

    def read_snapshot(self):
        """Reads a live snapshot back while others write, delete and collect: each block
        answered must be the acknowledged one (a sibling may delete it meanwhile: 4xx)."""
        sid = self.pick("snapshots")
        if sid is None:
            return
        with self.me.lock:
            want = dict(self.me.snapshots.get(sid, {}))
        page, _ = self.call("ListSnapshotBlocks", self.ebs.list_snapshot_blocks, "any", SnapshotId=sid,
                            MaxResults=100)
        for b in (page or {}).get("Blocks", []):
            r, _ = self.call("GetSnapshotBlock", read_block, "any", ebs=self.ebs, SnapshotId=sid,
                             BlockIndex=b["BlockIndex"], BlockToken=b["BlockToken"])
            if r is not None and r["Data"] != want.get(b["BlockIndex"]):
                self.soak.stats.fail("bit-exact", f"{sid} block {b['BlockIndex']} read during the run differs")
        if page is not None and {b["BlockIndex"] for b in page["Blocks"]} != set(want) and not page.get("NextToken"):
            self.soak.stats.fail("bit-exact", f"{sid} lists blocks {sorted(b['BlockIndex'] for b in page['Blocks'])}"
                                              f" during the run, not {sorted(want)}")

    def put(self, sid, index, data, expect="ok"):
        return self.call("PutSnapshotBlock", self.ebs.put_snapshot_block, expect, SnapshotId=sid,
                         BlockIndex=index, BlockData=data, DataLength=len(data),
                         Checksum=b64(hashlib.sha256(data).digest()), ChecksumAlgorithm="SHA256")[0]

    def upload(self):
        me, rng = self.me, self.rng
        parent, base = None, {}
        if rng.random() < 0.3:
            with me.lock:
                if me.snapshots:
                    parent = rng.choice(list(me.snapshots))
                    base = dict(me.snapshots[parent])
        kw = {"VolumeSize": 1, "Timeout": 60, "Description": "soak upload", "ClientToken": uuid.uuid4().hex}
        if parent:
            kw["ParentSnapshotId"] = parent
        expect = "any" if parent else "ok"  # a sibling may delete the parent meanwhile
        r, _ = self.call("StartSnapshot", self.ebs.start_snapshot, expect, **kw)
        if r is None:
            return
        sid, written = r["SnapshotId"], {}
        for index in rng.sample(range(INDEXES), rng.randint(1, 6)):
            for _ in range(2 if rng.random() < 0.1 else 1):  # sometimes overwritten while pending
                data = self.block()
                if self.put(sid, index, data) is None:
                    return
                written[index] = hashlib.sha256(data).digest()
        if rng.random() < 0.08:  # abandoned: stays pending, its blocks stay referenced
            with me.lock:
                me.uploads[sid] = {i: d.hex() for i, d in written.items()}
            return
        linear = hashlib.sha256(b"".join(written[i] for i in sorted(written))).digest()
        r, _ = self.call("CompleteSnapshot", self.ebs.complete_snapshot, expect, SnapshotId=sid,
                         ChangedBlocksCount=len(written), Checksum=b64(linear), ChecksumAlgorithm="SHA256",
                         ChecksumAggregationMethod="LINEAR")
        state = r and self.soak.wait_state("DescribeSnapshots[wait]", self.ec2.describe_snapshots,
                                           "Snapshot", sid, "completed")
        if state != "completed":
            if not parent:
                self.soak.stats.fail("strict", f"upload {sid} ended {state!r}")
            with me.lock:  # judged at the end by the state the server lists
                me.uploads[sid] = {i: d.hex() for i, d in written.items()}
            return
        content = dict(base)
        for i, d in written.items():
            if d.hex() == ZERO_HEX:
                content.pop(i, None)
            else:
                content[i] = d.hex()
        with me.lock:
            me.snapshots[sid] = content

    def volume_churn(self):
        me = self.me
        sid = self.pick("snapshots")
        if sid is None:
            return
        with me.lock:
            content = dict(me.snapshots.get(sid, {}))
        r, _ = self.call("CreateVolume", self.ec2.create_volume, "any", AvailabilityZone=AZ, SnapshotId=sid,
                         VolumeType="gp3")
        if r is None:
            return
        vid = r["VolumeId"]
        state = self.soak.wait_state("DescribeVolumes[wait]", self.ec2.describe_volumes, "Volume", vid, "available")
        if state != "available":
            self.soak.stats.fail("strict", f"volume {vid} from {sid} ended {state!r}")
            return
        with me.lock:
            me.volumes[vid] = content
        self.snapshot_volume(vid, content)
        if self.rng.random() < 0.5:
            self.delete_volume(vid)

    def snapshot_volume(self, vid, content):
        r, _ = self.call("CreateSnapshot", self.ec2.create_snapshot, "any", VolumeId=vid, Description="soak")
        if r is None:
            return None
        sid = r["SnapshotId"]
        state = self.soak.wait_state("DescribeSnapshots[wait]", self.ec2.describe_snapshots, "Snapshot", sid,
                                     "completed")
        if state != "completed":
            self.soak.stats.fail("strict", f"snapshot {sid} of {vid} ended {state!r}")
            return None
        with self.me.lock:
            self.me.snapshots[sid] = content
        return sid

    def delete_volume(self, vid=None):
        vid = vid or self.pick("volumes")
        if vid and self.call("DeleteVolume", self.ec2.delete_volume, "any", VolumeId=vid)[0] is not None:
            with self.me.lock:
                self.me.volumes.pop(vid, None)

    def delete_snapshot(self):
        with self.me.lock:
            used = set(self.me.images.values())
        sid = self.pick("snapshots", exclude=used)
        if sid and self.call("DeleteSnapshot", self.ec2.delete_snapshot, "any", SnapshotId=sid)[0] is not None:
            with self.me.lock:
                self.me.snapshots.pop(sid, None)

    def register_image(self):
        sid = self.pick("snapshots")
        if sid is None:
            return
        r, _ = self.call("RegisterImage", self.ec2.register_image, "any", Name=f"soak-{uuid.uuid4().hex[:12]}",
                         RootDeviceName="/dev/xvda", Architecture="x86_64", VirtualizationType="hvm",
                         BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": sid}}])
        if r is not None:
            with self.me.lock:
                self.me.images[r["ImageId"]] = sid

    def share_image(self):
        ami = self.pick("images")
        if ami is None:
            return
        grantee = {"UserId": self.other.id} if self.rng.random() < 0.7 else {"Group": "all"}
        verb = self.rng.choice(["Add", "Remove"])
        r, _ = self.call(f"ModifyImageAttribute[{verb}]", self.ec2.modify_image_attribute, "any", ImageId=ami,
                         LaunchPermission={verb: [grantee]})
        if r is not None:  # the other account looks at it (visible or not, never 5xx)
            self.call("DescribeImages[other]", self.other_ec2.describe_images, "any", ImageIds=[ami])

    def deregister_image(self):
        ami = self.pick("images")
        if ami and self.call("DeregisterImage", self.ec2.deregister_image, "any", ImageId=ami)[0] is not None:
            with self.me.lock:
                self.me.images.pop(ami, None)

    def probe_other(self):
        """The other account's private resources (or ids that never existed): always 4xx."""
        o, rng = self.other, self.rng
        with o.lock:
            sid = rng.choice(list(o.snapshots) or ["snap-0123456789abcdef0"])
            vid = rng.choice(list(o.volumes) or ["vol-0123456789abcdef0"])
            ami = rng.choice(list(o.images) or ["ami-0123456789abcdef0"])
        ec2 = self.ec2
        name, fn, kw = rng.choice([
            ("DescribeSnapshots[cross]", ec2.describe_snapshots, {"SnapshotIds": [sid]}),
            ("DescribeVolumes[cross]", ec2.describe_volumes, {"VolumeIds": [vid]}),
            ("DeleteSnapshot[cross]", ec2.delete_snapshot, {"SnapshotId": sid}),
            ("DeleteVolume[cross]", ec2.delete_volume, {"VolumeId": vid}),
            ("CreateVolume[cross]", ec2.create_volume, {"SnapshotId": sid, "AvailabilityZone": AZ}),
            ("DeregisterImage[cross]", ec2.deregister_image, {"ImageId": ami}),
            ("ModifyImageAttribute[cross]", ec2.modify_image_attribute,
             {"ImageId": ami, "LaunchPermission": {"Add": [{"Group": "all"}]}}),
            ("ListSnapshotBlocks[cross]", self.ebs.list_snapshot_blocks, {"SnapshotId": sid}),
        ])
        self.call(name, fn, "4xx", **kw)
        if rng.random() < 0.3:  # may be shared with us: anything but 5xx
            self.call("DescribeImages[cross]", ec2.describe_images, "any", ImageIds=[ami])

    def bad_request(self):
        ec2, ebs, rng = self.ec2, self.ebs, self.rng
        if rng.random() < 0.1:
            return self.soak.unsigned()
        data = rng.randbytes(BLOCK)
        name, fn, kw = rng.choice([
            ("CreateVolume[bad]", ec2.create_volume, {"AvailabilityZone": "us-east-1z", "Size": 1}),
            ("CreateVolume[bad]", ec2.create_volume, {"AvailabilityZone": AZ, "Size": 0}),
            ("DescribeImages[bad]", ec2.describe_images, {"ImageIds": ["ami-not!hex"]}),
            ("DeleteVolume[bad]", ec2.delete_volume, {"VolumeId": "vol-00000000000000000"}),
            ("RegisterImage[bad]", ec2.register_image, {"Name": "soak-bad", "BlockDeviceMappings": [
                {"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": "snap-00000000000000000"}}]}),
            ("ModifyImageAttribute[bad]", ec2.modify_image_attribute,
             {"ImageId": "ami-0123456789abcdef0", "LaunchPermission": {"Add": [{"UserId": "nobody"}]}}),
            ("StartSnapshot[bad]", ebs.start_snapshot, {"VolumeSize": 70000}),
            ("StartSnapshot[bad]", ebs.start_snapshot, {"VolumeSize": 1, "Timeout": 5}),
            ("PutSnapshotBlock[bad]", ebs.put_snapshot_block,
             {"SnapshotId": "snap-0123456789abcdef0", "BlockIndex": 0, "BlockData": data, "DataLength": BLOCK,
              "Checksum": b64(hashlib.sha256(b"not the data").digest()), "ChecksumAlgorithm": "SHA256"}),
            ("GetSnapshotBlock[bad]", ebs.get_snapshot_block,
             {"SnapshotId": self.pick("snapshots") or "snap-0123456789abcdef0", "BlockIndex": 0,
              "BlockToken": "AAAA"}),
        ])
        self.call(name, fn, "4xx", **kw)


# --- verification ------------------------------------------------------------------------------

def verify(soak: Soak):
    """Everything after the clients stop: catalog, read-back, shutdown, scrub, gc, fds, rss."""
    stats, local = soak.stats, threading.local()

    def clients(account):
        if not hasattr(local, "session"):
            local.session, local.clients = boto3.session.Session(), {}
        if account.name not in local.clients:
            local.clients[account.name] = (soak.client(local.session, "ec2", account),
                                           soak.client(local.session, "ebs", account))
        return local.clients[account.name]

    def read_back(account, sid, want):
        ec2, ebs = clients(account)
        got, kw = {}, {"SnapshotId": sid, "MaxResults": 1000}
        while True:
            page, _ = soak.call("verify:ListSnapshotBlocks", ebs.list_snapshot_blocks, **kw)
            if page is None:
                return stats.fail("bit-exact", f"{sid}: cannot list its blocks")
            for b in page["Blocks"]:
                r, _ = soak.call("verify:GetSnapshotBlock", read_block, ebs=ebs, SnapshotId=sid,
                                 BlockIndex=b["BlockIndex"], BlockToken=b["BlockToken"])
                got[b["BlockIndex"]] = r and r["Data"]
            if not page.get("NextToken"):
                break
            kw["NextToken"] = page["NextToken"]
        if got != want:
            diff = sorted(i for i in set(got) | set(want) if got.get(i) != want.get(i))
            stats.fail("bit-exact", f"{account.name} {sid}: blocks {diff[:10]} differ from what was acknowledged")

    tasks = []
    for a in soak.accounts:
        ec2, _ = clients(a)
        listed = {}
        for page in ec2.get_paginator("describe_snapshots").paginate(OwnerIds=["self"]):
            listed.update({s["SnapshotId"]: s["State"] for s in page["Snapshots"]})
        want = {s: "completed" for s in a.snapshots}
        for sid in a.uploads:  # abandoned: pending; a failed CompleteSnapshot: pending or error
            want[sid] = listed.get(sid) if listed.get(sid) in ("pending", "error") else "pending"
            if want[sid] == "error":
                a.uploads[sid] = {}  # its blocks are no longer referenced
        if listed != want:
            diff = {s: (listed.get(s), want.get(s)) for s in set(listed) | set(want) if listed.get(s) != want.get(s)}
            stats.fail("catalog", f"{a.name} snapshots (server, expected) differ: {dict(list(diff.items())[:10])}")
        volumes = {v["VolumeId"] for v in ec2.describe_volumes()["Volumes"]}
        if volumes != set(a.volumes):
            stats.fail("catalog", f"{a.name} volumes: server {sorted(volumes)} != expected {sorted(a.volumes)}")
        images = {i["ImageId"]: i["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]
                  for i in ec2.describe_images(Owners=["self"])["Images"]}
        if images != a.images:
            stats.fail("catalog", f"{a.name} images: server {images} != expected {a.images}")
        for ami, sid in images.items():
            if listed.get(sid) != "completed":
                stats.fail("catalog", f"{a.name} {ami} uses {sid}, which is {listed.get(sid)}")
        for vid, content in a.volumes.items():  # a fresh snapshot of each live volume reads back too
            r, _ = soak.call("verify:CreateSnapshot", ec2.create_snapshot, VolumeId=vid)
            if r and soak.wait_state("verify:DescribeSnapshots", ec2.describe_snapshots, "Snapshot",
                                     r["SnapshotId"], "completed") == "completed":
                a.snapshots[r["SnapshotId"]] = content
            else:
                stats.fail("bit-exact", f"{a.name}: no snapshot of {vid}")
        tasks += [(a, sid, content) for sid, content in a.snapshots.items()]
    with ThreadPoolExecutor(max(2, soak.args.clients // 2)) as pool:
        for f in [pool.submit(read_back, *t) for t in tasks]:
            f.result()
    soak.verified_snapshots = len(tasks)

    soak.stopping = True
    soak.proc.send_signal(signal.SIGTERM)
    try:
        rc = soak.proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        soak.proc.kill()
        rc = soak.proc.wait()
    if rc != 0:
        stats.fail("sigterm", f"openami exited {rc} on SIGTERM")
    blocks_dirs = list(soak.data.glob("regions/*/objects/blocks"))
    if soak.args.inject_corruption:
        victim = sorted(p for d in blocks_dirs for p in d.glob("*/*"))[0]
        raw = bytearray(victim.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        victim.write_bytes(bytes(raw))
    scrub = soak.openami("store", "scrub", "--json", check=False)
    if scrub.returncode != 0:
        unclean = [line for line in scrub.stdout.splitlines() if '"clean":true' not in line]
        stats.fail("scrub", f"store scrub exited {scrub.returncode}: {' '.join(unclean)[-1500:]}{scrub.stderr[-500:]}")

    in_manifests, in_uploads = set(), set()
    for a in soak.accounts:
        for content in [*a.snapshots.values(), *a.volumes.values()]:
            in_manifests |= set(content.values())
        for content in a.uploads.values():
            in_uploads |= set(content.values())
    expected = (in_manifests | in_uploads) - {ZERO_HEX}
    upload_only = len(in_uploads - in_manifests - {ZERO_HEX})
    soak.expected_blocks = len(expected)
    gc = soak.openami("store", "gc", "--json", check=False)
    if gc.returncode != 0:
        return stats.fail("gc-exact", f"store gc exited {gc.returncode}: {gc.stderr[-1500:]}")
    soak.gc_freed = sum(json.loads(line)["blocks_deleted"] for line in gc.stdout.splitlines())
    on_disk = {p.name for d in blocks_dirs for p in d.glob("*/*")}
    soak.blocks_on_disk = len(on_disk)
    if on_disk != expected:
        stats.fail("gc-exact", f"{len(on_disk - expected)} unreferenced blocks left, "
                               f"{len(expected - on_disk)} referenced blocks missing")
    for line in soak.openami("store", "stats", "--json").stdout.splitlines():
        s = json.loads(line)
        # Blocks only pending uploads hold are counted apart (`upload_blocks`); after gc none is unreferenced.
        got = (s["stored_blocks"], s["upload_blocks"], s["unreferenced_blocks"])
        if s["region"] == REGION and got != (len(expected), upload_only, 0):
            stats.fail("gc-exact", f"store stats: {got[0]} blocks, {got[1]} held by uploads, {got[2]} "
                                   f"unreferenced (expected {len(expected)}, {upload_only}, 0)")
    again = soak.openami("store", "gc", "--json")
    if any(json.loads(line)["blocks_deleted"] for line in again.stdout.splitlines()):
        stats.fail("gc-exact", f"a second gc freed blocks: {again.stdout}")


def read_block(ebs, **kw):
    r = ebs.get_snapshot_block(**kw)
    data = r["BlockData"].read()
    r["Data"] = hashlib.sha256(data).hexdigest() if r["Checksum"] == b64(hashlib.sha256(data).digest()) else "bad-checksum"
    return r



def report(soak: Soak) -> bool:
    st, args = soak.stats, soak.args
    print(f"openami soak: {args.clients} clients over 2 accounts, {args.duration:.0f} s"
          f"{f' or {args.max_ops} calls' if args.max_ops else ''}, seed {args.seed}, gc every {args.gc_interval} s")
    print(f"ops {soak.run_calls} (API calls) in {soak.run_seconds:.1f} s: {soak.run_calls / soak.run_seconds:.1f} ops/s "
          f"(+{st.calls - soak.run_calls} to verify)")
    print(f"\n{'action':34} {'count':>7} {'4xx':>6} {'5xx':>5} {'p50 ms':>8} {'p99 ms':>8}")
    for action in sorted(st.latency):
        lat, c = sorted(st.latency[action]), st.status[action]
        print(f"{action:34} {len(lat):7} {c['4xx']:6} {c['5xx']:5} {percentile(lat, .5) * 1e3:8.1f} "
              f"{percentile(lat, .99) * 1e3:8.1f}")
    live = {a.name: (len(a.snapshots), len(a.volumes), len(a.images), len(a.uploads)) for a in soak.accounts}
    print(f"\nlive at the end (snapshots, volumes, images, pending uploads): {live}")
    print(f"snapshots read back: {getattr(soak, 'verified_snapshots', 0)}; blocks on disk after gc: "
          f"{getattr(soak, 'blocks_on_disk', '?')} (referenced: {getattr(soak, 'expected_blocks', '?')}, "
          f"freed by the offline gc: {getattr(soak, 'gc_freed', '?')})")
    print(f"peak RSS {soak.peak_rss:.1f} MiB (limit {args.rss_limit_mib}); open fds: peak {max((s[3] for s in soak.samples), default=0)}, "
          f"after warm-up {soak.fds_warm}, at the end {soak.fds_end} (slack {args.fd_slack})\n")
    for inv in INVARIANTS:
        fails = st.failures.get(inv, [])
        print(f"{'FAIL' if fails else 'PASS'} {inv}" + (f" ({len(fails)})" if fails else ""))
        for message in fails[:5]:
            print("     " + message.strip().replace("\n", "\n     "))
    ok = not any(st.failures.values())
    print(f"\nsoak {'PASSED' if ok else 'FAILED'}")
    return ok


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--duration", type=float, default=600, help="seconds of client traffic (default 600)")
    p.add_argument("--clients", type=int, default=8, help="client threads, half per account (default 8)")
    p.add_argument("--max-ops", type=int, default=0, help="stop after this many calls (default: no limit)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--bin", default=os.environ.get("OPENAMI_BIN") or str(ROOT / "target/release/openami"))
    p.add_argument("--keep", action="store_true", help="keep the data dir and server log")
    p.add_argument("--rss-limit-mib", type=float, default=400)
    p.add_argument("--fd-slack", type=int, default=64)
    p.add_argument("--gc-interval", type=int, default=5, help="the server's --gc-interval (default 5)")
    p.add_argument("--inject-corruption", action="store_true", help="self-test: corrupt a block before scrub")
    args = p.parse_args(argv)
    if not Path(args.bin).exists():
        sys.exit(f"{args.bin} not found: cargo build --release (or give --bin)")
    work = Path(tempfile.mkdtemp(prefix="openami-soak-"))
    soak = Soak(args)
    soak.warmup = min(30.0, args.duration * 0.15)
    try:
        soak.start_server(work)
        soak.run()
    finally:
        if soak.__dict__.get("proc") and soak.proc.poll() is None:
            soak.proc.kill()
            soak.proc.wait()
    ok = report(soak)
    if not ok:
        print(f"server log (tail):\n{soak.log_path.read_text(errors='replace')[-3000:]}")
    if args.keep or not ok:
        print(f"kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
