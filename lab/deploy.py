"""deploy-echo: upload the echo sources when they changed, build when needed, run the server as a service.

Where systemd runs (EC2, the sandbox's booting hosts), the server is the enabled unit
/etc/systemd/system/echo-server.service; elsewhere (a host without systemd, the sandbox's chroot hosts) it
is a supervised background process: a `setsid nohup` shell loop that restarts the server if it dies,
with its pid file and log in ~/server-socket. The chosen program and mode are recorded on the host
(`echo-server.mode`), so a re-run with nothing changed uploads, builds and restarts nothing.
"""

from __future__ import annotations

import hashlib
import io
import shlex
from dataclasses import dataclass
from pathlib import Path

from lab import facts
from lab.errors import HostError
from lab.remote import Host, Output, last_line, q
from lab.result import OK, outcome


def find_echo_dir() -> Path:
    """The echo sources: lab/echo/ in an installed labctl (pyproject ships the top-level echo/ folder there
    as package data), else the checkout's top-level echo/."""
    here = Path(__file__).resolve().parent
    installed = here / "echo"
    return installed if installed.is_dir() else here.parent / "echo"


ECHO_DIR = find_echo_dir()
REMOTE_DIR = "server-socket"  # relative to the login user's home
ECHO_PORT = 12345
SOURCE_SUFFIXES = (".c", ".h", ".py")
SOURCE_NAMES = ("Makefile",)
BUILD_INPUT_SUFFIXES = (".c", ".h")
C_BINARIES = ("echo_server", "echo_client")
C_CONCURRENT_SOURCE = "echo_server_poll.c"
UNIT_PATH = "/etc/systemd/system/echo-server.service"
UNIT_NAME = "echo-server.service"
MODE_FILE = "echo-server.mode"
PID_FILE = "echo-server.pid"
LOG_FILE = "echo-server.log"
UPLOAD_TAR = ".labctl-echo.tar"


def local_sources(echo_dir: Path = ECHO_DIR) -> dict[str, bytes]:
    """The echo sources to upload: C files, headers, Makefile and Python ports (no build products)."""
    if not echo_dir.is_dir():
        raise HostError(
            f"echo sources not found at {echo_dir}; reinstall labctl (pip install .) or use a checkout"
        )
    files = {}
    for path in sorted(echo_dir.iterdir()):
        if path.is_file() and (path.suffix in SOURCE_SUFFIXES or path.name in SOURCE_NAMES):
            files[path.name] = path.read_bytes()
    return files


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def changed_files(local: dict[str, bytes], remote: dict[str, str]) -> list[str]:
    """Names whose local sha256 differs from the remote manifest (missing remotely counts as changed)."""
    return [name for name, data in local.items() if remote.get(name) != sha256(data)]


def tar_stream(files: dict[str, bytes], names: list[str], echo_dir: Path = ECHO_DIR) -> bytes:
    """An uncompressed tar of `names` (modes as on this machine; times are set on extraction)."""
    import tarfile  # only when something changed: a re-run uploads nothing and skips this import

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name in names:
            info = tarfile.TarInfo(name)
            info.size = len(files[name])
            info.mode = 0o755 if (echo_dir / name).stat().st_mode & 0o100 else 0o644
            tar.addfile(info, io.BytesIO(files[name]))
    return buf.getvalue()


@dataclass(frozen=True)
class ServerChoice:
    """Which echo server runs on the host and how."""

    server: str = "c"
    concurrent: bool = False

    def program(self, sources: dict[str, bytes]) -> str:
        """The file in ~/server-socket that this choice runs."""
        if self.server == "python":
            return "echo_server.py"
        if self.server != "c":
            raise HostError(f"--server {self.server!r} is unknown; choose c or python")
        if not self.concurrent:
            return "echo_server"
        if C_CONCURRENT_SOURCE not in sources:
            raise HostError(
                "the C echo server has no concurrent mode (no echo/echo_server_poll.c); "
                "use --server python --concurrent"
            )
        return C_CONCURRENT_SOURCE[:-2]

    def command(self, home: str, sources: dict[str, bytes], port: int = ECHO_PORT) -> str:
        """The full command line of the server process."""
        path = f"{home}/{REMOTE_DIR}/{self.program(sources)}"
        if self.server == "python":
            flag = " --concurrent" if self.concurrent else ""
            return f"/usr/bin/python3 {path} {port}{flag}"
        return f"{path} {port}"


