"""`openami bench cold-read` (issue 13's "CreateVolume-from-snapshot in the other zone:
first-read latency of a cold block", see crates/openami/src/bench_cold.rs) runs end to end
on the local backend and against a real SeaweedFS: its JSON has every pass with positive
latencies and the local/S3 ratios, its table prints, bad arguments are refused, and it leaves
nothing behind (no temp dir, no object under its prefix in the bucket). Figures are not
judged: the machine running the tests is not a benchmark machine.

The S3 case needs `weed` (scripts/install-test-deps), started on loopback by scripts/seaweedfs.
"""

import json
import subprocess
import tempfile
from pathlib import Path

from conftest import openami_bin
from test_s3_blocks import BUCKET, s3_env, seaweedfs  # noqa: F401 (fixtures)


def temp_entries():
    return {p.name for p in Path(tempfile.gettempdir()).glob("openami-bench-cold-*")}


def cold_read(*args, check=True):
    out = subprocess.run([openami_bin(), "bench", "cold-read", *args], capture_output=True, text=True,
                         timeout=300)
    if check:
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    return out


def check_passes(report, backends):
    results = report["results"]
    assert sorted((r["backend"], r["read_ahead"]) for r in results) == sorted(
        (b, ra) for b in backends for ra in (False, True))
    for r in results:
        for key in ("cold_p50_ms", "cold_p90_ms", "cold_max_ms", "warm_p50_ms", "fetch_p50_ms"):
            assert r[key] > 0, r
        assert r["cold_p50_ms"] <= r["cold_p90_ms"] <= r["cold_max_ms"], r
        assert r["extra_filled_blocks"] >= 0
        ratio = r["local_over_this"]
        assert ratio is not None and all(ratio[k] > 0 for k in ("p50", "p90", "max")), r
        if r["backend"] == "local":
            assert ratio["p50"] == 1.0
    return {(r["backend"], r["read_ahead"]): r for r in results}


def test_cold_read_local_json_and_table():
    before = temp_entries()
    report = json.loads(cold_read("--size-mib", "3", "--reads", "5", "--json").stdout)
    assert report["config"] == {"size_mib": 3, "blocks": 6, "reads": 5, "read_bytes": 4096,
                                "profile": report["config"]["profile"]}
    check_passes(report, ["local"])
    table = cold_read("--size-mib", "1", "--reads", "2").stdout
    assert "local, read-ahead off" in table and "local, read-ahead on" in table, table
    assert temp_entries() <= before, "temp dirs left behind"


def test_cold_read_refuses_more_reads_than_blocks():
    out = cold_read("--size-mib", "1", "--reads", "3", check=False)
    assert out.returncode != 0
    assert "must not exceed the snapshot's blocks (2)" in out.stderr, out.stderr


def test_cold_read_against_seaweedfs_leaves_no_object(seaweedfs, s3_env):  # noqa: F811
    before = temp_entries()
    report = json.loads(cold_read("--size-mib", "4", "--reads", "4", "--json",
                                  "--blocks", f"s3://{BUCKET}/coldread", "--s3-endpoint",
                                  seaweedfs.endpoint).stdout)
    passes = check_passes(report, ["local", "s3"])
    local, s3 = passes[("local", False)], passes[("s3", False)]
    assert abs(s3["local_over_this"]["p50"] - local["cold_p50_ms"] / s3["cold_p50_ms"]) < 1e-9
    assert seaweedfs.keys("coldread/") == [], "objects left in the bucket"
    assert temp_entries() <= before, "temp dirs left behind"
