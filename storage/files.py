"""Crash-safe files: write to a temporary name, fsync, rename, fsync the folder."""
from __future__ import annotations

import os
import uuid
from pathlib import Path


def write_durable(path: Path, data: bytes) -> None:
    """After this returns, ``path`` holds ``data`` even if the machine loses power."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def adopt_durable(src: Path, dst: Path) -> None:
    """Make a file written by someone else (pynetdicom's chunked receive) durable under ``dst``: fsync its
    bytes, rename it (same file system), fsync the folder. The bytes are never copied."""
    fd = os.open(src, os.O_RDONLY)
    try:
        os.fchmod(fd, 0o600)
        os.fsync(fd)
    finally:
        os.close(fd)
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.replace(src, dst)
    fsync_dir(dst.parent)


def move_durable(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.replace(src, dst)
    fsync_dir(dst.parent)
    fsync_dir(src.parent)


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def new_name() -> str:
    """A file name that says nothing about the patient or the instance."""
    return f"{uuid.uuid4().hex}.dcm"
