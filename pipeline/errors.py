"""Why an instance cannot be released: one family of exceptions, each with a ``reason`` safe to log and show.

``Quarantined`` is the root: the node keeps the original in quarantine with the reason. ``MaskingFailed``
is a pixel-stage failure (the only kind ``pixels.on_failure = "blank"`` may blank instead); ``Rejected``
is an image that fails an analysis quality gate (no face, eyes closed, too small, ...). Reasons never
quote header values or pixels (no PHI).
"""
from __future__ import annotations


class Quarantined(Exception):
    """The instance cannot be released; ``reason`` is safe to log and show."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class MaskingFailed(Quarantined):
    """The masker could not produce a safe image."""


class Rejected(MaskingFailed):
    """The image fails a quality gate of the analysis."""
