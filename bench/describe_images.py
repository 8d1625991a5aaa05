#!/usr/bin/env python3
"""Benchmark: DescribeImages over 10,000 images, openami vs moto_server, in one run.

Both servers get the same images through the public API (a volume, a snapshot, then
RegisterImage N times with boto3). Each query is a SigV4 header-signed POST, exactly as
boto3 sends it (openami verifies the signature on every request; moto routes on it),
replayed by `wrk` (a Lua script sets method, body and headers) on loopback; requests per
second and p99 latency come from wrk's latency histogram.

Usage: python3 bench/describe_images.py [--images 10000] [--duration 10] [--connections 8]
Needs: a release build of openami (built if missing), moto[server], boto3, wrk.
"""

import argparse
import concurrent.futures
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


def start_openami(work):
    binary = ROOT / "target" / "release" / "openami"
    if not binary.exists():
        subprocess.run(["cargo", "build", "--release", "--locked", "--bin", "openami"], cwd=ROOT, check=True)
    server = OpenamiServer(binary, work)
    return server.proc, server.endpoint, server.creds["AccessKeyId"], server.creds["SecretAccessKey"]


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


def populate(c, n):
    vol = c.create_volume(AvailabilityZone=REGION + "a", Size=1)["VolumeId"]
    snap = c.create_snapshot(VolumeId=vol)["SnapshotId"]
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


def wrk(endpoint, body, headers, duration, connections, work):
    script = work / "request.lua"
    lines = ['wrk.method = "POST"', f"wrk.body = {lua_string(body)}"]
    for k, v in headers.items():
        lines.append(f"wrk.headers[{lua_string(k)}] = {lua_string(v)}")
    script.write_text("\n".join(lines) + "\n")
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script),
                          endpoint + "/"], check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}[p99.group(2)]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, float(p99.group(1)) * scale, int(non2xx.group(1)) if non2xx else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=10000)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=8)
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk not found: apt-get install wrk")
    work = Path(tempfile.mkdtemp(prefix="openami-bench-"))
    servers = {}
    try:
        servers["openami"] = start_openami(work)
        servers["moto"] = start_moto()
        results = {}
        for name, (proc, endpoint, key, secret) in servers.items():
            c = client(endpoint, key, secret)
            ids, took = populate(c, args.images)
            print(f"{name}: registered {len(ids)} images in {took:.1f} s", file=sys.stderr)
            target = ids[len(ids) // 2]
            queries = {
                "by name filter (1 of N)": {"Owner.1": "self", "Filter.1.Name": "name",
                                            "Filter.1.Value.1": f"bench-image-{len(ids) // 2:05d}"},
                "by image id": {"ImageId.1": target},
                "wildcard name (10 of N) + state filter": {
                    "Owner.1": "self", "Filter.1.Name": "name", "Filter.1.Value.1": "bench-image-0000*",
                    "Filter.2.Name": "state", "Filter.2.Value.1": "available"},
            }
            for qname, params in queries.items():
                body, headers = signed_post(endpoint, key, secret, params)
                text = send(endpoint, body, headers)
                assert "imageId" in text, f"{name}: {qname} returned no image: {text[:300]}"
                if qname.startswith("wildcard"):
                    assert text.count("<imageId>") == 10, f"{name}: {qname} should match 10 images"
                else:
                    assert target in text or f"bench-image-{len(ids) // 2:05d}" in text, f"{name}: {qname} wrong result"
                results[(name, qname)] = wrk(endpoint, body, headers, args.duration, args.connections, work)
        print()
        print(f"DescribeImages over {args.images} images, wrk -t2 -c{args.connections} -d{args.duration}s on loopback")
        print(f"{'query':<40} {'openami req/s':>14} {'p99 ms':>8} {'moto req/s':>11} {'p99 ms':>8} {'ratio':>7}")
        for qname in dict.fromkeys(q for _, q in results):
            o, m = results[("openami", qname)], results[("moto", qname)]
            print(f"{qname:<40} {o[0]:>14.0f} {o[1]:>8.2f} {m[0]:>11.1f} {m[1]:>8.1f} {o[0] / max(m[0], 1e-9):>6.0f}x"
                  + ("  (errors!)" if o[2] or m[2] else ""))
        print("target: openami >= 20x moto's throughput")
    finally:
        for proc, *_ in servers.values():
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
