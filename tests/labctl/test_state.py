"""The state directory and file are private to the user and written atomically."""

from __future__ import annotations

import stat

from labctl import state


def test_state_dir_from_env_is_private(tmp_path, monkeypatch):
    target = tmp_path / "st"
    monkeypatch.setenv("LAB_STATE_DIR", str(target))
    assert state.state_dir() == target.resolve()
    assert stat.S_IMODE(target.stat().st_mode) == 0o700
    assert stat.S_IMODE(state.key_dir().stat().st_mode) == 0o700


def test_state_round_trip_and_file_mode(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_STATE_DIR", str(tmp_path))
    assert state.load_state() == {}
    state.LabState(target="sandbox", region="ap-northeast-2").save()
    recorded = state.LabState.load()
    recorded.instance_ids = ["i-1"]
    recorded.save()
    assert state.load_state() == {"target": "sandbox", "region": "ap-northeast-2", "instance_ids": ["i-1"]}
    assert stat.S_IMODE((tmp_path / "state.json").stat().st_mode) == 0o600


def test_corrupt_state_is_treated_as_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_STATE_DIR", str(tmp_path))
    (tmp_path / "state.json").write_text("{not json")
    assert state.load_state() == {}
