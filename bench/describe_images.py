#!/usr/bin/env python3
"""Benchmark: DescribeImages over 10,000 images, openami vs moto_server, in one run, and
openami's memory with those images and 50 volumes.

Both servers get the same images through the public API (a volume, a snapshot, then
RegisterImage N times with boto3); openami also gets an `amazon` Quick Start catalog
(`openami catalog import`, --catalog images) and --volumes volumes. Each query is a SigV4
header-signed POST, exactly as boto3 sends it (openami verifies the signature on every
request; moto routes on it), replayed by `wrk` (a Lua script sets method, body and
headers) on loopback; requests per second and p99 latency come from wrk's latency
histogram.

It prints two tables: openami's query kinds against its exact-name lookup measured in the
same run (issue 12: a wildcard name filter at 10,000 images must keep p99 < 5 ms), with
the server's VmRSS / VmHWM after loading and after the query load (target: < 150 MiB);
then openami against moto (unless --no-moto).

Usage: python3 bench/describe_images.py [--openami PATH] [--images 10000] [--volumes 50]
       [--catalog 100] [--duration 10] [--connections 8] [--no-moto]
Needs: a release build of openami (built if missing), moto[server] (unless --no-moto),
boto3, wrk.
"""

import argparse
import concurrent.futures
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from openami_server import OpenamiServer, free_port

ROOT = Path(__file__).resolve().parents[1]
REGION = "us-east-1"


def wait_http(url, proc, what):
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{what} exited during startup")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return  # answering, even if with an error
        except OSError:
            time.sleep(0.1)
    sys.exit(f"{what} did not start")


AMAZON = "137112412989"
P99_TARGET_MS = 5.0
RSS_TARGET_MIB = 150.0


def default_binary():
    target = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
    return target / "release" / "openami"


def start_openami(binary, work):
    if not binary.exists():
        subprocess.run(["cargo", "build", "--release", "--locked", "--bin", "openami"], cwd=ROOT, check=True)
    server = OpenamiServer(binary, work)
    return server, (server.proc, server.endpoint, server.creds["AccessKeyId"], server.creds["SecretAccessKey"])