@dataclass(frozen=True)
class DeployFacts:
    """The host's side of deploy-echo, read in one command before anything changes."""

    home: str
    manifest: dict[str, str]  # sha256 of the sources and binaries in ~/server-socket
    make_question: int  # exit status of `make -q` (0 up to date, 1 out of date, else an error)
    make_output: str
    systemd: bool
    mode: str | None  # the recorded server command line
    unit: str | None  # the systemd unit file, where systemd runs
    running: bool  # the unit is active, or the supervised process is alive


def fact_commands(sources: dict[str, bytes]) -> dict[str, str]:
    """The commands `parse_deploy_facts` reads, in one batch (systemctl is asked only under systemd)."""
    names = [*sources, *make_targets(sources)]
    return {
        "home": facts.HOME_COMMAND,
        "manifest": facts.sha256_command(REMOTE_DIR, names),
        "make": f'cd "$HOME"/{REMOTE_DIR} 2>&1 && make -q {" ".join(make_targets(sources))} 2>&1',
        "systemd": facts.SYSTEMD_COMMAND,
        "mode": facts.file_section(f"~/{REMOTE_DIR}/{MODE_FILE}"),
        "unit": f"{facts.SYSTEMD_COMMAND} && {facts.file_section(UNIT_PATH)}",
        "running": (
            f"if {facts.SYSTEMD_COMMAND}; then systemctl is-active --quiet {UNIT_NAME}; "
            f"else {supervised_alive_script()}; fi"
        ),
    }


def parse_deploy_facts(found: dict[str, facts.Section]) -> DeployFacts:
    return DeployFacts(
        home=found["home"].text.strip(),
        manifest=facts.parse_sha256sum(found["manifest"].text),
        make_question=found["make"].exited,
        make_output=found["make"].text,
        systemd=found["systemd"].ok,
        mode=facts.file_text(found["mode"]),
        unit=facts.file_text(found["unit"]),
        running=found["running"].ok,
    )


def deploy_facts(host: Host, sources: dict[str, bytes]) -> DeployFacts:
    """Read all of deploy-echo's facts in ONE remote command."""
    found = parse_deploy_facts(facts.gather(host, fact_commands(sources)))
    host.know_home(found.home)
    return found


def upload(host: Host, sources: dict[str, bytes], remote: dict[str, str]) -> list[str]:
    """Upload the changed sources in one tar (one put, one untar); returns the changed names.

    `remote` is the sha256 manifest of ~/server-socket (the fact).
    """
    changed = changed_files(sources, remote)
    if changed and not host.dry_run:
        host.run(f'mkdir -p "$HOME"/{REMOTE_DIR}', check=True)
        host.put(tar_stream(sources, changed), f"{REMOTE_DIR}/{UPLOAD_TAR}")
        host.run(
            f'cd "$HOME"/{REMOTE_DIR} && tar -xmf {UPLOAD_TAR} && rm -f {UPLOAD_TAR}',
            check=True,
        )
    detail = ", ".join(changed) if changed else f"{len(sources)} files up to date"
    host.record("upload", outcome(bool(changed), host.dry_run), detail)
    return changed


def make_targets(sources: dict[str, bytes]) -> list[str]:
    targets = list(C_BINARIES)
    if C_CONCURRENT_SOURCE in sources:
        targets.append(C_CONCURRENT_SOURCE[:-2])
    return targets


