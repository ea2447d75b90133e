"""Security defaults: SSH ingress from the operator's /32, --open-world warns, no secret in any output or
log, private files stay private (also under umask 000)."""

from __future__ import annotations

import io
import os
import stat
import subprocess
from pathlib import Path
from typing import Callable

import pytest

from infra import security_group as groups
from labctl.options import ProvisionOptions
from labctl.output import Report
from labctl.single import provisioning
from tests.support.fab import FAB, REPO, isolated_fab_env

from .conftest import REGION

SECRET = "hardening/Secret+0123456789abcdefghijKLMNOPQR"  # 44 characters, shaped like an AWS secret key


def _provision(report: Report, **options) -> None:
    provisioning.provision(ProvisionOptions(target="aws", cloud_only=True, **options), report)


def _sources(ec2) -> set[str]:
    (group,) = [g for g in ec2.describe_security_groups()["SecurityGroups"] if g["GroupName"] != "default"]
    return {rule.source for rule in groups.group_rules(group)}


def test_ssh_ingress_defaults_to_the_operators_address_slash_32_on_aws(ec2, monkeypatch):
    lookups = []

    def operator_ip() -> str:
        lookups.append(1)
        return "198.51.100.77"

    monkeypatch.setattr("infra.operator_ip.operator_public_ip", operator_ip)
    err = io.StringIO()
    _provision(Report(io.StringIO(), err))
    assert _sources(ec2) == {"198.51.100.77/32"}
    assert len(lookups) == 1
    assert err.getvalue() == ""


def test_open_world_warns_on_stderr_and_opens_every_rule_to_the_world(ec2):
    out, err = io.StringIO(), io.StringIO()
    _provision(Report(out, err), open_world=True)
    assert _sources(ec2) == {"0.0.0.0/0"}
    assert err.getvalue().splitlines() == [
        "warning: --open-world: SSH, ICMP and port 12345 are open to the whole internet"
    ]
    assert "warning" not in out.getvalue()


# --- the real fab command: nothing secret in what it prints or writes, private modes under umask 000 ----


def _private_key_lines(key_file: Path) -> list[str]:
    """The base64 body of a private key file (the part that must never leave the file)."""
    lines = key_file.read_text().splitlines()
    body = [line for line in lines if line and not line.startswith("-----")]
    assert body, f"{key_file} has no key body"
    return body


def _assert_private_modes(state_dir: Path) -> None:
    """State dir and key dir 0700, state.json and key files 0600, nothing else open to others."""
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((state_dir / "state.json").stat().st_mode) == 0o600
    for key_file in (state_dir / "keys").iterdir():
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600, key_file
    assert stat.S_IMODE((state_dir / "keys").stat().st_mode) == 0o700


def _assert_no_secret(texts: dict[str, str], secrets: list[str]) -> None:
    for where, text in texts.items():
        assert "PRIVATE KEY" not in text, where
        for secret in secrets:
            assert secret not in text, f"a secret appears in {where}"


def _fab_env(tmp_path: Path, **extra: str) -> dict:
    secrets = {"AWS_ACCESS_KEY_ID": "AKIAHARDENINGTEST000", "AWS_SECRET_ACCESS_KEY": SECRET}
    return isolated_fab_env(tmp_path, **secrets, **extra)


