"""Crash-safe files: each is written under a temporary name in its own folder and renamed into
place once whole, so a kill at any moment leaves either the old file or the new one.

`fault` is a test hook: when set, it is called as `fault(stage, path)` with stage "written"
(a temporary file or folder is complete, not yet renamed) and "renamed" (it is in place).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Callable, Iterator

fault: Callable[[str, Path], None] | None = None


def temporary_name(path: Path) -> Path:
    """`.<stem>.partial<suffixes>` beside `path` (suffixes kept: Keras checks them)."""
    suffixes = "".join(path.suffixes)
    return path.with_name(f".{path.name.removesuffix(suffixes)}.partial{suffixes}")


@contextlib.contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """Yields a temporary path (file or folder) beside `path` to write; when the block ends
    without error it is synced and renamed to `path`. An exception removes it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    remove(tmp)
    try:
        yield tmp
        _sync(tmp)
        _hook("written", tmp)
        if tmp.is_dir():
            remove(path)  # a folder cannot be renamed over another; callers keep a fallback copy
        os.replace(tmp, path)
        _sync(path.parent)
        _hook("renamed", path)
    except Exception:  # not on BaseException: a simulated kill leaves its partial file, as a real one
        remove(tmp)
        raise


def write_text(path: str | Path, text: str) -> None:
    with replacing(path) as tmp:
        tmp.write_text(text)


def remove(path: Path) -> None:
    """Delete a file or folder if it exists."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def retire(path: Path) -> None:
    """Delete a folder so that a kill part-way never leaves it half deleted under its name."""
    if path.exists():
        gone = path.with_name(f".{path.name}.deleted")
        remove(gone)
        os.replace(path, gone)
        _sync(path.parent)
        remove(gone)


def _sync(path: Path) -> None:
    """fsync a file, or a folder and the files directly in it (best effort: not every OS can)."""
    paths = [*(p for p in path.iterdir() if p.is_file()), path] if path.is_dir() else [path]
    for p in paths:
        with contextlib.suppress(OSError):
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def _hook(stage: str, path: Path) -> None:
    if fault is not None:
        fault(stage, path)
