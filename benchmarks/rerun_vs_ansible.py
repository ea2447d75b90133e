"""Benchmark: an idempotent re-run of labctl vs the same steps as an Ansible playbook, on one sandbox host.

Brings up one sandbox lab (`fab provision --target sandbox deploy-echo` in a temporary state dir),
converges the playbook in benchmarks/ansible/ once on the same host, then times N re-runs of each side,
interleaved in the same run:

- labctl, as a student types it: `fab provision` then `fab deploy-echo` (two processes; the cloud check
  and the host check both run); and `fab provision deploy-echo` (one process);
- `ansible-playbook benchmarks/ansible/lab.yml` (pipelining, one multiplexed OpenSSH connection per run
  with a fresh control dir, no fact gathering: Ansible's fast setup).

Every timed run must change nothing. Prints median and best wall times, the ratio, and per run the SSH
connections and remote commands of each side (labctl from its own counters, LAB_VERBOSE=1; Ansible from
one extra `-vvvv` run: `SSH: EXEC` lines = ssh invocations, control sockets = TCP connections).

Targets printed: ≤ 2 s per re-run and ≥ 10x faster than Ansible (issue 13; it was ≥ 5x before), and the
re-run against the medians recorded on 2026-11-26 (issue 11: unchanged or better).

Needs root and ansible-core (`pip install ansible-core`). Traffic goes only to 127.0.0.1 (the sandbox's
EC2 API) and the sandbox host; everything is torn down at the end, also on failure.

    python3 benchmarks/rerun_vs_ansible.py [--runs 5]
    python3 benchmarks/rerun_vs_ansible.py --keep DIR [--runs 0]

`--keep DIR` brings the lab up in DIR and leaves it there (no teardown) with two scripts for timing the
re-runs from outside: DIR/labctl-rerun (`fab provision; fab deploy-echo`) and DIR/ansible-rerun (the
playbook with a fresh control dir, closed afterwards); `LAB_STATE_DIR=DIR fab teardown` removes the lab.
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
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from lab.connect import host_key_entry  # noqa: E402
from labctl.errors import LabError  # noqa: E402

ANSIBLE_DIR = PROJECT / "benchmarks" / "ansible"
TARGET_SECONDS = 2.0
TARGET_RATIO = 10.0
# Issue 11's yardstick: the medians recorded in benchmarks/RESULTS.md on 2026-11-26 (16:21, load 1.0-1.2),
# before the labctl/ restructure: two processes, one process, and Ansible / two processes.
RECORDED = {"two": 1.55, "one": 1.00, "ratio": 8.4}
SSH_LINE = re.compile(r"^ssh: \S+ (\d+) connection\(s\), (\d+) command\(s\), (\d+) upload\(s\)$", re.M)
RECAP = re.compile(r"ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)")


@dataclass
class Side:
    """Wall times and SSH counts of one contender."""

    name: str
    seconds: list[float] = field(default_factory=list)
    connections: int = 0
    commands: int = 0

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    def row(self) -> str:
        return (
            f"{self.name:<40} median {self.median:6.2f} s   best {min(self.seconds):6.2f} s   "
            f"ssh connections {self.connections:>2}   remote commands {self.commands:>3}"
        )


def tool(name: str) -> str:
    """A console script of this interpreter's environment, else of the project's .venv, else from PATH."""
    candidates = [Path(sys.executable).with_name(name), PROJECT / ".venv" / "bin" / name]
    found = next((str(path) for path in candidates if path.exists()), None) or shutil.which(name)
    if not found:
        raise LabError(f"{name} not found: pip install ansible-core (into this environment) and re-run")
    return found


def run(command: list[str], env: dict[str, str], cwd: Path = PROJECT) -> tuple[float, str]:
    """Run `command`; its wall time and combined output. LabError with its last line if it fails."""
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=900)
    elapsed = time.perf_counter() - started
    output = done.stdout + done.stderr
    if done.returncode != 0:
        last = (output.strip().splitlines() or ["no output"])[-1]
        raise LabError(f"`{' '.join(Path(c).name for c in command[:3])}` failed: {last}")
    return elapsed, output


def labctl_counts(output: str) -> tuple[int, int]:
    """Summed SSH connections and remote commands from the `ssh:` lines LAB_VERBOSE=1 prints."""
    lines = SSH_LINE.findall(output)
    return sum(int(c) for c, _, _ in lines), sum(int(n) for _, n, _ in lines)


def require_unchanged_labctl(output: str) -> None:
    summaries = [line for line in output.splitlines() if line.startswith("summary:")]
    if not summaries or any("changed" in line or "failed" in line for line in summaries):
        raise LabError(f"labctl re-run was not idempotent: {summaries}")


def require_unchanged_ansible(output: str) -> None:
    recap = RECAP.search(output)
    if not recap or recap.group(2) != "0" or recap.group(4) != "0":
        raise LabError(f"ansible re-run was not idempotent: {recap.group(0) if recap else 'no recap'}")


class Bench:
    """One sandbox lab in a temporary state dir, and the Ansible inventory pointing at its host."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.env = dict(os.environ, LAB_STATE_DIR=str(work / "state"), LAB_VERBOSE="1")
        self.env.pop("LAB_TARGET", None)
        self.fab = tool("fab")
        self.playbook = tool("ansible-playbook")
        self.ansible_runs = 0

    def fab_run(self, *tasks: str) -> tuple[float, str]:
        return run([self.fab, *tasks], self.env)

    def bring_up(self) -> float:
        seconds, _ = self.fab_run("provision", "--target", "sandbox", "deploy-echo")
        return seconds

    def write_inventory(self) -> Path:
        """known_hosts with the pinned console keys, and the inventory from its template."""
        os.environ["LAB_STATE_DIR"] = self.env["LAB_STATE_DIR"]
        from labctl import targets

        host = targets.host_targets()[0]
        known_hosts = self.work / "known_hosts"
        entry = host_key_entry(host.address, host.port)
        known_hosts.write_text("".join(f"{entry} {kind} {key}\n" for kind, key in host.host_keys))
        template = Template((ANSIBLE_DIR / "inventory.ini.template").read_text())
        inventory = self.work / "inventory.ini"
        inventory.write_text(
            template.substitute(
                address=host.address,
                key_file=host.key_file,
                known_hosts=known_hosts,
                echo_dir=PROJECT / "echo",
            )
        )
        return inventory

    def ansible(self, inventory: Path, *flags: str) -> tuple[float, str, int]:
        """One playbook run with a fresh control dir; its time, output and TCP connections made."""
        self.ansible_runs += 1
        control_dir = self.work / f"cp{self.ansible_runs}"
        env = dict(
            self.env,
            ANSIBLE_CONFIG=str(ANSIBLE_DIR / "ansible.cfg"),
            ANSIBLE_SSH_CONTROL_PATH_DIR=str(control_dir),
            ANSIBLE_LOCAL_TEMP=str(self.work / "tmp"),
            ANSIBLE_HOME=str(self.work / "ansible-home"),
        )
        try:
            seconds, output = run(
                [self.playbook, "-i", str(inventory), *flags, str(ANSIBLE_DIR / "lab.yml")],
                env,
                cwd=self.work,
            )
        finally:
            sockets = stop_control_masters(control_dir)
        return seconds, output, sockets

    def teardown(self) -> None:
        subprocess.run([self.fab, "teardown"], env=self.env, cwd=PROJECT, capture_output=True, timeout=300)


