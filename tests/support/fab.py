"""Running the real `fab` in a subprocess against a moto server on 127.0.0.1 (AWS_ENDPOINT_URL)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FAB = Path(sys.executable).with_name("fab")

SERVER = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from sandbox import moto_images
moto_images.install(Path(sys.argv[2]))
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=int(sys.argv[3]), verbose=False)
server.start()
print("ready", flush=True)
sys.stdin.read()
server.stop()
"""


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto server exited: {process.stderr.read()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("moto server did not start")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def moto_server_process(
    amis: Path, port: int, *, script: str = SERVER, extra: tuple[str, ...] = (), env: dict | None = None
) -> Iterator[str]:
    """A moto server (`script`, default SERVER) on 127.0.0.1:`port` with the Canonical catalogue in `amis`;
    yields its endpoint, then stops it by closing its stdin (killed by its PID if it does not exit)."""
    process = subprocess.Popen(
        [sys.executable, "-c", script, str(REPO), str(amis), str(port), *extra],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        wait_for_port(port, process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def isolated_fab_env(tmp_path: Path, **extra: str) -> dict:
    """The environment for a `fab` subprocess: fake credentials, no AWS config or instance metadata,
    a private state dir; `extra` adds or overrides variables (e.g. AWS_ENDPOINT_URL)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "LAB_"))}
    env.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_CONFIG_FILE=str(tmp_path / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-aws-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
        LAB_STATE_DIR=str(tmp_path / "state"),
    )
    env.update(extra)
    return env
