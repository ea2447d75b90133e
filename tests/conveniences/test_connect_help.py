"""The connect-by-hand lines: ssh command quoting per platform, MobaXterm fields, the JSON object."""

from __future__ import annotations

import os
import shlex
import sys

from labctl import connect_help

SPACED_KEY = "/home/kim min/lab/.lab/keys/labctl-netlab.pem"
WINDOWS_KEY = r"C:\Users\Kim Min\lab\.lab\keys\labctl-netlab.pem"


def test_posix_ssh_line_quotes_a_key_path_with_spaces_as_one_word():
    line = connect_help.ssh_command("198.51.100.10", SPACED_KEY, windows=False)
    assert shlex.split(line) == ["ssh", "-i", SPACED_KEY, "ubuntu@198.51.100.10"]


def test_plain_paths_stay_unquoted():
    assert connect_help.ssh_command("198.51.100.10", "/k/lab.pem", windows=False) == (
        "ssh -i /k/lab.pem ubuntu@198.51.100.10"
    )


def test_windows_ssh_line_uses_double_quotes(monkeypatch):
    monkeypatch.setattr(os, "name", "nt")
    line = connect_help.ssh_command("198.51.100.10", WINDOWS_KEY)
    assert line == f'ssh -i "{WINDOWS_KEY}" ubuntu@198.51.100.10'


def test_windows_detected_from_sys_platform_too(monkeypatch):
    monkeypatch.setattr(sys, "platform", "win32")
    assert connect_help.is_windows()


def test_other_port_and_no_key():
    assert connect_help.ssh_command("198.51.100.10", None, port=2222, windows=False) == (
        "ssh -p 2222 ubuntu@198.51.100.10"
    )


def test_mobaxterm_settings_are_the_courses_fields():
    assert connect_help.mobaxterm_settings("198.51.100.10", SPACED_KEY) == {
        "remote_host": "198.51.100.10",
        "specify_username": "ubuntu",
        "port": 22,
        "private_key": SPACED_KEY,
    }


def test_connection_lines_name_fab_ssh_ssh_and_mobaxterm():
    lines = connect_help.connection_lines("i-0abc", "198.51.100.10", SPACED_KEY)
    assert lines[0] == "connect to i-0abc: fab ssh"
    assert lines[1].startswith("ssh by hand: ssh -i '/home/kim min/")
    assert "Remote host 198.51.100.10" in lines[2] and "Specify username ubuntu" in lines[2]
    assert "Port 22" in lines[2] and f"Use private key: {SPACED_KEY}" in lines[2]
    assert not any(line.startswith(" ") for line in lines)  # indented provision lines are results


def test_several_instances_name_the_instance_flag():
    lines = connect_help.connection_lines("i-0abc", "198.51.100.10", None, several=True)
    assert lines[0] == "connect to i-0abc: fab ssh --instance i-0abc"
    assert "(your own private key)" in lines[2]


def test_no_public_address_means_no_connection_help():
    assert connect_help.connection_lines("i-0abc", None, SPACED_KEY) == []
    assert connect_help.connection_info(None, SPACED_KEY) is None