def stop_control_masters(control_dir: Path) -> int:
    """Ask each OpenSSH control master of a run to exit; returns how many there were."""
    sockets = list(control_dir.glob("*")) if control_dir.is_dir() else []
    for socket_path in sockets:
        subprocess.run(
            ["ssh", "-O", "exit", "-o", f"ControlPath={socket_path}", "lab"], capture_output=True, timeout=30
        )
    return len(sockets)


def measure(bench: Bench, inventory: Path, runs: int) -> list[Side]:
    two = Side("labctl: fab provision; fab deploy-echo")
    one = Side("labctl: fab provision deploy-echo")
    ansible = Side("ansible-playbook lab.yml")
    for _ in range(runs):
        first, out1 = bench.fab_run("provision")
        second, out2 = bench.fab_run("deploy-echo")
        for output in (out1, out2):
            require_unchanged_labctl(output)
        two.seconds.append(first + second)
        two.connections, two.commands = labctl_counts(out1 + out2)
        seconds, output = bench.fab_run("provision", "deploy-echo")
        require_unchanged_labctl(output)
        one.seconds.append(seconds)
        one.connections, one.commands = labctl_counts(output)
        seconds, output, _ = bench.ansible(inventory)
        require_unchanged_ansible(output)
        ansible.seconds.append(seconds)
    _, verbose, sockets = bench.ansible(inventory, "-vvvv")  # counted, not timed
    ansible.connections, ansible.commands = sockets, verbose.count("SSH: EXEC")
    return [two, one, ansible]


