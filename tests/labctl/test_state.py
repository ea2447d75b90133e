"""The state directory and file are private to the user and written atomically."""

from __future__ import annotations

import stat

import pytest

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


@pytest.mark.parametrize(
    "content, why",
    [
        ("{not json", "not JSON"),
        ("null", "holds null, not an object"),
        ("[1, 2]", "holds a list, not an object"),
        ('"text"', "holds text, not an object"),
        ('{"key_file": 12}', "key_file is the number 12, not text"),
        ('{"instance_ids": "i-1"}', "instance_ids is text, not a list of text"),
        ('{"instance_ids": [1]}', "instance_ids is a list, not a list of text"),
        ('{"shared_sg": "yes"}', "shared_sg is text, not true/false"),
    ],
)
def test_damaged_state_is_one_line_naming_the_file_and_the_fix(tmp_path, monkeypatch, content, why):
    """Issue 12 item 5 (behaviour change: unparsable JSON used to count as missing, which could make a
    re-run pick the default lab instead of the recorded one)."""
    monkeypatch.setenv("LAB_STATE_DIR", str(tmp_path))
    (tmp_path / "state.json").write_text(content)
    with pytest.raises(state.DamagedState) as damaged:
        state.load_state()
    assert str(damaged.value) == (
        f"{tmp_path / 'state.json'} is damaged ({why}): delete it, the next run rebuilds it from the tags"
    )
    assert (tmp_path / "state.json").read_text() == content


def test_a_directory_in_place_of_the_state_file_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_STATE_DIR", str(tmp_path))
    (tmp_path / "state.json").mkdir()
    with pytest.raises(state.DamagedState, match=r"is damaged \(a directory, not a file\): remove it"):
        state.load_state()


def test_unknown_fields_and_nulls_are_fine(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_STATE_DIR", str(tmp_path))
    (tmp_path / "state.json").write_text('{"key_file": null, "future_field": {"a": 1}, "instance_ids": []}')
    assert state.load_state()["future_field"] == {"a": 1}