def compile_echo(host: Host, sources: dict[str, bytes], uploaded: list[str], found: DeployFacts) -> bool:
    """Run make only when a binary is out of date; returns True when it rebuilt (or would).

    The `make -q` answer in `found` holds when nothing was uploaded; after an upload make is asked again.
    """
    targets = " ".join(make_targets(sources))
    build_inputs_changed = any(n.endswith(BUILD_INPUT_SUFFIXES) or n == "Makefile" for n in uploaded)
    if host.dry_run and build_inputs_changed:
        host.record("compile", outcome(True, True), "sources changed")
        return True
    if uploaded:
        question = host.run(f'cd "$HOME"/{REMOTE_DIR} && make -q {targets}')
    else:
        question = Output(found.make_output, "", found.make_question)
    if question.exited == 0:
        host.record("compile", OK, f"{targets} up to date")
        return False
    if question.exited != 1:
        raise HostError(f"{host.name}: make failed: {last_line(question)}; run fab provision (gcc, make)")
    if not host.dry_run:
        built = host.run(f'cd "$HOME"/{REMOTE_DIR} && make {targets}')
        if not built.ok:
            raise HostError(f"{host.name}: compiling the echo programs failed: {last_line(built)}")
    host.record("compile", outcome(True, host.dry_run), f"built {targets}")
    return True


