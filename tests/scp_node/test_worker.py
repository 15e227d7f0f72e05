"""The processing worker's own reporting."""
from __future__ import annotations

import logging

from digimask.scp_node.worker import ClipProgress


def test_clip_progress_is_logged_per_tenth(caplog) -> None:
    progress = ClipProgress(7)
    with caplog.at_level(logging.INFO, logger="digimask.scp_node.worker"):
        for done in range(1, 41):
            progress(done, 40)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "instance 7: 4 of 40 frames masked" and lines[-1] == "instance 7: 40 of 40 frames masked"
    assert len(lines) == 10
