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


def sync_file(path: Path) -> None:
    """Make the bytes of a file written by someone else (pynetdicom's chunked receive) durable, owner-only;
    its name is made durable by the caller (rename, then one folder fsync for a whole batch)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fchmod(fd, 0o600)
        os.fsync(fd)
    finally:
        os.close(fd)


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


def inbox_name(calling_ae: str, called_ae: str) -> str:
    """An inbox file's name: random, plus the association's AE titles (not PHI; hex, as AE titles may hold
    any character but backslash), so that a file whose database row a power loss rolled back is adopted
    with the routing it was received with (:func:`inbox_aes`)."""
    return f"{uuid.uuid4().hex}.{calling_ae.encode().hex()}.{called_ae.encode().hex()}.dcm"


def inbox_aes(name: str) -> tuple[str, str]:
    """(calling, called) AE titles from an :func:`inbox_name`; empty for any other name."""
    parts = name.split(".")
    if len(parts) != 4:
        return "", ""
    try:
        return bytes.fromhex(parts[1]).decode(), bytes.fromhex(parts[2]).decode()
    except ValueError:
        return "", ""
