"""libFuzzer on echo_server.c's request handling: a short bounded run finds nothing, and the harness's
reply oracle does catch a server that answers wrongly."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ECHO = Path(__file__).resolve().parents[2] / "echo"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("clang") is None, reason="needs clang (apt-get install clang)"),
]


def test_bounded_fuzz_run_finds_no_crash_or_wrong_reply(tmp_path):
    result = subprocess.run(
        [str(ECHO / "fuzz" / "run.sh"), "15"],
        capture_output=True,
        text=True,
        timeout=240,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "TMPDIR": str(tmp_path)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == "fuzz: no crash in 15 s"
    assert list(tmp_path.iterdir()) == []  # the work dir is removed after a clean run


def _replay(harness: Path, seed: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(harness), str(seed)], capture_output=True, text=True, timeout=60)


def test_harness_aborts_when_the_server_keeps_the_carriage_return(tmp_path):
    """A copy of the server that forgets to strip "\\r": the seed "hello\\r\\n" alone must fail."""
    copy = tmp_path / "echo"
    shutil.copytree(ECHO, copy, ignore=shutil.ignore_patterns("echo_server", "echo_client", "*_asan"))
    source = copy / "echo_server.c"
    original = "buf[len - 1] == '\\r'"
    assert original in source.read_text()
    source.write_text(source.read_text().replace(original, "buf[len - 1] == '\\t'"))
    subprocess.run(["make", "-s", "-C", str(copy), "fuzz"], check=True, timeout=120)
    seed = tmp_path / "crlf"
    seed.write_bytes(b"\x06hello\r\n")

    subprocess.run(["make", "-s", "-C", str(ECHO), "fuzz", f"OUT={tmp_path}"], check=True, timeout=120)

    broken = _replay(copy / "fuzz_server", seed)
    good = _replay(tmp_path / "fuzz_server", seed)
    assert broken.returncode != 0 and "deadly signal" in broken.stderr
    assert good.returncode == 0, good.stderr
