#!/usr/bin/env python3
"""Echo round trips on loopback: C server vs Python server, and --concurrent with 1,000 clients.

    python3 benchmarks/echo_rtt.py [--seconds 2] [--clients 1000]

Builds the C programs in a temporary directory, starts each server on a free 127.0.0.1 port (killed by PID at
the end), and drives them all with the same drivers in the same run:

1. single client: sequential round trips of a 32-byte line, five alternating runs per server, best run
   reported; driven once by a Python loop (bounded by --seconds and --max-round-trips) and once by the C
   echo_client fed --c-client-lines lines; the server's CPU time per round trip (from /proc) is shown too,
   being the figure least disturbed by other load on the machine. Target: Python >= 0.8 x C.
2. the concurrent servers (Python --concurrent; the C poll server for comparison) with --clients connections
   open at once:
   - paced: every client sends in turn, --paced-rate round trips per second overall, for --seconds;
   - burst: every client sends at the same instant, --burst-rounds times.
   p50/p99 latency and errors. Target: 0 errors and p99 <= 20 x the single-client round trip.
Not a test: prints numbers, asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import resource
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ECHO_DIR = Path(__file__).resolve().parents[1] / "echo"
MESSAGE = b"0123456789abcdefghijklmnopqrstuv"  # 32 bytes; sent with "\n", echoed without
RUNS_PER_SERVER = 5
REPLY_TIMEOUT = 10.0
REFERENCE_RATE = 500.0  # one client paced slower than epoll's 1 ms timeout granularity


@dataclass
class Latencies:
    """Round-trip times in seconds, plus failures."""

    samples: list[float] = field(default_factory=list)
    errors: int = 0
    skipped: int = 0  # paced turns skipped because that client's previous echo was still on its way

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


# ------------------------------------------------------------------ servers


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def build_c_programs(directory: Path) -> None:
    """`make all poll` in a copy of echo/: echo_server, echo_client, echo_server_poll land in `directory`."""
    for name in ("echo_server.c", "echo_client.c", "echo_server_poll.c", "Makefile"):
        shutil.copy(ECHO_DIR / name, directory / name)
    subprocess.run(["make", "-s", "-C", str(directory), "all", "poll"], check=True)


def wait_for_port(port: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and process.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.02)
    raise SystemExit(f"echo_rtt: server {process.args} did not start listening on port {port}")


@contextmanager
def running(command: list[str]):
    """Start a server on a free port, yield (port, process), stop it by PID."""
    port = free_port()
    process = subprocess.Popen([*command, str(port)], stdout=subprocess.DEVNULL)
    try:
        wait_for_port(port, process)
        yield port, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# ------------------------------------------------------------------ drivers


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=REPLY_TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def single_client(port: int, seconds: float, max_round_trips: int) -> tuple[float, float]:
    """Sequential round trips from one client; returns (round trips per second, median round trip in s)."""
    line, size = MESSAGE + b"\n", len(MESSAGE)
    samples = []
    with connect(port) as sock:
        clock = time.perf_counter
        start = clock()
        end = start + seconds
        while len(samples) < max_round_trips:
            sent_at = clock()
            if sent_at > end:
                break
            sock.sendall(line)
            reply = sock.recv(size)
            while len(reply) < size:
                reply += sock.recv(size - len(reply))
            samples.append(clock() - sent_at)
        elapsed = clock() - start
    return len(samples) / elapsed, statistics.median(samples)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc, clock-tick resolution)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def c_client_run(client: Path, port: int, lines: Path, count: int) -> float:
    """Feed `count` lines to the C echo_client (sequential round trips); returns round trips per second."""
    with open(lines, "rb") as stdin:
        start = time.perf_counter()
        subprocess.run(
            [str(client), "127.0.0.1", str(port)],
            stdin=stdin,
            stdout=subprocess.DEVNULL,
            check=True,
            timeout=120,
        )
        return count / (time.perf_counter() - start)


def open_clients(port: int, count: int) -> list[socket.socket]:
    clients = []
    for _ in range(count):
        sock = connect(port)
        sock.setblocking(False)
        clients.append(sock)
    return clients


def collect_replies(
    selector: selectors.BaseSelector, pending: dict, result: Latencies, deadline: float
) -> None:
    """Read replies until none are pending (or the deadline passes); record each client's latency."""
    while pending and time.perf_counter() < deadline:
        for key, _ in selector.select(timeout=max(0.0, deadline - time.perf_counter())):
            record_reply(key.fileobj, pending, result)