def memory_mib(pid):
    """(VmRSS, VmHWM) of a process in MiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


def import_catalog(server, n, work):
    """`openami catalog import` of n public Quick Start-like images of `amazon` (ids,
    names and snapshots as `aws ec2 describe-images --owners amazon` prints them)."""
    images = []
    for i in range(n):
        name = f"al2023-ami-2023.{i // 10}.{20240000 + i}.0-kernel-6.1-{'x86_64' if i % 2 else 'arm64'}"
        images.append({
            "ImageId": f"ami-0{i:016x}", "Name": name, "OwnerId": AMAZON, "ImageOwnerAlias": "amazon",
            "Public": True, "CreationDate": "2024-12-12T20:35:27.000Z", "ImageLocation": f"amazon/{name}",
            "Architecture": "x86_64" if i % 2 else "arm64", "RootDeviceName": "/dev/xvda",
            "RootDeviceType": "ebs", "VirtualizationType": "hvm", "EnaSupport": True,
            "Description": f"Amazon Linux 2023 AMI {i}",
            "BlockDeviceMappings": [{"DeviceName": "/dev/xvda", "Ebs": {
                "DeleteOnTermination": True, "SnapshotId": f"snap-0{i:016x}", "VolumeSize": 8,
                "VolumeType": "gp3", "Encrypted": False}}],
        })
    path = work / "amazon-catalog.json"
    path.write_text(json.dumps({"Images": images}))
    out = subprocess.run([str(server.binary), "catalog", "import", "--data-dir", str(server.data), str(path)],
                         check=True, capture_output=True, text=True)
    summary = json.loads(out.stdout)
    assert len(summary["Imported"]) == n and not summary["Errors"], summary


def start_moto():
    port = free_port()
    exe = shutil.which("moto_server")
    if not exe:
        sys.exit("moto_server not found: pip install 'moto[server]'")
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    wait_http(endpoint + "/", proc, "moto_server")
    return proc, endpoint, "AKIAMOTOBENCH0000000", "moto-secret-key-000000000000000000000000"


def client(endpoint, key, secret):
    return boto3.client("ec2", endpoint_url=endpoint, region_name=REGION, aws_access_key_id=key,
                        aws_secret_access_key=secret, config=Config(retries={"max_attempts": 3},
                                                                    max_pool_connections=16))


def populate(c, n, volumes=1):
    vols = [c.create_volume(AvailabilityZone=REGION + "a", Size=1)["VolumeId"] for _ in range(max(volumes, 1))]
    snap = c.create_snapshot(VolumeId=vols[0])["SnapshotId"]
    c.get_waiter("snapshot_completed").wait(SnapshotIds=[snap], WaiterConfig={"Delay": 1, "MaxAttempts": 60})

    def register(i):
        return c.register_image(
            Name=f"bench-image-{i:05d}", Architecture="x86_64" if i % 2 else "arm64",
            RootDeviceName="/dev/xvda", VirtualizationType="hvm",
            BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": snap}}])["ImageId"]

    started = time.time()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(register, range(n)))
    return ids, time.time() - started


def signed_post(endpoint, key, secret, params):
    """(body, headers) of a DescribeImages POST signed now (valid for 15 minutes)."""
    body = urllib.parse.urlencode({"Action": "DescribeImages", "Version": "2016-11-15", **params})
    req = AWSRequest(method="POST", url=endpoint + "/", data=body,
                     headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    SigV4Auth(Credentials(key, secret), "ec2", REGION).add_auth(req)
    return body, dict(req.headers.items())


def send(endpoint, body, headers):
    req = urllib.request.Request(endpoint + "/", data=body.encode(), headers=headers, method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.read().decode()


def lua_string(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def wrk_stats(endpoint, body, headers, duration, connections, work):
    """wrk's figures for one signed request replayed: requests/s, p50 and p99 latency (ms),
    non-2xx answers and requests sent."""
    script = work / "request.lua"
    lines = ['wrk.method = "POST"', f"wrk.body = {lua_string(body)}"]
    for k, v in headers.items():
        lines.append(f"wrk.headers[{lua_string(k)}] = {lua_string(v)}")
    script.write_text("\n".join(lines) + "\n")
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script),
                          endpoint + "/"], check=True, capture_output=True, text=True).stdout

    def latency_ms(pct):
        m = re.search(rf"{pct}%\s+([\d.]+)(us|ms|s)", out)
        return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50_ms": latency_ms(50), "p99_ms": latency_ms(99),
            "errors": int(non2xx.group(1)) if non2xx else 0,
            "requests": int(re.search(r"(\d+) requests in", out).group(1))}


def wrk(endpoint, body, headers, duration, connections, work):
    s = wrk_stats(endpoint, body, headers, duration, connections, work)
    return s["rps"], s["p99_ms"], s["errors"], s["requests"]


def cpu_seconds(pid):
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def queries(ids, catalog):
    """name -> (DescribeImages parameters, check of the response text)."""
    middle = f"bench-image-{len(ids) // 2:05d}"
    return {
        "exact name (1 of N)": (
            {"Owner.1": "self", "Filter.1.Name": "name", "Filter.1.Value.1": middle},
            lambda t: t.count("<imageId>") == 1 and middle in t),
        "by image id": ({"ImageId.1": ids[len(ids) // 2]}, lambda t: ids[len(ids) // 2] in t),
        "wildcard name prefix (10 of N) + state": (
            {"Owner.1": "self", "Filter.1.Name": "name", "Filter.1.Value.1": "bench-image-0000*",
             "Filter.2.Name": "state", "Filter.2.Value.1": "available"},
            lambda t: t.count("<imageId>") == 10),
        "wildcard name, leading * (10 of N)": (
            {"Filter.1.Name": "name", "Filter.1.Value.1": "*-image-0000?"},
            lambda t: t.count("<imageId>") == 10),
        f"owner alias amazon ({catalog} images)": (
            {"Owner.1": "amazon"},
            lambda t: catalog == 0 or t.count("<imageId>") == catalog),
    }


BASELINE = "exact name (1 of N)"


def measure(name, endpoint, key, secret, qs, args, work, only=None, pid=None):
    """qname -> (req/s, p99 ms, errors, requests, server CPU ms per request or None)."""
    results = {}
    for qname, (params, check) in qs.items():
        if only is not None and qname not in only:
            continue
        body, headers = signed_post(endpoint, key, secret, params)
        text = send(endpoint, body, headers)
        assert "DescribeImagesResponse" in text and check(text), f"{name}: {qname} wrong result: {text[:300]}"
        cpu = cpu_seconds(pid) if pid else 0.0
        rps, p99, errors, requests = wrk(endpoint, body, headers, args.duration, args.connections, work)
        cpu_ms = (cpu_seconds(pid) - cpu) * 1e3 / max(requests, 1) if pid else None
        results[qname] = (rps, p99, errors, requests, cpu_ms)
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--openami", type=Path, default=default_binary())
    ap.add_argument("--images", type=int, default=10000)
    ap.add_argument("--volumes", type=int, default=50)
    ap.add_argument("--catalog", type=int, default=100, help="amazon images imported into openami")
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--no-moto", action="store_true", help="openami alone (no comparison with moto)")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk not found: apt-get install wrk")
    work = Path(tempfile.mkdtemp(prefix="openami-bench-"))
    procs = []
    try:
        server, (proc, endpoint, key, secret) = start_openami(args.openami, work)
        procs.append(proc)
        started = memory_mib(proc.pid)
        c = client(endpoint, key, secret)
        ids, took = populate(c, args.images, args.volumes)
        print(f"openami: registered {len(ids)} images in {took:.1f} s", file=sys.stderr)
        if args.catalog:
            import_catalog(server, args.catalog, work)
        qs = queries(ids, args.catalog)
        send(endpoint, *signed_post(endpoint, key, secret, qs[BASELINE][0]))  # (re)loads the index
        loaded = memory_mib(proc.pid)
        ours = measure("openami", endpoint, key, secret, qs, args, work, pid=proc.pid)
        after = memory_mib(proc.pid)

        load = os.getloadavg()[0]
        print()
        print(f"openami DescribeImages over {args.images} images (+{args.catalog} amazon), "
              f"wrk -t2 -c{args.connections} -d{args.duration}s on loopback, load average {load:.2f}")
        print(f"{'query':<40} {'req/s':>9} {'p99 ms':>8} {'CPU ms/req':>11} {'vs exact':>9}  target p99 < {P99_TARGET_MS:g} ms")
        base = ours[BASELINE]
        for qname, (rps, p99, errors, _, cpu_ms) in ours.items():
            verdict = "met" if p99 < P99_TARGET_MS else "NOT met"
            print(f"{qname:<40} {rps:>9.0f} {p99:>8.2f} {cpu_ms:>11.3f} {rps / max(base[0], 1e-9):>8.2f}x  {verdict}"
                  + ("  (errors!)" if errors else ""))
        print("(vs exact: req/s against the exact-name lookup; CPU ms/req: the server's user + system time "
              "per request, which the machine's load inflates less than p99)")
        print(f"server memory with {args.images + args.catalog} images and {args.volumes} volumes: "
              f"VmRSS {started[0]:.1f} MiB when started, {loaded[0]:.1f} MiB after loading, "
              f"{after[0]:.1f} MiB after the queries; "
              f"VmHWM {after[1]:.1f} MiB; target < {RSS_TARGET_MIB:g} MiB: "
              + ("met" if max(loaded[0], after[0], after[1]) < RSS_TARGET_MIB else "NOT met"))

        if args.no_moto:
            return
        proc, endpoint, key, secret = start_moto()
        procs.append(proc)
        c = client(endpoint, key, secret)
        ids, took = populate(c, args.images)
        print(f"moto: registered {len(ids)} images in {took:.1f} s", file=sys.stderr)
        shared = ["exact name (1 of N)", "by image id", "wildcard name prefix (10 of N) + state"]
        theirs = measure("moto", endpoint, key, secret, queries(ids, 0), args, work, only=shared)
        print()
        print(f"DescribeImages over {args.images} images, wrk -t2 -c{args.connections} -d{args.duration}s on loopback")
        print(f"{'query':<40} {'openami req/s':>14} {'p99 ms':>8} {'moto req/s':>11} {'p99 ms':>8} {'ratio':>7}")
        for qname in shared:
            o, m = ours[qname], theirs[qname]
            print(f"{qname:<40} {o[0]:>14.0f} {o[1]:>8.2f} {m[0]:>11.1f} {m[1]:>8.1f} {o[0] / max(m[0], 1e-9):>6.0f}x"
                  + ("  (errors!)" if o[2] or m[2] else ""))
        print("target: openami >= 20x moto's throughput")
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
