"""Why an instance cannot be released: one family of exceptions, each with a ``reason`` safe to log and show.

``Quarantined`` is the root: the node keeps the original in quarantine with the reason. ``MaskingFailed``
is a pixel-stage failure (the only kind ``pixels.on_failure = "blank"`` may blank instead); ``Rejected``
is an image that fails an analysis quality gate (no face, eyes closed, too small, ...). Reasons never
quote header values or pixels (no PHI). A masking failure also carries a machine-readable ``code``
(:data:`FailureCode`), so callers (the clip masker) act on the kind of failure, never on the wording.
"""
from __future__ import annotations

from typing import Any, Literal, get_args

FailureCode = Literal[
    "unsupported_image",  # not pixels the masker reads
    "no_face",  # no face or eye found
    "no_landmarks",  # a face found but not its landmarks
    "multiple_faces",  # several faces, policy "reject"
    "too_small",  # face or eye below the size gate
    "extreme_pose",
    "occluded",  # every eye covered
    "eyes_closed",  # every visible eye shut (a blink in a clip)
    "edges_not_found",  # require_fit: no eye's limbus and lids fitted
    "drawn_check",  # the avatar's drawn geometry differs from the measured
    "fidelity",  # strict: the analysis does not read the render as the patient
    "render",  # the renderer produced nothing usable
    "masker_error",  # an unexpected error or unsafe output of a masker
    "face_lost",  # a clip: face or eye lost too long or too often, or in every frame
    "clip_layout",  # a clip: the masked eyes changed between frames
]


class Quarantined(Exception):
    """The instance cannot be released; ``reason`` is safe to log and show."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class MaskingFailed(Quarantined):
    """The masker could not produce a safe image; ``code`` says why, for machines. ``measurements``: the
    analysis' figures (mm and degrees, no pixel positions) when the analysis succeeded and a later step
    refused the frame (a clip's lid rule still reads them)."""

    def __init__(self, reason: str, code: FailureCode = "masker_error",
                 measurements: dict[str, Any] | None = None) -> None:
        if code not in get_args(FailureCode):
            raise ValueError(f"unknown failure code {code!r}")
        super().__init__(reason)
        self.code = code
        self.measurements = measurements

    def __reduce__(self):  # pickled across worker processes: keep the code
        return type(self), (self.reason, self.code, self.measurements)


class Rejected(MaskingFailed):
    """The image fails a quality gate of the analysis."""

    def __init__(self, reason: str, code: FailureCode, measurements: dict[str, Any] | None = None) -> None:
        super().__init__(reason, code, measurements)
