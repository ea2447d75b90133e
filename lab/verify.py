"""verify: check the lab from this machine and on the host; every failure names its probable cause."""

from __future__ import annotations

import shutil
import socket
import subprocess
from typing import Callable

from lab import deploy, facts, localping, mirror, vimrc
from lab.errors import HostError
from lab.remote import Host, q
from lab.result import FAILED, PASSED, HostReport, StepResult

MESSAGES = ("즐거운 네트워크 수업시간!", "안녕 싸피")
TCP_TIMEOUT = 5.0
SPARE_PORT = 12346
SPARE_PID_FILE = ".labctl-spare-server.pid"
KST = "KST"


class CheckFailed(Exception):
    """A check did not pass; the message is what happened and its probable cause."""


def check(report: HostReport, host: str, name: str, func: Callable[[], str]) -> bool:
    """Run one check; record pass with its detail, or fail with the CheckFailed/HostError message."""
    try:
        detail = func()
    except (CheckFailed, HostError) as exc:
        report.add(StepResult(host, name, FAILED, str(exc)))
        return False
    report.add(StepResult(host, name, PASSED, detail))
    return True


# ---- from this machine ------------------------------------------------------------------------------


def ping(address: str) -> str:
    """Two `ping` echo requests (2 s per reply, 5 s in all), with this platform's flags (lab.localping)."""
    if shutil.which("ping") is None:
        raise CheckFailed(localping.install_hint())
    proc = subprocess.run(localping.ping_command(address), capture_output=True, text=True, timeout=15)
    if not localping.got_reply(proc.returncode, proc.stdout):
        raise CheckFailed(
            f"no ping reply from {address}: the security group has no ICMP rule from your address, "
            f"or the instance is down"
        )
    return localping.summary(proc.stdout)


def open_echo(address: str, port: int) -> socket.socket:
    try:
        return socket.create_connection((address, port), timeout=TCP_TIMEOUT)
    except socket.timeout:
        raise CheckFailed(
            f"TCP {port} timed out: the security group has no rule for {port} from your address"
        ) from None
    except ConnectionRefusedError:
        raise CheckFailed(
            f"TCP {port} refused: no echo server listens on {port} (run fab deploy-echo)"
        ) from None
    except OSError as exc:
        raise CheckFailed(f"TCP {port}: {exc.strerror or exc} (is the instance running?)") from None


def receive_exactly(sock: socket.socket, size: int) -> bytes:
    """Read until `size` bytes arrived, the peer closed, or the timeout hit."""
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def round_trip(sock: socket.socket, text: str) -> None:
    """Send `text` and expect exactly its bytes back (no newline added)."""
    sent = text.encode()
    sock.sendall(sent)
    try:
        got = receive_exactly(sock, len(sent))
    except socket.timeout:
        raise CheckFailed(f"no echo for {text!r} within {TCP_TIMEOUT:.0f} s: the server hangs") from None
    if got != sent:
        raise CheckFailed(f"echo differs for {text!r}: got {got!r} (is the lab's echo server running?)")


def expect_close_after_exit(sock: socket.socket) -> None:
    """Send `exit`: the server must close the connection without replying."""
    sock.sendall(b"exit")
    try:
        extra = sock.recv(100)
    except socket.timeout:
        raise CheckFailed("`exit` did not close the connection: the server ignores exit") from None
    except ConnectionResetError:
        return
    if extra:
        raise CheckFailed(f"`exit` was answered with {extra!r} instead of closing the connection")


def tcp_echo(address: str, port: int = deploy.ECHO_PORT) -> str:
    """Round trips of the course's Korean messages, then `exit` closes the connection."""
    with open_echo(address, port) as sock:
        sock.settimeout(TCP_TIMEOUT)
        try:
            for text in MESSAGES:
                round_trip(sock, text)
            expect_close_after_exit(sock)
        except ConnectionError as exc:
            raise CheckFailed(
                f"TCP {port}: connection broken ({exc}); see ~/server-socket/echo-server.log"
            ) from None
    return f"{len(MESSAGES)} round trips exact, exit closed the connection"


# ---- on the host ------------------------------------------------------------------------------------


def nc_round_trip(host: Host, port: int = deploy.ECHO_PORT) -> str:
    """`nc 127.0.0.1 PORT` on the host: one message back, exactly."""
    if not facts.has_command(host, "nc"):
        raise CheckFailed("nc is not installed on the host (run fab provision: it installs netcat-openbsd)")
    text = MESSAGES[1]
    out = host.run(f"printf '%s\\n' {q(text)} | timeout 10 nc -N 127.0.0.1 {port}")
    if out.stdout != text:
        raise CheckFailed(f"nc 127.0.0.1 {port} got {out.stdout!r} (exit {out.exited}); is the server up?")
    return f"{text!r} echoed"


def client_program(client: str) -> str:
    return "python3 ./echo_client.py" if client == "python" else "./echo_client"