def record_reply(sock: socket.socket, pending: dict, result: Latencies) -> None:
    try:
        data = sock.recv(len(MESSAGE))
    except BlockingIOError:
        return
    except OSError:
        data = b""
    if sock not in pending:
        result.errors += 1  # bytes nobody asked for
        return
    sent_at, received = pending[sock]
    received += data
    if not data or not MESSAGE.startswith(received):
        result.errors += 1
        del pending[sock]
    elif len(received) == len(MESSAGE):
        result.samples.append(time.perf_counter() - sent_at)
        del pending[sock]
    else:
        pending[sock] = (sent_at, received)


def send_request(sock: socket.socket, pending: dict, result: Latencies) -> None:
    try:
        sock.send(MESSAGE + b"\n")
    except OSError:
        result.errors += 1
        return
    pending[sock] = (time.perf_counter(), b"")


def burst(clients: list[socket.socket], rounds: int) -> Latencies:
    """Every client sends at once; wait for all echoes; repeat."""
    result = Latencies()
    with selectors.DefaultSelector() as selector:
        for sock in clients:
            selector.register(sock, selectors.EVENT_READ)
        for _ in range(rounds):
            pending: dict = {}
            for sock in clients:
                send_request(sock, pending, result)
            collect_replies(selector, pending, result, time.perf_counter() + REPLY_TIMEOUT)
            result.errors += len(pending)
    return result


def paced(clients: list[socket.socket], rate: float, seconds: float) -> Latencies:
    """Clients take turns: one request every 1/rate seconds overall, each client once per len/rate s."""
    result = Latencies()
    pending: dict = {}
    interval = 1.0 / rate
    with selectors.DefaultSelector() as selector:
        for sock in clients:
            selector.register(sock, selectors.EVENT_READ)
        start = time.perf_counter()
        for turn in range(int(seconds * rate)):
            due = start + turn * interval
            while True:
                wait = due - time.perf_counter()
                for key, _ in selector.select(timeout=max(0.0, wait)):
                    record_reply(key.fileobj, pending, result)
                if wait <= 0:
                    break
            sock = clients[turn % len(clients)]
            if sock in pending:
                result.skipped += 1
                continue
            send_request(sock, pending, result)
        collect_replies(selector, pending, result, time.perf_counter() + REPLY_TIMEOUT)
        result.errors += len(pending)
    return result


# ------------------------------------------------------------------ report


def raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def micros(seconds: float) -> str:
    return f"{seconds * 1e6:,.0f} µs"


def measure_single(
    servers: dict[str, list[str]], args: argparse.Namespace, build: Path
) -> dict[str, tuple[float, float, float, float]]:
    """Best of RUNS_PER_SERVER alternating runs per server.

    Returns {name: (round trips/s with the Python driver, its median round trip, round trips/s with the
    C echo_client as driver, server CPU seconds per round trip in the C echo_client run)}.
    """
    lines = build / "lines.txt"
    lines.write_bytes((MESSAGE + b"\n") * args.c_client_lines)
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in servers}
    c_runs: dict[str, list[float]] = {name: [] for name in servers}
    cpu: dict[str, list[float]] = {name: [] for name in servers}
    for _ in range(RUNS_PER_SERVER):
        for name, command in servers.items():
            with running(command) as (port, process):
                cpu_before = cpu_seconds(process.pid)
                c_runs[name].append(c_client_run(build / "echo_client", port, lines, args.c_client_lines))
                cpu[name].append((cpu_seconds(process.pid) - cpu_before) / args.c_client_lines)
                runs[name].append(single_client(port, args.seconds, args.max_round_trips))
    return {name: (*max(runs[name]), max(c_runs[name]), min(cpu[name])) for name in servers}


