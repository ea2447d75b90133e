"""Sandbox host disks (sandbox/disk.py): on one tmpfs, made per host, kept across boots, removed with the
host, orphans cleaned up, the tmpfs unmounted when the last disk goes, a lost disk reported."""

from __future__ import annotations

import os
import shutil

import pytest

from sandbox import disk


def _fs_type(path) -> str:
    with open("/proc/self/mounts") as mounts:
        types = {line.split()[1]: line.split()[2] for line in mounts}
    return types.get(str(path), "")


@pytest.fixture
def disks(tmp_path, monkeypatch):
    """An own disks mount point for the test (the real one may hold live hosts' disks); unmounted after."""
    where = tmp_path / "disks"
    monkeypatch.setattr(disk, "DISKS", where)
    yield where
    if disk._mounted():
        os.system(f"umount {where}")


pytestmark = pytest.mark.root


def test_a_disk_is_made_on_tmpfs_once_and_kept(disks, tmp_path):
    host_dir = tmp_path / "hosts" / "i-0abc"
    target = disk.attach(host_dir)
    assert _fs_type(disks) == "tmpfs" and target.parent == disks
    assert disk.upper(host_dir).resolve() == target / "upper" and disk.work(host_dir).is_dir()
    (disk.upper(host_dir) / "kept").write_text("yes")
    assert disk.attach(host_dir) == target  # a second boot: the same disk
    assert (disk.upper(host_dir) / "kept").read_text() == "yes"
    assert disk.in_use() == [str(host_dir.resolve())]
    assert oct(disks.stat().st_mode & 0o777) == "0o700"


def test_removing_the_last_disk_unmounts_the_tmpfs(disks, tmp_path):
    first, second = tmp_path / "hosts" / "i-01", tmp_path / "hosts" / "i-02"
    disk.attach(first)
    disk.attach(second)
    disk.remove(first)
    assert not (first / disk.LINK).is_symlink() and _fs_type(disks) == "tmpfs"
    assert disk.in_use() == [str(second.resolve())]
    disk.remove(second)
    assert _fs_type(disks) == "" and disk.in_use() == []
    disk.remove(second)  # again: nothing to do


def test_orphaned_disks_are_removed_and_owned_ones_kept(disks, tmp_path):
    kept, gone = tmp_path / "a" / "i-01", tmp_path / "b" / "i-02"
    disk.attach(kept)
    orphan = disk.attach(gone)
    shutil.rmtree(tmp_path / "b")  # a state dir deleted by hand
    assert disk.remove_orphans() == [f"disk {orphan.name} of {gone.resolve()}"]
    assert not orphan.exists() and disk.in_use() == [str(kept.resolve())]
    disk.remove(kept)
    assert disk.remove_orphans() == [] and _fs_type(disks) == ""


def test_a_disk_gone_since_the_last_boot_is_reported_lost(disks, tmp_path):
    host_dir = tmp_path / "hosts" / "i-0abc"
    target = disk.attach(host_dir)
    assert not disk.lost(host_dir)
    shutil.rmtree(target)  # as after a restart of this machine (the tmpfs is empty)
    assert disk.lost(host_dir)
    with pytest.raises(disk.DiskLost, match="the disk of i-0abc is gone: this machine restarted since"):
        disk.attach(host_dir)


def test_remove_all_takes_the_disks_with_the_sandbox_dir(disks, tmp_path):
    sandbox_dir = tmp_path / "sandbox"
    targets = [disk.attach(sandbox_dir / "hosts" / name) for name in ("i-01", "i-02")]
    disk.remove_all(sandbox_dir)
    assert not sandbox_dir.exists() and not any(t.exists() for t in targets)
    assert _fs_type(disks) == ""