def render_unit(user: str, home: str, command: str) -> str:
    """The systemd unit that runs the echo server as the login user."""
    return (
        "[Unit]\n"
        f"Description=labctl echo server (TCP {ECHO_PORT})\n"
        "After=network.target\n\n"
        "[Service]\n"
        f"User={user}\n"
        f"WorkingDirectory={home}/{REMOTE_DIR}\n"
        f"ExecStart={command}\n"
        "Restart=always\n"
        "RestartSec=1\n\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )


def supervisor_script(command: str) -> str:
    """A detached shell loop that runs `command` and restarts it if it exits; pid file and log alongside."""
    loop = f'while :; do {command}; echo "labctl: server exited ($?), restarting"; sleep 1; done'
    # Only the simple command is put in the background: a backgrounded `cd && ...` list would leave a
    # subshell holding the SSH channel's stdout open, and the remote command would never end.
    return (
        f'cd "$HOME"/{REMOTE_DIR} && {{ '
        f"setsid nohup sh -c {shlex.quote(loop)} >> {LOG_FILE} 2>&1 < /dev/null & "
        f"echo $! > {PID_FILE}; }}"
    )


def stop_supervised_script() -> str:
    """Stop the supervised process group, if its pid file names a live one."""
    pid_file = f'"$HOME"/{REMOTE_DIR}/{PID_FILE}'
    return (
        f"if [ -f {pid_file} ]; then pid=$(cat {pid_file}); "
        "kill -TERM -$pid 2>/dev/null; "
        "for i in $(seq 50); do kill -0 -$pid 2>/dev/null || break; sleep 0.1; done; "
        "kill -KILL -$pid 2>/dev/null; "
        f"rm -f {pid_file}; fi; true"
    )


def supervised_alive_script() -> str:
    """Exit 0 when the pid file names a live (not zombie) process."""
    pid_file = f'"$HOME"/{REMOTE_DIR}/{PID_FILE}'
    return (
        f'pid=$(cat {pid_file} 2>/dev/null) && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null '
        "&& ! grep -q '^[^)]*) Z' /proc/$pid/stat"
    )


def recorded_mode(host: Host) -> str | None:
    """The server command line deploy-echo recorded on the host (None before the first deploy)."""
    return host.read_file(f"~/{REMOTE_DIR}/{MODE_FILE}")


def echo_service(host: Host, command: str, program_changed: bool, found: DeployFacts) -> None:
    """Run `command` as the echo service; (re)start only when it is down, its mode or program changed."""
    systemd = found.systemd
    mode_text = command + "\n"
    mode_changed = found.mode != mode_text
    running = found.running
    if systemd:
        unit = render_unit(host.user, host.home, command)
        unit_changed = found.unit != unit
        restart = unit_changed or mode_changed or program_changed or not running
        if restart and not host.dry_run:
            if unit_changed:
                host.write_file(UNIT_PATH, unit, sudo=True)
            host.sudo(
                f"systemctl daemon-reload && systemctl enable --quiet {UNIT_NAME} && "
                f"systemctl stop {UNIT_NAME}",
                check=True,
            )
            refuse_busy_port(host)
            host.sudo(f"systemctl start {UNIT_NAME}", check=True)
    else:
        restart = mode_changed or program_changed or not running
        if restart and not host.dry_run:
            host.run(stop_supervised_script(), check=True)
            refuse_busy_port(host)
            host.run(supervisor_script(command), check=True)
    if restart and not host.dry_run:
        host.write_file(f"~/{REMOTE_DIR}/{MODE_FILE}", mode_text)
        wait_listening(host)
    kind = "systemd unit" if systemd else "supervised process"
    why = restart_reason(running, mode_changed, program_changed)
    detail = f"{kind}: {command}" + (f" ({why})" if restart else "")
    host.record("echo service", outcome(restart, host.dry_run), detail)


def port_in_use(host: Host, port: int = ECHO_PORT) -> bool:
    """Whether something accepts connections on 127.0.0.1:`port` on the host (bash's /dev/tcp)."""
    return host.run(f"bash -c {q(f'exec 3<>/dev/tcp/127.0.0.1/{port}')} 2>/dev/null").ok


def refuse_busy_port(host: Host, port: int = ECHO_PORT) -> None:
    """After stopping our server: a listener left on the port is someone else's (a hand-started server)."""
    if port_in_use(host, port):
        raise HostError(
            f"{host.name}: port {port} is in use by a program labctl did not start (an echo server run by "
            f"hand?); stop it (Ctrl-C, or kill its pid from `ss -ltnp`) and re-run deploy-echo"
        )


def restart_reason(running: bool, mode_changed: bool, program_changed: bool) -> str:
    if not running:
        return "was not running"
    if mode_changed:
        return "server or mode changed"
    return "program changed" if program_changed else ""


def wait_listening(host: Host, port: int = ECHO_PORT) -> None:
    """Wait until something accepts on 127.0.0.1:`port` on the host (bash's /dev/tcp), else HostError."""
    probe = f"exec 3<>/dev/tcp/127.0.0.1/{port}"
    script = f"for i in $(seq 100); do ( {probe} ) 2>/dev/null && exit 0; sleep 0.1; done; exit 1"
    if not host.run(f"bash -c {q(script)}").ok:
        log = host.run(f'tail -n 3 "$HOME"/{REMOTE_DIR}/{LOG_FILE} 2>/dev/null').stdout.strip()
        raise HostError(
            f"{host.name}: the echo server did not start listening on {port}"
            + (f" (log: {log.splitlines()[-1]})" if log else "")
            + "; is another program using the port?"
        )


def deploy_echo(host: Host, choice: ServerChoice, echo_dir: Path = ECHO_DIR) -> None:
    """Upload, build and run the echo server on one connected host."""
    sources = local_sources(echo_dir)
    program = choice.program(sources)  # rejects impossible choices before touching the host
    found = deploy_facts(host, sources)
    uploaded = upload(host, sources, found.manifest)
    if choice.server == "python":
        compile_echo(host, sources, uploaded, found)
        program_changed = program in uploaded
    else:
        program_changed = build_changes_binary(host, sources, uploaded, program, found)
    echo_service(host, choice.command(host.home, sources), program_changed, found)


def build_changes_binary(
    host: Host, sources: dict[str, bytes], uploaded: list[str], binary: str, found: DeployFacts
) -> bool:
    """Compile; True when the server binary itself differs afterwards (a client-only change keeps it)."""
    before = found.manifest.get(binary)
    if not compile_echo(host, sources, uploaded, found):
        return False
    if host.dry_run:
        return before is None or f"{binary}.c" in uploaded or "Makefile" in uploaded
    return facts.sha256_manifest(host, REMOTE_DIR, [binary]).get(binary) != before