def client_round_trip(host: Host, client: str, port: int = deploy.ECHO_PORT) -> str:
    """The C or Python client on the host: each message printed back on its own line."""
    lines = "".join(f"{q(text)} " for text in MESSAGES)
    script = (
        f'cd "$HOME"/{deploy.REMOTE_DIR} && '
        f"printf '%s\\n' {lines}exit | timeout 10 {client_program(client)} 127.0.0.1 {port}"
    )
    out = host.run(script)
    printed = out.stdout.splitlines()
    missing = [text for text in MESSAGES if text not in printed]
    if missing or not out.ok:
        cause = "run fab deploy-echo" if out.exited == 127 else "is the server up?"
        raise CheckFailed(
            f"{client} client on port {port} (exit {out.exited}) did not print "
            f"{missing or 'cleanly'}: {cause}"
        )
    return f"{len(MESSAGES)} replies printed"


def running_server(host: Host) -> str:
    """`c` or `python`, from the mode the deploy recorded."""
    mode = deploy.recorded_mode(host)
    if mode is None:
        raise CheckFailed("no echo server was deployed here (run fab deploy-echo)")
    return "python" if "echo_server.py" in mode else "c"


def spare_server_command(server: str, port: int) -> str:
    program = "python3 ./echo_server.py" if server == "python" else "./echo_server"
    return (
        f'cd "$HOME"/{deploy.REMOTE_DIR} && (setsid {program} {port} > /dev/null 2>&1 < /dev/null & '
        f"echo $! > {SPARE_PID_FILE})"
    )


def stop_spare_command() -> str:
    pid_file = f'"$HOME"/{deploy.REMOTE_DIR}/{SPARE_PID_FILE}'
    return f"[ -f {pid_file} ] && kill $(cat {pid_file}) 2>/dev/null; rm -f {pid_file}; true"


def other_server(host: Host, port: int = SPARE_PORT) -> str:
    """The implementation that is not deployed, on a spare port, against both clients."""
    other = "c" if running_server(host) == "python" else "python"
    if deploy.port_in_use(host, port):
        raise CheckFailed(f"spare port {port} is already in use on the host; stop what listens there")
    host.run(spare_server_command(other, port), check=True)
    try:
        deploy.wait_listening(host, port)
        for client in ("c", "python"):
            client_round_trip(host, client, port)
    finally:
        host.run(stop_spare_command())
    return f"{other} server on {port}: C and Python clients ok"


def os_fact(host: Host) -> str:
    """What the OS really is (the sandbox is Debian 12, not Ubuntu)."""
    release = facts.os_release(host)
    name = release.get("PRETTY_NAME", "unknown")
    if release.get("ID") != "ubuntu":
        return f"{name} (not Ubuntu: the course's 20.04 steps ran on it as far as they apply)"
    return name


def timezone_fact(host: Host) -> str:
    zone = host.run("date +%Z").stdout.strip()
    if zone != KST:
        raise CheckFailed(f"timezone abbreviation is {zone or 'unknown'}, not {KST} (run fab provision)")
    return f"{KST} ({facts.timezone(host) or 'zone name unknown'})"


def mirror_fact(host: Host) -> str:
    """The hosts apt uses; fails while an EC2/Ubuntu archive entry is left (the step was not run)."""
    in_use: list[str] = []
    for path in mirror.SOURCE_FILES:
        text = host.read_file(path)
        for name in mirror.active_hosts(text or "", path):
            if name not in in_use:
                in_use.append(name)
    left = [name for name in in_use if mirror.UBUNTU_ARCHIVE_HOST.match(name)]
    if left:
        raise CheckFailed(f"apt still uses {', '.join(left)} (run fab provision)")
    return "in use: " + (", ".join(in_use) or "no entries found")


def tool_version(host: Host, program: str) -> str:
    version = facts.first_line_version(host, program)
    if version is None:
        raise CheckFailed(f"{program} is not installed on the host (run fab provision)")
    return version


def vimrc_fact(host: Host) -> str:
    missing = vimrc.missing_lines(host.read_file(vimrc.VIMRC) or "")
    if missing:
        raise CheckFailed(f"~/.vimrc lacks {', '.join(missing)} (run fab provision)")
    return ", ".join(vimrc.REQUIRED_LINES)


def verify_from_here(report: HostReport, name: str, address: str) -> bool:
    results = [
        check(report, name, "ping", lambda: ping(address)),
        check(report, name, f"tcp {deploy.ECHO_PORT}", lambda: tcp_echo(address)),
    ]
    return all(results)


def verify_on_host(host: Host) -> bool:
    """All checks that run over SSH; returns True when every one passed."""
    checks: list[tuple[str, Callable[[], str]]] = [
        ("os", lambda: os_fact(host)),
        ("timezone", lambda: timezone_fact(host)),
        ("apt mirror", lambda: mirror_fact(host)),
        ("gcc", lambda: tool_version(host, "gcc")),
        ("make", lambda: tool_version(host, "make")),
        (".vimrc", lambda: vimrc_fact(host)),
        ("nc on host", lambda: nc_round_trip(host)),
        ("c client", lambda: client_round_trip(host, "c")),
        ("python client", lambda: client_round_trip(host, "python")),
        ("other server", lambda: other_server(host)),
    ]
    return all([check(host.report, host.name, name, func) for name, func in checks])