def report(sides: list[Side], runs: int, setup: float, converge: float, load_before: float) -> None:
    two, one, ansible = sides
    print(f"one sandbox host; labctl set it up in {setup:.1f} s; ansible's first converge {converge:.1f} s")
    print(
        f"{runs} idempotent re-runs each, interleaved (load average {load_before:.2f} before, "
        f"{os.getloadavg()[0]:.2f} after, 1 min):"
    )
    for side in sides:
        print("  " + side.row())
    ratio = ansible.median / two.median
    print(
        f"ratio ansible / labctl (two processes): {ratio:.1f}x (median); "
        f"single process: {ansible.median / one.median:.1f}x"
    )
    for side in (two, one):
        fast_enough = "met" if side.median <= TARGET_SECONDS else "MISSED"
        ratio_met = "met" if ansible.median / side.median >= TARGET_RATIO else "MISSED"
        print(
            f"{side.name}: target <= {TARGET_SECONDS:.0f} s {fast_enough}, "
            f">= {TARGET_RATIO:.0f}x faster than ansible {ratio_met}"
        )
    print(
        f"against 2026-11-26 (issue 11): two processes {two.median:.2f} s vs {RECORDED['two']:.2f} s, "
        f"one process {one.median:.2f} s vs {RECORDED['one']:.2f} s, "
        f"ratio {ratio:.1f}x vs {RECORDED['ratio']:.1f}x"
    )


def write_rerun_scripts(bench: Bench, inventory: Path) -> None:
    """DIR/labctl-rerun and DIR/ansible-rerun: one re-run of each side, for timing from outside."""
    labctl = bench.work / "labctl-rerun"
    labctl.write_text(
        "#!/bin/sh\nset -e\n"
        f"export LAB_STATE_DIR='{bench.env['LAB_STATE_DIR']}'\ncd '{PROJECT}'\n"
        f"'{bench.fab}' provision\n'{bench.fab}' deploy-echo\n"
    )
    ansible = bench.work / "ansible-rerun"
    ansible.write_text(
        "#!/bin/sh\n"
        f"control=$(mktemp -d '{bench.work}/cp.XXXXXX')\n"
        f"export ANSIBLE_CONFIG='{ANSIBLE_DIR / 'ansible.cfg'}' ANSIBLE_SSH_CONTROL_PATH_DIR=\"$control\"\n"
        f"export ANSIBLE_LOCAL_TEMP='{bench.work / 'tmp'}' ANSIBLE_HOME='{bench.work / 'ansible-home'}'\n"
        f"cd '{bench.work}'\n"
        f"'{bench.playbook}' -i '{inventory}' '{ANSIBLE_DIR / 'lab.yml'}'\nstatus=$?\n"
        'for socket in "$control"/*; do [ -S "$socket" ] && ssh -O exit -o ControlPath="$socket" lab; done\n'
        'rm -rf "$control"\nexit $status\n'
    )
    for script in (labctl, ansible):
        script.chmod(0o755)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed re-runs of each side (default 5)")
    parser.add_argument("--keep", type=Path, help="bring the lab up in this new dir and leave it there")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (the sandbox makes network namespaces)", file=sys.stderr)
        return 1
    load_before = os.getloadavg()[0]
    if args.keep:
        args.keep.mkdir(parents=True)
    work = args.keep.resolve() if args.keep else Path(tempfile.mkdtemp(prefix="labctl-ansible-bench-"))
    bench = None
    kept = False
    try:
        bench = Bench(work)
        setup = bench.bring_up()
        inventory = bench.write_inventory()
        converge, output, _ = bench.ansible(inventory)
        if RECAP.search(output) is None:
            raise LabError("ansible printed no PLAY RECAP")
        if args.keep:
            write_rerun_scripts(bench, inventory)
        runs = args.runs if args.keep else max(1, args.runs)
        if runs:
            report(measure(bench, inventory, runs), runs, setup, converge, load_before)
        if args.keep:
            print(f"lab kept in {work}: {work / 'labctl-rerun'}, {work / 'ansible-rerun'}")
            print(f"remove it with: LAB_STATE_DIR={work / 'state'} fab teardown; rm -r {work}")
            kept = True
        return 0
    except (LabError, subprocess.TimeoutExpired) as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if not kept:
            if bench is not None:
                bench.teardown()
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
