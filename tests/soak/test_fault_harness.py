"""The fault harness (benchmarks/fault_harness.py) at CI size: crashes, an outage, fuzzed inputs and
concurrent associations against real DCMTK, pynetdicom and Orthanc."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
from peers import require

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import fault_harness  # noqa: E402

pytestmark = pytest.mark.peers


def test_fault_harness_small(tmp_path) -> None:
    require("storescu", "echoscu", "Orthanc", "dciodvfy")
    fig = fault_harness.run(fault_harness.SMALL, tmp_path)
    print(fig)
    assert fig.kills == fault_harness.SMALL.kills and fig.lost == 0
    assert fig.delivered_after_return_s < 60
    assert fig.fuzzed == fault_harness.SMALL.fuzz and fig.unclear == 0 and fig.node_down == 0
    assert 0 < fig.accepted < fig.fuzzed  # the mutator makes both usable and unusable inputs
    assert fig.forwarded > 0 and fig.original_pixels_forwarded == 0 and fig.planted_phi_forwarded == 0
    assert fig.dciodvfy_failures == 0
    assert fig.concurrent_arrived == fig.concurrent_sent == fault_harness.SMALL.associations * fault_harness.SMALL.per_association
    assert fig.held_out > 100 and fig.held_out_unclear == 0 and fig.held_out_forwarded > 0
    assert fig.held_out_phi_forwarded == 0 and fig.held_out_original_pixels == 0 and fig.held_out_dciodvfy_failures == 0
