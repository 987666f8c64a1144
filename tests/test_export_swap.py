"""The export job's folder swap survives a kill between its two renames (export/job.py)."""

from pathlib import Path

import pytest

from mtl_tf.export.job import recover_folder, replace_folder


class Killed(BaseException):
    pass


def _artifact(folder: Path, content: bytes) -> Path:
    folder.mkdir(parents=True)
    (folder / "model.tflite").write_bytes(content)
    return folder


def test_a_kill_between_the_two_renames_leaves_the_old_artifact_recoverable(tmp_path, monkeypatch):
    final = _artifact(tmp_path / "float32", b"old")
    staging = _artifact(tmp_path / ".float32.partial", b"new")
    rename = Path.rename

    def killed_on_the_second(self, target):
        if self == staging:
            raise Killed
        return rename(self, target)

    monkeypatch.setattr(Path, "rename", killed_on_the_second)
    with pytest.raises(Killed):
        replace_folder(staging, final)
    monkeypatch.undo()
    assert not final.exists()  # the moment a kill would leave
    recover_folder(final)  # what the next export does first
    assert (final / "model.tflite").read_bytes() == b"old"
    replace_folder(staging, final)
    assert (final / "model.tflite").read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["float32"]


def test_a_leftover_old_folder_beside_a_complete_artifact_is_deleted(tmp_path):
    _artifact(tmp_path / "int8", b"new")
    _artifact(tmp_path / ".int8.old", b"old")
    recover_folder(tmp_path / "int8")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["int8"]
    assert (tmp_path / "int8" / "model.tflite").read_bytes() == b"new"
