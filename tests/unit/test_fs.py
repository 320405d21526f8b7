"""Atomic writes on a full disk: the error says "no space left on device" and the path; nothing half-written stays."""

from __future__ import annotations

import errno
import shutil
import subprocess
from collections import namedtuple

import pytest
import torch
from safetensors.torch import save_file

from prime_rl.utils import fs
from prime_rl.utils.fs import DiskFullError, atomic_write_bytes, stable_dir

Usage = namedtuple("Usage", "total used free")


@pytest.fixture
def full_disk(tmp_path):
    """A 1 MiB tmpfs (needs root; skipped elsewhere): a real device that fills up."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if (
        shutil.which("mount") is None
        or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True
        ).returncode
    ):
        pytest.skip("cannot mount a tmpfs here (not root)")
    try:
        yield mount
    finally:
        # lazy: a failed torch.save can keep its file open until its traceback is collected
        subprocess.run(["umount", "--lazy", str(mount)], check=True)


def _assert_disk_full(error: DiskFullError, path) -> None:
    assert isinstance(error, OSError) and error.errno == errno.ENOSPC and error.filename == str(path)
    assert "no space left on device" in str(error) and str(path) in str(error)


@pytest.mark.parametrize("writer", ["torch.save", "safetensors"])
def test_full_disk_is_said_in_words(full_disk, writer):
    target = full_disk / "checkpoints" / "step_1" / "trainer"
    big = {"w": torch.zeros(1 << 19)}  # 2 MiB
    with pytest.raises(DiskFullError) as info, stable_dir(target) as tmp:
        if writer == "torch.save":
            torch.save(big, tmp / "state.pt")  # raises only `RuntimeError: [enforce fail at inline_container.cc]`
        else:
            save_file(big, str(tmp / "model.safetensors"))
    _assert_disk_full(info.value, target)
    assert isinstance(info.value.__cause__, RuntimeError if writer == "torch.save" else Exception)
    assert list(target.parent.iterdir()) == []  # the temporary directory is gone, the space is free again


def test_full_disk_on_an_atomic_file_write(full_disk):
    path = full_disk / "metrics" / "trainer.jsonl"
    with pytest.raises(DiskFullError) as info:
        atomic_write_bytes(path, b"x" * (2 << 20))
    _assert_disk_full(info.value, path)
    assert list(path.parent.iterdir()) == []


def test_enforce_fail_is_blamed_on_the_disk_only_when_it_is_full(tmp_path, monkeypatch):
    target = tmp_path / "broadcasts" / "step_3"
    enforce = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")
    monkeypatch.setattr(fs.shutil, "disk_usage", lambda path: Usage(10 << 30, 10 << 30, 0))
    said = r"no space left on device \(0 bytes free\): RuntimeError: \[enforce"
    with pytest.raises(DiskFullError, match=said), stable_dir(target):
        raise enforce
    assert not target.exists() and list(target.parent.iterdir()) == []

    monkeypatch.setattr(fs.shutil, "disk_usage", lambda path: Usage(10 << 30, 0, 10 << 30))
    with pytest.raises(RuntimeError) as info, stable_dir(target):
        raise enforce
    assert info.value is enforce  # a torch bug on a disk with room stays what it is