def _run_fab(env: dict, *args: str) -> subprocess.CompletedProcess:
    """`fab ARGS` under umask 000, so every private mode must be set on purpose."""
    return subprocess.run(
        [str(FAB), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=lambda: os.umask(0),
    )


def _lifecycle(
    env: dict,
    target: str,
    state_dir: Path,
    before_teardown: Callable[[], dict[str, str]] = dict,
    host_steps: bool = False,
) -> tuple[dict[str, str], list[str]]:
    """provision, plan, status (text and JSON), teardown; returns every output and the key's body.

    `host_steps`: provision also sets the host up, then deploy-echo and verify run too.
    `before_teardown` checks what exists only while the lab runs and returns more texts to search.
    """
    outputs: dict[str, str] = {}
    cloud_only = () if host_steps else ("--cloud-only",)
    provision = _run_fab(env, "provision", "--target", target, *cloud_only)
    assert provision.returncode == 0, provision.stdout + provision.stderr
    _assert_private_modes(state_dir)
    key_body = _private_key_lines(next((state_dir / "keys").iterdir()))
    outputs["state.json"] = (state_dir / "state.json").read_text()
    again = ("provision", "--target", target, *cloud_only)
    on_the_host = (("deploy-echo",), ("verify",)) if host_steps else ()
    for args in (again, ("plan",), ("status",), ("status", "--json"), *on_the_host):
        result = _run_fab(env, *args)
        assert result.returncode == 0, f"fab {args}: {result.stdout}{result.stderr}"
        outputs[f"fab {' '.join(args)} stdout"] = result.stdout
        outputs[f"fab {' '.join(args)} stderr"] = result.stderr
    outputs["fab provision (first) stdout"] = provision.stdout
    outputs["fab provision (first) stderr"] = provision.stderr
    _assert_private_modes(state_dir)
    outputs.update(before_teardown())
    teardown = _run_fab(env, "teardown")
    assert teardown.returncode == 0, teardown.stderr
    outputs["fab teardown stdout"] = teardown.stdout
    outputs["fab teardown stderr"] = teardown.stderr
    outputs["state.json after teardown"] = (state_dir / "state.json").read_text()
    return outputs, key_body


@pytest.mark.slow
def test_fab_against_moto_prints_and_stores_no_secret_with_private_modes(moto_server, tmp_path):  # noqa: F811
    env = _fab_env(tmp_path, AWS_ENDPOINT_URL=moto_server)
    outputs, key_body = _lifecycle(env, "aws", tmp_path / "state")
    _assert_no_secret(outputs, [SECRET, *key_body])
    assert REGION in outputs["fab status stdout"]


def _sandbox_files(state_dir: Path) -> dict[str, str]:
    """The sandbox daemon's own files are closed to other users; returns its logs to search for secrets."""
    sandbox_dir = state_dir / "sandbox"
    assert stat.S_IMODE(sandbox_dir.stat().st_mode) & 0o077 == 0
    open_to_others = [p.name for p in sandbox_dir.iterdir() if stat.S_IMODE(p.stat().st_mode) & 0o007]
    assert open_to_others == []
    logs = {"daemon.log": (sandbox_dir / "daemon.log").read_text(errors="replace")}
    for console in sandbox_dir.glob("hosts/*/console.log"):
        logs[str(console.relative_to(sandbox_dir))] = console.read_text(errors="replace")
    assert len(logs) > 1, "no host console log found"
    return logs


@pytest.mark.root
@pytest.mark.slow
def test_fab_on_the_sandbox_prints_and_logs_no_secret_with_private_modes(tmp_path):
    """The whole main job (host setup, deploy-echo, verify included) on the sandbox."""
    from sandbox.rootfs import rootfs_path
    from sandbox.testhost import stop_sandbox

    if not rootfs_path().exists():
        pytest.skip("the sandbox root filesystem is not built yet (fab provision --target sandbox builds it)")
    state_dir = tmp_path / "state"
    try:
        outputs, key_body = _lifecycle(
            _fab_env(tmp_path), "sandbox", state_dir, lambda: _sandbox_files(state_dir), host_steps=True
        )
    finally:
        if state_dir.exists():
            stop_sandbox(state_dir)
    _assert_no_secret(outputs, [SECRET, *key_body])


def test_state_files_become_private_even_when_they_existed_open(ec2, tmp_path, monkeypatch):
    """An old state dir with open modes and a stale temp file from a crash: provision closes them all."""
    state_dir = tmp_path / "old-state"
    (state_dir / "keys").mkdir(parents=True)
    for path in (state_dir, state_dir / "keys"):
        path.chmod(0o755)
    (state_dir / "state.tmp").write_text("{}")
    (state_dir / "state.tmp").chmod(0o644)
    monkeypatch.setenv("LAB_STATE_DIR", str(state_dir))
    _provision(Report(io.StringIO(), io.StringIO()), ssh_cidr="198.51.100.0/24")
    _assert_private_modes(state_dir)
