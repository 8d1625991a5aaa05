#!/usr/bin/env python3
"""Benchmark: instance boot and root-volume creation, openami vs plain qemu-system-x86_64, in one run.

One release `openami serve --accel tcg` on a temp data dir. The test guest
(scripts/build-test-guest: cloud kernel + busybox initramfs on a 64 MiB disk) is uploaded with
`openami snapshot upload` and registered as an EBS-backed image, as users do. Measured:

- boot: from RunInstances returning to the first non-empty GetConsoleOutput and to the first
  `openami-guest: booted` line (polled every 50 ms), for 1 instance and for 4 instances from one
  RunInstances (MinCount=MaxCount=4: per instance and the slowest); median of --repeats runs. The
  user data `#!/bin/sh\\ntrue\\n` powers the guest off at once; every instance is terminated.
- root volumes: CreateVolume from the guest snapshot with Size 1 and 100 GiB (the call, and until
  DescribeVolumes says `available`), median of --volume-samples each; RunInstances call latency for
  images registered with root VolumeSize 1 and 100. Both should be flat (O(1) in the size).
- baseline: qemu-system-x86_64 booting the same guest.raw through a qcow2 overlay (`-machine pc -cpu max
  -accel tcg -m 512 -nodefaults -display none -serial file:LOG`, virtio disk), from spawn to the
  first `openami-guest: booted` in LOG (polled every 50 ms); killed afterwards.

The default instance type t2.nano (1 vCPU, 512 MiB) matches the baseline's QEMU defaults.

Usage: python3 bench/instances.py [--openami target/release/openami] [--accel tcg] [--repeats 3]
Needs: a release build of openami (built if missing), boto3, qemu-system-x86_64, qemu-img and the
test guest's build dependencies (scripts/install-vm-deps).
"""

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from openami_server import REGION, OpenamiServer

ROOT = Path(__file__).resolve().parents[1]
ZONE = "us-east-1a"
BOOTED = "openami-guest: booted"
POLL = 0.05
USER_DATA = "#!/bin/sh\ntrue\n"


