"""Fixtures of the console tests: running consoles stopped at the end, a small face image."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from console.support import Console, start
from peers import require


@pytest.fixture
def start_console() -> Iterator[Callable[[Path, int, int], Console]]:
    require("storescu", "Orthanc")
    running: list[Console] = []

    def go(config: Path, port: int, cport: int) -> Console:
        c = start(config, port, cport)
        running.append(c)
        return c

    yield go
    for c in running:
        c.stop()


@pytest.fixture(scope="module")
def small_face(astronaut):  # type: ignore[no-untyped-def]
    return astronaut[::4, ::4].copy()  # 128x128: the blank masker needs no face, and small files are quick
