"""The SCP ahead of the pipeline for the CPU: a modality waits for each acknowledgement, masking does not."""
from __future__ import annotations

import os
from pathlib import Path

from digimask.scp_node.node import PIPELINE_NICENESS
from peers import NodeProcess, free_port, node_config, wait_for


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_the_pipeline_process_runs_behind_the_scp(tmp_path) -> None:
    port = free_port()
    node = NodeProcess(node_config(tmp_path / "node", port, {"PACS": free_port()}), port).start()
    try:
        assert node.proc is not None
        scp = node.proc.pid
        wait_for(lambda: any(os.getpriority(os.PRIO_PROCESS, c) == os.getpriority(os.PRIO_PROCESS, scp) + PIPELINE_NICENESS
                             for c in _children(scp)), 30, "the pipeline process at its niceness")
        assert os.getpriority(os.PRIO_PROCESS, scp) == os.getpriority(os.PRIO_PROCESS, os.getpid())  # the SCP is not lowered
    finally:
        node.kill()
