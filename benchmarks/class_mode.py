"""Class mode on the sandbox: wall time of `fab provision --count N` (cloud, host setup, deploy, verify) for
1 lab and for 10 labs, each from a fresh state dir (own sandbox daemon), then `fab teardown`.

Run as root: `python3 benchmarks/class_mode.py [--labs 10] [--parallel 10]`. Prints both times and the ratio
(target ≤ 2×). The apt cache should be warm (any earlier sandbox run fills it).

Two more numbers explain the ratio: the CPU seconds the whole machine spent during each run (on the sandbox
every instance's apt and gcc work runs on this machine's CPUs, so 10 labs cannot take less than that CPU time
divided by the number of CPUs), and the same class re-run with `--all` once everything is converged (all of
class mode's own work, with no instance-side work left): the ratio an operator sees when instances have their
own CPUs.
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
from dataclasses import dataclass
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


def machine_cpu_seconds() -> float:
    """CPU time (user, nice, system, irq, softirq) all CPUs of this machine have spent since boot."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    busy = sum(int(fields[i]) for i in (0, 1, 2, 5, 6))
    return busy / os.sysconf("SC_CLK_TCK")


@dataclass
class ClassRun:
    wall: float  # fab provision --count N from nothing
    cpu: float  # CPU seconds the machine spent meanwhile
    phases: str  # mean seconds per phase, from the class report
    rerun: float  # the converged class again with --all


def provision_class(state_dir: str, labs: int, parallel: int, *extra: str) -> float:
    start = time.monotonic()
    options = ("--count", str(labs), "--parallel", str(parallel), *extra)
    done = fab(state_dir, "provision", "--target", "sandbox", *options)
    elapsed = time.monotonic() - start
    if done.returncode != 0:
        sys.exit(
            f"fab provision --count {labs} {' '.join(extra)} failed:\n{done.stdout[-3000:]}"
            f"{done.stderr[-2000:]}"
        )
    return elapsed


def timed_class(labs: int, parallel: int) -> ClassRun:
    """`fab provision --count labs` from nothing (wall and CPU), then again with --all; tears down."""
    with tempfile.TemporaryDirectory(prefix="labctl-bench-class-") as state_dir:
        try:
            cpu_before = machine_cpu_seconds()
            wall = provision_class(state_dir, labs, parallel)
            cpu = machine_cpu_seconds() - cpu_before
            phases = phase_means(state_dir)
            rerun = provision_class(state_dir, labs, parallel, "--all")
        finally:
            down = fab(state_dir, "teardown")
            if down.returncode != 0:
                print(f"warning: teardown failed: {down.stderr.strip()}", file=sys.stderr)
    return ClassRun(wall, cpu, phases, rerun)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labs", type=int, default=10)
    parser.add_argument("--parallel", type=int, default=10)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (the sandbox creates network namespaces)")
    load, cpus = os.getloadavg()[0], os.cpu_count() or 1
    one = timed_class(1, args.parallel)
    many = timed_class(args.labs, args.parallel)
    ratio = many.wall / one.wall
    verdict = "meets" if ratio <= TARGET_RATIO else "misses"
    floor = many.cpu / cpus
    print(f"class mode, sandbox, {cpus} CPUs, --parallel {args.parallel}, load before {load:.1f}")
    print(f"  1 lab:     {one.wall:6.1f} s  (--count 1: cloud, host setup, deploy-echo, verify)")
    print(f"             per phase: {one.phases}; machine CPU {one.cpu:.1f} s")
    print(f"  {args.labs} labs:   {many.wall:6.1f} s  (fab provision --count {args.labs})")
    print(f"             mean per phase: {many.phases}; machine CPU {many.cpu:.1f} s")
    print(f"  ratio:     {ratio:6.2f}x  ({verdict} the target of ≤ {TARGET_RATIO:.0f}x)")
    print(
        f"  CPU floor: {floor:6.1f} s  ({many.cpu:.0f} CPU s / {cpus} CPUs: no schedule of {args.labs} "
        f"labs on this machine is faster; {floor / one.wall:.2f}x the 1-lab time)"
    )
    print(
        f"  converged re-run with --all: 1 lab {one.rerun:.1f} s, {args.labs} labs {many.rerun:.1f} s, "
        f"ratio {many.rerun / one.rerun:.2f}x (class mode's own work, no instance-side work)"
    )


if __name__ == "__main__":
    main()
