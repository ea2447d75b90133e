"""Issue 12 item 8: the cut botocore model cache heals itself, paginates everything, and is pruned."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest
from moto import mock_aws

from infra import models, session
from tests.support.fab import FAB, REPO, isolated_fab_env

from .conftest import REGION


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A private model cache, and a fresh process-wide loader before and after the test."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    session.data_loader.cache_clear()
    yield tmp_path / "cache" / "labctl" / "botocore-models"
    session.data_loader.cache_clear()


def _cut_file(root, service: str = "ec2"):
    (path,) = (root / service).glob(f"*/{models.MODEL_TYPE}.json")
    return path


def test_a_truncated_cut_model_is_cut_again(cache):
    root = models.trimmed_models_dir(session.botocore_loader())
    cut = _cut_file(root)
    whole = cut.read_bytes()
    cut.write_bytes(whole[: len(whole) // 2])  # a full disk, a copy cut short
    assert models.trimmed_models_dir(session.botocore_loader()) == root
    assert cut.read_bytes() == whole


def test_a_cut_model_damaged_inside_falls_back_to_the_whole_model_and_is_discarded(cache, monkeypatch):
    root = models.trimmed_models_dir(session.botocore_loader())
    cut = _cut_file(root)
    cut.write_text('{"metadata": oops}')  # ends like a whole file, yet is not JSON
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        ec2 = session.client(session.aws_session(REGION), "ec2")
        assert ec2.describe_vpcs()["Vpcs"]
    assert not cut.exists()  # the next run cuts it again
    session.data_loader.cache_clear()
    models.trimmed_models_dir(session.botocore_loader())
    json.loads(_cut_file(root).read_text())


def test_fab_with_a_damaged_cache_runs_and_repairs_it(cache, tmp_path, moto_server):
    env = isolated_fab_env(tmp_path, AWS_ENDPOINT_URL=moto_server, XDG_CACHE_HOME=str(tmp_path / "cache"))
    args = [str(FAB), "plan", "--target", "aws", "--ssh-cidr", "198.51.100.7/32"]
    first = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    for damage in (lambda b: b[:100], lambda b: b"{" + b[2:]):  # cut short; damaged inside
        cut = _cut_file(next(cache.iterdir()))
        cut.write_bytes(damage(cut.read_bytes()))
        again = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
        assert again.returncode == 0 and "Traceback" not in again.stderr, again.stderr
        assert again.stdout == first.stdout
    third = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert third.returncode == 0 and third.stdout == first.stdout
    json.loads(_cut_file(next(cache.iterdir())).read_text())  # whole again


def test_a_paginator_for_an_operation_outside_the_cut_list_works(cache, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        ec2 = session.client(session.aws_session(REGION), "ec2")
        assert "DescribeRouteTables" not in ec2.meta.service_model.operation_names
        assert ec2.can_paginate("describe_route_tables") and ec2.can_paginate("describe_instances")
        pages = ec2.get_paginator("describe_route_tables").paginate()
        tables = [t for page in pages for t in page["RouteTables"]]  # the default VPC's main table
        assert tables
        pages = list(ec2.get_paginator("describe_instances").paginate())  # a listed one: the cut client
        assert pages and pages[0]["Reservations"] == []


def test_old_cache_directories_are_pruned_recent_ones_kept(cache):
    cache.mkdir(parents=True)
    old, recent = cache / "0123456789abcdef", cache / "fedcba9876543210"
    for directory in (old, recent):
        (directory / "ec2").mkdir(parents=True)
    month_ago = time.time() - (models.PRUNE_AFTER_DAYS + 1) * 86400
    os.utime(old, (month_ago, month_ago))
    root = models.trimmed_models_dir(session.botocore_loader())
    assert sorted(p.name for p in cache.iterdir()) == sorted([root.name, recent.name])
    os.utime(root, (month_ago, month_ago))
    models.trimmed_models_dir(session.botocore_loader())
    assert root.stat().st_mtime > month_ago + 86400  # in use: touched, so another version never prunes it
