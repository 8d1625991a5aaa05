#!/usr/bin/env python3
"""Benchmark: boot to SSH of the Debian 12 Quick Start image, openami vs plain QEMU, in one run.

openami: one release `openami serve --accel tcg` on a temp data dir; `openami quickstart` publishes
the cached Debian image (built by scripts/build-debian-image into ~/.cache/openami/images when
missing); a key pair and a security group open to port 22; RunInstances (t3.small: 2 vCPUs,
2 GiB); time from the RunInstances call to the first successful `ssh debian@<public ip> true`.

baseline: qemu-system-x86_64 booting the same raw image through a qcow2 overlay with the same
machine (`-machine pc -accel tcg -cpu max -smp 2 -m 2048`, virtio disk and NIC) and the same
isolated user-mode network (`restrict=on`, `net=168.0.0.0/5`, the same private address by DHCP,
a host forward of port 22 on a loopback address). cloud-init gets the key from a NoCloud seed
(a FAT disk labelled `cidata`, made with mtools) instead of the metadata service; time from spawn
to the first successful ssh.

Usage: python3 bench/debian_ssh.py [--openami target/release/openami] [--repeats 1]
Needs: root (the image build, port 22), qemu-system-x86_64, qemu-img, mtools, dosfstools, ssh.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from openami_server import OpenamiServer

ROOT = Path(__file__).resolve().parents[1]
SSH_OPTS = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
            "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR"]


def wait_ssh(key: Path, ip: str, port: int, start: float, timeout: float = 900) -> float:
    while time.time() - start < timeout:
        r = subprocess.run(["ssh", "-i", str(key), "-p", str(port), *SSH_OPTS, f"debian@{ip}", "true"],
                           capture_output=True, timeout=60)
        if r.returncode == 0:
            return time.time() - start
        time.sleep(1)
    raise RuntimeError(f"no ssh to {ip}:{port} within {timeout} s")


def openami_boot(server: OpenamiServer, image: str, work: Path) -> float:
    ec2 = server.client("ec2")
    name = f"bench-{int(time.time() * 1000)}"
    key = ec2.create_key_pair(KeyName=name, KeyType="ed25519")
    pem = work / f"{name}.pem"
    pem.write_text(key["KeyMaterial"])
    pem.chmod(0o600)
    group = ec2.create_security_group(GroupName=name, Description="ssh")["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    start = time.time()
    iid = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="t3.small",
                            KeyName=name, SecurityGroupIds=[group])["Instances"][0]["InstanceId"]
    ip = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]["PublicIpAddress"]
    try:
        return wait_ssh(pem, ip, 22, start)
    finally:
        ec2.terminate_instances(InstanceIds=[iid])


def seed_disk(work: Path, pubkey: str) -> Path:
    """A NoCloud seed: a FAT filesystem labelled cidata with meta-data and user-data."""
    seed = work / "seed.img"
    subprocess.run(["truncate", "-s", "2M", str(seed)], check=True)
    subprocess.run(["mkfs.fat", "-n", "CIDATA", str(seed)], check=True, capture_output=True)
    (work / "meta-data").write_text("instance-id: i-0bench0000000000\nlocal-hostname: ip-172-31-0-4\n")
    (work / "user-data").write_text(f"#cloud-config\nssh_authorized_keys:\n  - {pubkey}\n")
    env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
    for f in ("meta-data", "user-data"):
        subprocess.run(["mcopy", "-i", str(seed), str(work / f), f"::/{f}"], check=True, env=env)
    return seed


def baseline_boot(raw: Path, work: Path) -> float:
    key = work / "base"
    if not key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    seed = seed_disk(work, (work / "base.pub").read_text().strip())
    overlay = work / "overlay.qcow2"
    overlay.unlink(missing_ok=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(raw), "-F", "raw", str(overlay)],
                   check=True)
    ip = "127.100.255.254"
    start = time.time()
    qemu = subprocess.Popen(
        ["qemu-system-x86_64", "-machine", "pc", "-accel", "tcg", "-cpu", "max", "-smp", "2", "-m", "2048",
         "-nodefaults", "-display", "none", "-serial", f"file:{work / 'console.log'}",
         "-drive", f"file={overlay},if=virtio,format=qcow2",
         "-drive", f"file={seed},if=virtio,format=raw",
         "-netdev", "user,id=n0,ipv6=off,restrict=on,net=168.0.0.0/5,host=172.31.0.1,dns=172.31.0.2,"
                    f"dhcpstart=172.31.0.4,hostfwd=tcp:{ip}:22-:22",
         "-device", "virtio-net-pci,netdev=n0,mac=02:00:00:be:4c:01"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        return wait_ssh(key, ip, 22, start)
    finally:
        qemu.kill()
        qemu.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--openami", type=Path, default=ROOT / "target" / "release" / "openami")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--image-dir", type=Path, default=Path.home() / ".cache" / "openami" / "images")
    args = ap.parse_args()
    if not args.openami.exists():
        subprocess.run(["cargo", "build", "--release", "--bin", "openami"], cwd=ROOT, check=True)
    with tempfile.TemporaryDirectory(prefix="openami-bench-") as tmp:
        work = Path(tmp)
        server = OpenamiServer(args.openami, work, extra_args=["--accel", "tcg"])
        try:
            out = subprocess.run([str(args.openami), "quickstart", "--data-dir", str(server.data),
                                  "--endpoint", server.endpoint, "--image-dir", str(args.image_dir),
                                  "--no-progress"], capture_output=True, text=True, check=True)
            image = json.loads(out.stdout)["Images"][0]["ImageId"]
            ours = [openami_boot(server, image, work) for _ in range(args.repeats)]
        finally:
            server.stop()
        base = [baseline_boot(args.image_dir / "debian-12-amd64.raw", work) for _ in range(args.repeats)]
    o, b = statistics.median(ours), statistics.median(base)
    print(f"{'case':<44}{'openami':>10}{'plain QEMU':>12}{'ratio':>8}")
    print(f"{'Debian 12 boot to ssh (median of ' + str(args.repeats) + ')':<44}{o:>9.1f}s{b:>11.1f}s{o / b:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