def guest_uptime(console: str) -> float:
    """The guest's own uptime on its `booted` line (kernel start to /init's echo): the rest of the
    time to that line is the host's (QEMU start, firmware, openami's launch)."""
    m = re.search(BOOTED + r" \S+ uptime=([\d.]+)s", console)
    return float(m.group(1)) if m else float("nan")


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def qemu_pids(marker: str) -> list:
    """Pids of qemu-system processes whose command line contains `marker`."""
    pids = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            argv = (p / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and b"qemu-system" in Path(argv[0].decode(errors="replace")).name.encode() \
                and any(marker.encode() in a for a in argv):
            pids.append(int(p.name))
    return pids


def qemu_cmdline(marker: str) -> list:
    for pid in qemu_pids(marker):
        try:
            return [a.decode(errors="replace") for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")]
        except OSError:
            pass
    return []


class Openami(OpenamiServer):
    def __init__(self, binary: Path, work: Path, accel: str):
        super().__init__(binary, work, ["--accel", accel], retries=1, pool=16)

    def upload(self, path: Path) -> str:
        out = subprocess.run([str(self.binary), "snapshot", "upload", str(path), "--endpoint", self.endpoint,
                              "--region", REGION, "--no-progress"], env=self.env(), capture_output=True, text=True,
                             timeout=600)
        if out.returncode != 0:
            sys.exit(f"openami snapshot upload failed: {out.stderr[-2000:]}")
        snap = out.stdout.strip()
        deadline = time.time() + 120
        while self.ec2.describe_snapshots(SnapshotIds=[snap])["Snapshots"][0]["State"] != "completed":
            if time.time() > deadline:
                sys.exit(f"{snap} did not complete")
            time.sleep(0.1)
        return snap


class Bench:
    def __init__(self, server: Openami, instance_type: str):
        self.s = server
        self.c = server.ec2
        self.type = instance_type
        self.launched = []  # every instance id, for the final cleanup
        self.uptimes = {}  # instance id -> guest uptime on its booted line

    def register(self, snap: str, name: str, size: int) -> str:
        return self.c.register_image(
            Name=name, Architecture="x86_64", RootDeviceName="/dev/xvda", VirtualizationType="hvm",
            BootMode="legacy-bios",
            BlockDeviceMappings=[{"DeviceName": "/dev/xvda",
                                  "Ebs": {"SnapshotId": snap, "VolumeSize": size, "DeleteOnTermination": True}}],
        )["ImageId"]

    def run(self, image: str, count: int):
        """RunInstances; returns (call seconds, monotonic time it returned, instance ids)."""
        t0 = time.perf_counter()
        res = self.c.run_instances(ImageId=image, MinCount=count, MaxCount=count, InstanceType=self.type,
                                   UserData=USER_DATA)
        t1 = time.perf_counter()
        ids = [i["InstanceId"] for i in res["Instances"]]
        self.launched += ids
        return t1 - t0, t1, ids

    def states(self, ids):
        out = {}
        for r in self.c.describe_instances(InstanceIds=ids)["Reservations"]:
            for i in r["Instances"]:
                out[i["InstanceId"]] = i["State"]["Name"]
        return out

    def wait_states(self, ids, wanted, timeout=300):
        deadline = time.time() + timeout
        while True:
            st = self.states(ids)
            if all(v in wanted for v in st.values()):
                return st
            if time.time() > deadline:
                sys.exit(f"instances never reached {wanted}: {st}")
            time.sleep(0.2)

    def terminate(self, ids):
        self.c.terminate_instances(InstanceIds=ids)
        self.wait_states(ids, {"terminated"})

    def boot(self, image: str, count: int, timeout=240):
        """Launches `count` instances at once; per instance (first output s, booted s) after the call returned."""
        call, t_ret, ids = self.run(image, count)
        first, booted = {}, {}
        deadline = time.time() + timeout
        while len(booted) < len(ids):
            for iid in ids:
                if iid in booted:
                    continue
                out = self.c.get_console_output(InstanceId=iid).get("Output", "") or ""
                now = time.perf_counter() - t_ret
                if out and iid not in first:
                    first[iid] = now
                if BOOTED in out:
                    booted[iid] = now
                    self.uptimes[iid] = guest_uptime(out)
            if time.time() > deadline:
                sys.exit(f"no '{BOOTED}' within {timeout} s: {sorted(set(ids) - set(booted))}\n"
                         f"{self.s.log_path.read_text()[-2000:]}")
            time.sleep(POLL)
        self.wait_states(ids, {"stopped", "terminated"})  # user data `true`: the guests power off
        self.terminate(ids)
        return call, [(first[i], booted[i], self.uptimes[i]) for i in ids]

    def volume_create(self, snap: str, size: int):
        """CreateVolume call seconds and seconds until `available`; deletes the volume afterwards."""
        t0 = time.perf_counter()
        vol = self.c.create_volume(SnapshotId=snap, Size=size, AvailabilityZone=ZONE)["VolumeId"]
        t_call = time.perf_counter() - t0
        while True:
            v = self.c.describe_volumes(VolumeIds=[vol])["Volumes"][0]
            if v["State"] == "available":
                break
            if v["State"] in ("error", "deleting", "deleted"):
                sys.exit(f"{vol} went to {v['State']}")
            if time.perf_counter() - t0 > 120:
                sys.exit(f"{vol} never became available")
            time.sleep(0.005)
        t_avail = time.perf_counter() - t0
        if v["Size"] != size:
            sys.exit(f"{vol} has size {v['Size']}, asked for {size}")
        self.c.delete_volume(VolumeId=vol)
        return t_call, t_avail


def baseline_boot(guest: Path, work: Path, accel: str, i: int, timeout=120):
    """qemu-system-x86_64 on a qcow2 overlay of guest.raw: (first output s, booted s, guest uptime s) after spawn."""
    overlay = work / f"baseline-{i}.qcow2"
    log = work / f"baseline-{i}.log"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(guest), "-F", "raw", str(overlay)],
                   check=True)
    argv = ["qemu-system-x86_64", "-machine", "pc", "-cpu", "max", "-accel", accel, "-m", "512", "-nodefaults",
            "-display", "none", "-serial", f"file:{log}",
            "-drive", f"file={overlay},if=virtio,format=qcow2"]
    if accel == "kvm":
        argv[argv.index("max")] = "host"
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = None
    try:
        while True:
            text = log.read_text(errors="replace") if log.exists() else ""
            now = time.perf_counter() - t0
            if text and first is None:
                first = now
            if BOOTED in text:
                return first, now, guest_uptime(text)
            if proc.poll() is not None:
                sys.exit(f"baseline qemu exited ({proc.returncode}) before booting:\n{text[-2000:]}")
            if now > timeout:
                sys.exit(f"baseline qemu: no '{BOOTED}' within {timeout} s")
            time.sleep(POLL)
    finally:
        proc.kill()
        proc.wait()
        overlay.unlink(missing_ok=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--openami", type=Path, default=ROOT / "target" / "release" / "openami")
    ap.add_argument("--accel", default="tcg", choices=["tcg", "kvm", "auto"], help="openami serve --accel (default tcg)")
    ap.add_argument("--instance-type", default="t2.nano", help="default t2.nano: 1 vCPU, 512 MiB like the baseline")
    ap.add_argument("--repeats", type=int, default=3, help="boot runs per case (median)")
    ap.add_argument("--volume-samples", type=int, default=20, help="CreateVolume calls per size (median)")
    ap.add_argument("--launch-samples", type=int, default=5, help="RunInstances calls per root size (median)")
    ap.add_argument("--guest-dir", type=Path,
                    default=Path(os.environ.get("OPENAMI_GUEST_DIR", Path.home() / ".cache/openami-ci/test-guest")))
    args = ap.parse_args()
    if not args.openami.exists():
        subprocess.run(["cargo", "build", "--release", "--bin", "openami"], cwd=ROOT, check=True)
    for tool in ("qemu-system-x86_64", "qemu-img"):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found (scripts/install-vm-deps)")
    subprocess.run([str(ROOT / "scripts" / "build-test-guest"), str(args.guest_dir)], check=True,
                   stdout=subprocess.DEVNULL)
    guest = args.guest_dir / "guest.raw"
    kvm = os.path.exists("/dev/kvm")
    print(f"/dev/kvm {'exists' if kvm else 'does not exist'}"
          f"{' (read-write for us)' if kvm and os.access('/dev/kvm', os.R_OK | os.W_OK) else ''}; "
          f"openami serve --accel {args.accel}; instance type {args.instance_type}", file=sys.stderr)
    base_accel = "kvm" if args.accel == "kvm" else "tcg"

    work = Path(tempfile.mkdtemp(prefix="openami-bench-vm-"))
    server = bench = None
    try:
        server = Openami(args.openami, work, args.accel)
        bench = Bench(server, args.instance_type)
        snap = server.upload(guest)
        img1 = bench.register(snap, "bench-guest-1g", 1)
        img100 = bench.register(snap, "bench-guest-100g", 100)

        # Boot, 1 instance, alternating with the baseline (so both see the same background load).
        one_call, one_first, one_booted, one_up = [], [], [], []
        base = []
        cmdline = []
        for r in range(args.repeats):
            base.append(baseline_boot(guest, work, base_accel, r))
            print(f"baseline qemu: run {r + 1}: first output {base[-1][0]:.2f} s, booted {base[-1][1]:.2f} s",
                  file=sys.stderr)
            call, per = bench.boot(img1, 1)
            one_call.append(call)
            one_first.append(per[0][0])
            one_booted.append(per[0][1])
            one_up.append(per[0][2])
            print(f"1 instance: run {r + 1}: call {call:.3f} s, first output {per[0][0]:.2f} s, "
                  f"booted {per[0][1]:.2f} s", file=sys.stderr)
        # Boot, 4 instances from one RunInstances.
        four_call, four_first, four_booted, four_max, four_up = [], [], [], [], []
        for r in range(args.repeats):
            call, per = bench.boot(img1, 4)
            four_call.append(call)
            four_first += [p[0] for p in per]
            four_booted += [p[1] for p in per]
            four_up += [p[2] for p in per]
            four_max.append(max(p[1] for p in per))
            print(f"4 instances: run {r + 1}: call {call:.3f} s, booted "
                  f"{', '.join(f'{p[1]:.2f}' for p in per)} s", file=sys.stderr)

        # QEMU command line openami uses (for the report): launch one idle instance briefly.
        _, _, ids = bench.run(img1, 1)
        deadline = time.time() + 30
        while not cmdline and time.time() < deadline:
            cmdline = qemu_cmdline(ids[0])
            time.sleep(0.05)
        bench.terminate(ids)

        # Root volumes: CreateVolume and RunInstances, 1 vs 100 GiB, interleaved.
        vol = {1: [], 100: []}
        for _ in range(args.volume_samples):
            for size in (1, 100):
                vol[size].append(bench.volume_create(snap, size))
        launch = {1: [], 100: []}
        for _ in range(args.launch_samples):
            for size, img in ((1, img1), (100, img100)):
                call, _, ids = bench.run(img, 1)
                launch[size].append(call)
                if len(launch[size]) == 1:  # the root volume really has the mapping's size
                    inst = bench.c.describe_instances(InstanceIds=ids)["Reservations"][0]["Instances"][0]
                    root = inst["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]
                    got = bench.c.describe_volumes(VolumeIds=[root])["Volumes"][0]["Size"]
                    if got != size:
                        sys.exit(f"root volume {root} of {ids[0]} has {got} GiB, the image maps {size}")
                bench.terminate(ids)

        b_first = median([b[0] for b in base])
        b_boot = median([b[1] for b in base])
        b_up = median([b[2] for b in base])
        print()
        smp = cmdline[cmdline.index("-smp") + 1] if "-smp" in cmdline else "?"
        mem = cmdline[cmdline.index("-m") + 1] if "-m" in cmdline else "?"
        print(f"Boot to '{BOOTED}' (median of {args.repeats}; openami from RunInstances returning, baseline from "
              f"spawning qemu; accel {args.accel}/{base_accel}, /dev/kvm {'exists' if kvm else 'absent'}; "
              f"openami's qemu: -smp {smp} -m {mem})")
        print(f"{'case':<44} {'first output s':>14} {'booted s':>9} {'ratio':>7} {'guest uptime s':>15}")
        nan = float("nan")
        rows = [
            ("baseline qemu-system-x86_64 (qcow2 overlay)", b_first, b_boot, b_up),
            ("openami, 1 instance", median(one_first), median(one_booted), median(one_up)),
            ("openami, 4 at once: per instance", median(four_first), median(four_booted), median(four_up)),
            ("openami, 4 at once: slowest", nan, median(four_max), nan),
        ]

        def cell(x, width):
            return f"{x:>{width}.2f}" if x == x else f"{'-':>{width}}"
        for name, f, b, up in rows:
            print(f"{name:<44} {cell(f, 14)} {b:>9.2f} {b / b_boot:>6.2f}x {cell(up, 15)}")
        print("(guest uptime: the kernel's own clock on the booted line; booted minus uptime is QEMU start, "
              "firmware and, for openami, the launch)")
        print(f"RunInstances call: 1 instance {median(one_call) * 1000:.0f} ms, 4 instances "
              f"{median(four_call) * 1000:.0f} ms (median)")
        print()
        print(f"Root volume from the guest snapshot (median of {args.volume_samples} CreateVolume, "
              f"{args.launch_samples} RunInstances)")
        print(f"{'operation':<44} {'1 GiB ms':>9} {'100 GiB ms':>11} {'100/1':>7}")
        table = [
            ("CreateVolume call", [c for c, _ in vol[1]], [c for c, _ in vol[100]]),
            ("CreateVolume until available", [a for _, a in vol[1]], [a for _, a in vol[100]]),
            ("RunInstances call (root VolumeSize)", launch[1], launch[100]),
        ]
        ratios = {}
        for name, a, b in table:
            ma, mb = median(a) * 1000, median(b) * 1000
            ratios[name] = mb / ma
            print(f"{name:<44} {ma:>9.1f} {mb:>11.1f} {mb / ma:>6.2f}x")
        print()
        print(f"load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (other work skews timings)")
        print(f"summary: boot 1 instance {median(one_booted) / b_boot:.2f}x qemu baseline "
              f"({median(one_booted):.2f} s vs {b_boot:.2f} s), 4 at once slowest {median(four_max) / b_boot:.2f}x; "
              f"CreateVolume 100/1 GiB {ratios['CreateVolume call']:.2f}x, RunInstances 100/1 GiB "
              f"{ratios['RunInstances call (root VolumeSize)']:.2f}x")
    finally:
        if bench and bench.launched:
            try:
                st = bench.states(bench.launched)
                live = [i for i, s in st.items() if s != "terminated"]
                if live:
                    bench.terminate(live)
            except Exception as e:  # keep cleaning up
                print(f"cleanup: terminating instances failed: {e}", file=sys.stderr)
        if server:
            server.stop()
        # Nothing of ours may survive: openami's machines carry their instance id, the baseline its overlay path.
        leftovers = [p for iid in (bench.launched if bench else []) for p in qemu_pids(iid)] + qemu_pids(str(work))
        for pid in set(leftovers):
            print(f"cleanup: killing leftover qemu pid {pid}", file=sys.stderr)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
