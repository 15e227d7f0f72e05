"""Follow one face through a clip, so that only the first frame (and a frame where the face was lost) pays
for finding it.

A photo's analysis runs two face detectors besides FaceMesh: they count the faces (the multiple-face
policy) and confirm a FaceMesh face, which FaceMesh may invent on an eye close-up. In a clip, once a frame
is analysed, the next frame's face is the FaceMesh face that overlaps it (:data:`MIN_IOU`): the detectors
are skipped and the face goes straight to :func:`~digimask.pipeline.eyes.analyse.analyse_face`. When no
FaceMesh face overlaps the last one (the face left, or moved too fast), the frame gets the full analysis,
which finds the face again or refuses the frame (the clip masker then holds, then quarantines).

FaceMesh still sees the whole frame. Run on a crop around the last face (twice its size), or in
MediaPipe's own tracking mode (``static_image_mode=False``, one instance per clip), it places its
landmarks differently, and the eye model's crops, placed and sized from them, read the eyes differently:
against the full analysis of the same frame, MRD or fissure differed by up to 0.63 / 1.15 mm and gaze by
0.95 / 3.1 degrees (crop; 16 frames of the drifting astronaut at 384 px / 20 of WolfgangLanger_Pexels.mp4),
1.02 / 2.15 mm and 0.83 / 3.96 degrees (tracking mode); the limit is 0.1 mm / 0.5 deg. Either could save
at most FaceMesh's own time (about 5 ms of a 100 ms frame at 384 px). Followed as here, a frame is
measured exactly as its full analysis measures the same face (0.000 mm, 0.000 deg on both).

Under the policy "reject" every frame gets the full analysis (a second face entering must be counted).
"""
from __future__ import annotations

import numpy as np
from digimask.pipeline.eyes.analyse import Analysis, AnalysisOptions, analyse, analyse_face
from digimask.pipeline.eyes.landmarks import facemesh

# The followed face: the FaceMesh face whose box overlaps the last frame's by at least this (intersection
# over union): a face moving by up to half its width between two frames (0.5: a third, 0.8: a tenth).
MIN_IOU = 0.3


def _box(points: np.ndarray) -> np.ndarray:
    return np.r_[points[:, :2].min(axis=0), points[:, :2].max(axis=0)]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    w, h = np.minimum(a[2:], b[2:]) - np.maximum(a[:2], b[:2])
    inter = max(w, 0.0) * max(h, 0.0)
    union = float(np.prod(a[2:] - a[:2]) + np.prod(b[2:] - b[:2]) - inter)
    return inter / union if union > 0 else 0.0


class FaceTracker:
    """One clip's face from frame to frame: ``analyse`` like :func:`~digimask.pipeline.eyes.analyse.analyse`,
    frames in order. Holds the last face, so one tracker per clip."""

    def __init__(self) -> None:
        self.box: np.ndarray | None = None  # the last frame's face (FaceMesh box, pixels); None: find it
        self.followed = 0  # frames analysed from the followed face
        self.searched = 0  # frames that got the full analysis

    def analyse(self, image: np.ndarray, *, pixel_spacing_mm: float | None = None,
                options: AnalysisOptions | None = None) -> Analysis:
        """One frame's analysis; raises ``Rejected`` as ``analyse`` does. ``faces_found`` is 1 on a
        followed frame (nothing else is counted)."""
        opts = options or AnalysisOptions()
        trackable = opts.mode != "closeup" and opts.quality.multiple_faces != "reject"
        points = self._follow(image, opts) if trackable and self.box is not None else None
        if points is None:
            self.box = None
            self.searched += 1
            result = analyse(image, pixel_spacing_mm=pixel_spacing_mm, options=opts)
            if trackable and result.face_landmarks is not None:
                self.box = _box(result.face_landmarks)
            return result
        self.followed += 1
        self.box = _box(points)  # kept when the frame is refused after this (a blink): the face is there
        return analyse_face(image, points, pixel_spacing_mm=pixel_spacing_mm, options=opts)

    def _follow(self, image: np.ndarray, opts: AnalysisOptions) -> np.ndarray | None:
        """The FaceMesh face that overlaps the last one most, if by :data:`MIN_IOU`."""
        if image.ndim != 3 or image.dtype != np.uint8:
            return None  # the full analysis says why
        best, best_iou = None, MIN_IOU
        for points in facemesh(opts.max_faces).detect(np.ascontiguousarray(image[:, :, :3])):
            overlap = iou(_box(points), self.box)
            if overlap >= best_iou:
                best, best_iou = points, overlap
        return best

    def to_dict(self) -> dict[str, int]:
        """For the clip's notes: frames followed, frames searched."""
        return {"followed": self.followed, "searched": self.searched}

