"""Benchmark: the whole main job on the sandbox, task by task, as a student runs it.

    fab provision --target sandbox  ->  fab deploy-echo  ->  fab verify  ->  fab teardown

each as its own `fab` process in a fresh temporary state dir (so a new instance, key pair and security
group every time), with the machine's apt cache as it is (warm after any earlier sandbox run: the
sandbox's apt proxy keeps package files in /var/cache/labctl/apt; `--warm-up` runs the job once untimed
first). Prints the wall time per task and in total against the 30 s target, and the SSH connections and
remote commands of the host tasks (LAB_VERBOSE=1 counters). Needs root. Traffic goes only to 127.0.0.1
(the sandbox's EC2 API), the sandbox host and, through the sandbox's apt proxy, this machine's own
Debian mirror. Everything is torn down at the end, also on failure.

    python3 benchmarks/main_job.py [--runs 1] [--warm-up]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
APT_CACHE = Path("/var/cache/labctl/apt")
TASKS = (("provision", "--target", "sandbox"), ("deploy-echo",), ("verify",), ("teardown",))
TARGET_SECONDS = 30.0
SSH_LINE = re.compile(r"^ssh: \S+ (\d+) connection\(s\), (\d+) command\(s\), (\d+) upload\(s\)$", re.M)


class JobFailed(Exception):
    """A task of the job failed; the message is its last output line."""


def fab() -> str:
    for path in (Path(sys.executable).with_name("fab"), PROJECT / ".venv" / "bin" / "fab"):
        if path.exists():
            return str(path)
    return shutil.which("fab") or "fab"


def cache_size(path: Path = APT_CACHE) -> int:
    """Bytes of package files in the sandbox's apt cache (0 when there is none)."""
    if not path.is_dir():
        return 0
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def run_task(task: tuple[str, ...], env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run([fab(), *task], env=env, cwd=PROJECT, capture_output=True, text=True, timeout=900)
    seconds = time.perf_counter() - started
    output = done.stdout + done.stderr
    if done.returncode != 0:
        raise JobFailed(f"fab {task[0]} failed: {(output.strip().splitlines() or ['no output'])[-1]}")
    return seconds, output


def ssh_counts(output: str) -> str:
    lines = SSH_LINE.findall(output)
    if not lines:
        return ""
    connections = sum(int(c) for c, _, _ in lines)
    commands = sum(int(n) for _, n, _ in lines)
    return f"{connections} ssh connection(s), {commands} remote command(s)"


def one_job(work: Path) -> dict[str, tuple[float, str]]:
    """Run the four tasks in a fresh state dir; their times and SSH counts. Tears down on failure too."""
    state = work / f"state-{time.monotonic_ns()}"
    env = dict(os.environ, LAB_STATE_DIR=str(state), LAB_VERBOSE="1")
    env.pop("LAB_TARGET", None)
    times: dict[str, tuple[float, str]] = {}
    try:
        for task in TASKS:
            seconds, output = run_task(task, env)
            times[task[0]] = (seconds, ssh_counts(output))
    finally:
        if "teardown" not in times:
            subprocess.run([fab(), "teardown"], env=env, cwd=PROJECT, capture_output=True, timeout=300)
    return times


def report(jobs: list[dict[str, tuple[float, str]]], cache_before: int, load_before: float) -> None:
    print(
        f"main job on the sandbox, {len(jobs)} run(s); apt cache before: {cache_before / 1e6:.0f} MB "
        f"({'warm' if cache_before else 'cold'}); load average {load_before:.2f} before, "
        f"{os.getloadavg()[0]:.2f} after (1 min)"
    )
    totals = [sum(seconds for seconds, _ in job.values()) for job in jobs]
    for name, *_ in TASKS:
        values = [job[name][0] for job in jobs]
        counts = jobs[-1][name][1]
        print(
            f"  fab {name:<12} median {statistics.median(values):6.2f} s   best {min(values):6.2f} s"
            + (f"   {counts}" if counts else "")
        )
    total = statistics.median(totals)
    verdict = "met" if total <= TARGET_SECONDS else "MISSED"
    print(
        f"  total            median {total:6.2f} s   best {min(totals):6.2f} s   "
        f"target <= {TARGET_SECONDS:.0f} s: {verdict}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1, help="timed runs of the whole job (default 1)")
    parser.add_argument("--warm-up", action="store_true", help="run the job once untimed first")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (the sandbox makes network namespaces)", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="labctl-main-job-"))
    try:
        if args.warm_up:
            one_job(work)
        cache_before = cache_size()
        load_before = os.getloadavg()[0]
        jobs = [one_job(work) for _ in range(max(1, args.runs))]
        report(jobs, cache_before, load_before)
        return 0
    except (JobFailed, subprocess.TimeoutExpired) as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
