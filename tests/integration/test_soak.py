"""The soak test's short CI variant: `bench/soak.py` (see its docstring) for 100 s with 6
clients over two accounts against its own server, which must pass every invariant; and a
10-second run with a corrupted block, which must fail (the soak can fail)."""

import re
import shutil
import subprocess
import sys

from conftest import ROOT, openami_bin

SOAK = ROOT / "bench" / "soak.py"


def soak(*args, timeout=900):
    out = subprocess.run([sys.executable, str(SOAK), "--bin", openami_bin(), *args],
                         capture_output=True, text=True, timeout=timeout)
    print(out.stdout, out.stderr)
    kept = re.search(r"^kept (\S+)$", out.stdout, re.M)
    if kept:  # a failed run keeps its data dir for diagnosis; the test has printed what matters
        shutil.rmtree(kept.group(1), ignore_errors=True)
    return out


def test_soak_short():
    out = soak("--duration", "100", "--clients", "6", "--seed", "7")
    assert out.returncode == 0 and "soak PASSED" in out.stdout, out.stdout[-4000:] + out.stderr[-2000:]


def test_soak_fails_on_a_corrupt_block():
    out = soak("--duration", "10", "--clients", "2", "--inject-corruption")
    assert out.returncode == 1, out.stdout[-4000:]
    verdicts = dict(line.split(" ", 1)[::-1] for line in out.stdout.splitlines()
                    if line.startswith(("PASS ", "FAIL ")))
    assert verdicts.pop("scrub (1)") == "FAIL", verdicts
    assert set(verdicts.values()) == {"PASS"}, verdicts