def report_concurrent(
    name: str, result: Latencies, base_rtt: float, reference_p99: float | None = None
) -> None:
    """Print p50/p99/errors; for runs with a reference (the judged ones) also whether the target is met."""
    p50, p99 = result.percentile(0.50), result.percentile(0.99)
    ratio = p99 / base_rtt
    ok = result.errors == 0 and ratio <= 20
    print(
        f"  {name:<44} p50 {micros(p50):>9}  p99 {micros(p99):>9}  round trips {len(result.samples):>6,}  "
        f"errors {result.errors}  skipped {result.skipped}"
    )
    if reference_p99 is None:
        print(f"  {'':<44} p99 = {ratio:,.1f}x single-client round trip  (this machine's noise; not judged)")
        return
    print(
        f"  {'':<44} p99 = {ratio:,.1f}x single-client round trip  "
        f"(target <= 20x, 0 errors: {verdict(ok)}); {p99 / reference_p99:,.1f}x the 1-client paced p99"
    )


def measure_concurrent(command: list[str], args: argparse.Namespace, base_rtt: float) -> None:
    """Paced load from 1 client (how noisy this machine is), then paced and burst load from many clients."""
    with running(command) as (port, _):
        clients = open_clients(port, 1)
        try:
            reference = paced(clients, REFERENCE_RATE, args.seconds)
        finally:
            clients[0].close()
    report_concurrent(f"1 client, paced ({REFERENCE_RATE:,.0f}/s), reference", reference, base_rtt)
    reference_p99 = reference.percentile(0.99)
    with running(command) as (port, _):
        clients = open_clients(port, args.clients)
        try:
            burst(clients, 1)  # warm-up: every connection accepted and used once
            report_concurrent(
                f"{args.clients} clients, paced ({args.paced_rate:,.0f}/s overall)",
                paced(clients, args.paced_rate, args.seconds),
                base_rtt,
                reference_p99,
            )
            report_concurrent(
                f"{args.clients} clients, burst (all at once, {args.burst_rounds} rounds)",
                burst(clients, args.burst_rounds),
                base_rtt,
                reference_p99,
            )
        finally:
            for sock in clients:
                sock.close()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="length of each timed run (default 2)")
    parser.add_argument("--max-round-trips", type=int, default=200_000, help="cap per single-client run")
    parser.add_argument("--c-client-lines", type=int, default=50_000, help="lines per C echo_client run")
    parser.add_argument("--clients", type=int, default=1000, help="simultaneous clients (default 1000)")
    parser.add_argument("--paced-rate", type=float, default=2000.0, help="paced round trips/s overall")
    parser.add_argument("--burst-rounds", type=int, default=10, help="bursts of all clients at once")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    raise_fd_limit(args.clients + 64)
    server_py = [sys.executable, str(ECHO_DIR / "echo_server.py")]
    with tempfile.TemporaryDirectory(prefix="echo-rtt-") as build:
        build_c_programs(Path(build))
        servers = {
            "C server": [str(Path(build) / "echo_server")],
            "Python server": server_py,
            "Python server --concurrent": [*server_py, "--concurrent"],
            "C server with poll": [str(Path(build) / "echo_server_poll")],
        }
        print(
            f"echo_rtt: loopback 127.0.0.1, {len(MESSAGE)}-byte lines, Python {sys.version.split()[0]}, "
            f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} before the run"
        )
        print(
            f"single client: sequential round trips, best of {RUNS_PER_SERVER} alternating runs "
            f"of <= {args.seconds:g} s"
        )
        single = measure_single(servers, args, Path(build))
        print(
            f"  {'':<28} {'Python driver':>16} {'(median rtt)':>12} {'C echo_client':>16} {'server CPU':>14}"
        )
        for name, (rate, rtt, c_rate, cpu) in single.items():
            print(
                f"  {name:<28} {rate:>10,.0f} rt/s {micros(rtt):>12} {c_rate:>11,.0f} rt/s "
                f"{cpu * 1e6:>7.1f} µs/rt"
            )
        ratio = single["Python server"][0] / single["C server"][0]
        c_ratio = single["Python server"][2] / single["C server"][2]
        print(
            f"  Python / C = {ratio:.2f}x with the Python driver, {c_ratio:.2f}x with the C echo_client  "
            f"(target >= 0.8x: {verdict(min(ratio, c_ratio) >= 0.8)})"
        )

        for name in ("Python server --concurrent", "C server with poll"):
            base_rtt = single[name][1]
            print(f"{name}; ratios against its single-client median round trip, {micros(base_rtt)}")
            measure_concurrent(servers[name], args, base_rtt)
    return 0


if __name__ == "__main__":
    sys.exit(main())
