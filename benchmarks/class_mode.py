"""Class mode on the sandbox: wall time of `fab provision --count N` (cloud, host setup, deploy, verify) for
1 lab and for 10 labs, each from a fresh state dir (own sandbox daemon), then `fab teardown`.

Run as root: `python3 benchmarks/class_mode.py [--labs 10] [--parallel 8]`. Prints both times and the ratio
(target ≤ 2×). The apt cache should be warm (any earlier sandbox run fills it).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
FAB = Path(sys.executable).with_name("fab")
TARGET_RATIO = 2.0


def fab(state_dir: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, LAB_STATE_DIR=state_dir, LAB_TARGET="sandbox")
    return subprocess.run([str(FAB), *args], cwd=PROJECT, env=env, capture_output=True, text=True)


def phase_means(state_dir: str) -> str:
    """The mean seconds of each phase over the students, from the class report (`seconds` column)."""
    rows = json.loads((Path(state_dir) / "class-netlab.json").read_text())["students"]
    totals: dict[str, list[float]] = {}
    for row in rows:
        for phase, seconds in re.findall(r"(\w+) ([0-9.]+) s", row["seconds"]):
            totals.setdefault(phase, []).append(float(seconds))
    return ", ".join(f"{phase} {sum(v) / len(v):.1f} s" for phase, v in totals.items())


def timed_class(labs: int, parallel: int) -> tuple[float, str]:
    """Seconds for `fab provision --count labs` from nothing, and the mean phase times; tears down."""
    with tempfile.TemporaryDirectory(prefix="labctl-bench-class-") as state_dir:
        start = time.monotonic()
        try:
            done = fab(state_dir, "provision", "--target", "sandbox", "--count", str(labs),
                       "--parallel", str(parallel))
            elapsed = time.monotonic() - start
            if done.returncode != 0:
                sys.exit(f"fab provision --count {labs} failed:\n{done.stdout[-3000:]}{done.stderr[-2000:]}")
            phases = phase_means(state_dir)
        finally:
            down = fab(state_dir, "teardown")
            if down.returncode != 0:
                print(f"warning: teardown failed: {down.stderr.strip()}", file=sys.stderr)
    return elapsed, phases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labs", type=int, default=10)
    parser.add_argument("--parallel", type=int, default=10)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (the sandbox creates network namespaces)")
    load = os.getloadavg()[0]
    one, one_phases = timed_class(1, args.parallel)
    many, many_phases = timed_class(args.labs, args.parallel)
    ratio = many / one
    verdict = "meets" if ratio <= TARGET_RATIO else "misses"
    print(f"class mode, sandbox, {os.cpu_count()} CPUs, --parallel {args.parallel}, load before {load:.1f}")
    print(f"  1 lab:     {one:6.1f} s  (fab provision --count 1: cloud, host setup, deploy-echo, verify)")
    print(f"             per phase: {one_phases}")
    print(f"  {args.labs} labs:   {many:6.1f} s  (fab provision --count {args.labs})")
    print(f"             mean per phase: {many_phases}")
    print(f"  ratio:     {ratio:6.2f}x  ({verdict} the target of ≤ {TARGET_RATIO:.0f}x)")


if __name__ == "__main__":
    main()
