"""The clip's face tracker: a followed frame measures as its full analysis does, a lost face is searched
for again, and a face leaving the frame still ends in hold, then quarantine."""
from __future__ import annotations

import numpy as np
import pytest
import video_factory as vf
from digimask.config.settings import Video
from digimask.pipeline.errors import MaskingFailed, Rejected
from digimask.pipeline.eyes.analyse import AnalysisOptions, analyse
from digimask.pipeline.eyes.quality import QualityThresholds
from digimask.pipeline.eyes.track import FaceTracker, iou
from digimask.pipeline.mask.digital_mask import DigitalMask
from digimask.pipeline.mask.video import HELD, MEASURED, ClipMasker
from pydicom.dataset import Dataset

RATE = 30.0


def noisy_drift(face: np.ndarray, n: int, step: int = 2, seed: int = 1) -> list[np.ndarray]:
    """The face sliding right ``step`` px a frame under sensor noise."""
    rng = np.random.default_rng(seed)
    pad = np.pad(face, ((0, 0), (step * n, 0), (0, 0)), mode="edge")
    w = face.shape[1]
    return [np.clip(pad[:, step * (n - i):step * (n - i) + w] + rng.normal(0, 4, face.shape), 0, 255).astype(np.uint8)
            for i in range(n)]


def leaving(face: np.ndarray, n: int, step: int, background: int = 100) -> list[np.ndarray]:
    """The face sliding out of the frame to the left, ``step`` px a frame, over a plain background."""
    w = face.shape[1]
    out = []
    for i in range(n):
        frame = np.full_like(face, background)
        shift = i * step
        if shift < w:
            frame[:, :w - shift] = face[:, shift:]
        out.append(frame)
    return out


def test_iou() -> None:
    a = np.array([0.0, 0, 10, 10])
    assert iou(a, a) == 1.0 and iou(a, a + 20) == 0.0
    assert iou(a, np.array([5.0, 0, 15, 10])) == pytest.approx(50 / 150)


@pytest.mark.parametrize("photo", ["astronaut", "grace_hopper"])
def test_followed_frames_measure_as_their_full_analysis(photo, request) -> None:
    face = vf.small(request.getfixturevalue(photo), 384)
    frames = noisy_drift(face, 6)
    tracker = FaceTracker()
    worst_mm = worst_deg = 0.0
    for frame in frames:
        followed, full = tracker.analyse(frame), analyse(frame)
        assert followed.measurements.eyes.keys() == full.measurements.eyes.keys()
        for side, m in full.measurements.eyes.items():
            k = followed.measurements.eyes[side]
            worst_mm = max(worst_mm, *(abs(getattr(k, n) - getattr(m, n)) for n in
                                       ("mrd1_mm", "mrd2_mm", "fissure_height_mm", "fissure_width_mm")))
            worst_deg = max(worst_deg, abs(k.gaze_h_deg - m.gaze_h_deg), abs(k.gaze_v_deg - m.gaze_v_deg))
    print(f"{photo}: followed vs full analysis, worst {worst_mm:.4f} mm, {worst_deg:.4f} deg; {tracker.to_dict()}")
    assert tracker.to_dict() == {"followed": 5, "searched": 1}
    assert worst_mm <= 0.1 and worst_deg <= 0.5


def test_lost_face_is_searched_for_again(astronaut) -> None:
    face = vf.small(astronaut, 384)
    grey = np.full_like(face, 100)
    tracker = FaceTracker()
    tracker.analyse(face)
    with pytest.raises(Rejected) as lost:
        tracker.analyse(grey)
    assert lost.value.code == "no_face" and tracker.box is None
    tracker.analyse(face)
    tracker.analyse(face)
    assert tracker.to_dict() == {"followed": 1, "searched": 3}


def test_reject_policy_counts_faces_in_every_frame(astronaut) -> None:
    face = vf.small(astronaut, 384)
    options = AnalysisOptions(quality=QualityThresholds(multiple_faces="reject"))
    tracker = FaceTracker()
    for _ in range(3):
        tracker.analyse(face, options=options)
    assert tracker.to_dict() == {"followed": 0, "searched": 3}


def test_face_leaving_the_frame_is_held_then_quarantined(astronaut) -> None:
    """The face (70 px wide) slides out to the left at 12 px a frame, then the frame stays empty: the first
    frames are followed and measured, the lost ones held, and past hold_s the instance is quarantined."""
    face = vf.small(astronaut, 384)
    frames = leaving(face, 24, 12)
    masker = DigitalMask()
    with pytest.raises(MaskingFailed, match=r"face or eye lost for more than 0.1 s") as failed:
        list(ClipMasker(masker, Video(hold_s=0.1, max_lost_fraction=0.9), RATE, len(frames)).run(frames, Dataset()))
    assert failed.value.code == "face_lost"
    clip = ClipMasker(masker, Video(hold_s=1.0, max_lost_fraction=0.9), RATE, len(frames))
    out = list(clip.run(frames, Dataset()))
    status = clip.result.frames.status.tolist()
    print("leaving:", status, clip.result.notes["face"])
    assert len(out) == 24 and status[:3] == [MEASURED] * 3 and status[-4:] == [HELD] * 4
    assert clip.result.notes["face"]["followed"] >= 2
