"""Clips: the smoothing's known answers, blinks and jitter on a synthetic clip, hold and quarantine rules,
and multi-frame / video instances through the whole pipeline (dciodvfy, per-frame block, exact re-render)."""
from __future__ import annotations

import dicom_factory as f
import numpy as np
import pydicom
import pytest
import video_factory as vf
from digimask.config.settings import Video, parse
from digimask.pipeline.dicom import private_block
from digimask.pipeline.dicom.video import encode_h264, iter_frames
from digimask.pipeline.errors import MaskingFailed, Quarantined, Rejected
from digimask.pipeline.eyes.analyse import analyse
from digimask.pipeline.mask.digital_mask import DigitalMask, render_params
from digimask.pipeline.mask.maskers import MaskResult
from digimask.pipeline.mask.params import SCHEMA as PARAMS_SCHEMA
from digimask.pipeline.mask.video import (
    CLOSED,
    HELD,
    MEASURED,
    ClipMasker,
    Smoother,
    closed,
    columns,
    frame_params,
    series_params,
    to_vector,
)
from digimask.pipeline.process import Processor
from peers import dciodvfy_errors, require
from pydicom.dataset import Dataset
from pydicom.encaps import generate_fragments

RATE = 30.0


@pytest.fixture(scope="module")
def face(astronaut) -> np.ndarray:
    return vf.small(astronaut, 384)


@pytest.fixture(scope="module")
def masker() -> DigitalMask:
    return DigitalMask()


def drifting(face: np.ndarray, n: int, noise: float = 4.0, seed: int = 1) -> list[np.ndarray]:
    """The face sliding right 1 px a frame (a slow head movement the smoothing must keep exactly) under
    sensor noise (which makes the detector jitter)."""
    rng = np.random.default_rng(seed)
    pad = np.pad(face, ((0, 0), (n, 0), (0, 0)), mode="edge")
    w = face.shape[1]
    return [np.clip(pad[:, n - i:n - i + w] + rng.normal(0, noise, face.shape), 0, 255).astype(np.uint8)
            for i in range(n)]


def settings(masker: str = "digital_mask", **video):  # type: ignore[no-untyped-def]
    return parse({
        "node": {"allowed_calling_aes": ["STORESCU"]},
        "deid": {"secret": "k"},
        "pixels": {"masker": masker},
        "video": video,
    })


# --- the smoothing filter: known answers -----------------------------------------------------------------

@pytest.mark.parametrize("rate", [25.0, 30.0, 60.0])
def test_smoother_passes_5hz_and_cuts_white_jitter(rate: float) -> None:
    s = Smoother.for_rate(rate, keep_hz=5.0, min_gain=0.9)
    assert s.window > 1 and s.gain(5.0) >= 0.9
    t = np.arange(int(4 * rate)) / rate
    sine = 2.0 * np.sin(2 * np.pi * 5.0 * t)  # a 5 Hz nystagmus of 2 degrees
    out = np.concatenate(list(s.run(sine[:, None])))
    inner = slice(s.window, -s.window)
    amplitude = np.sqrt(2) * np.std(out[inner])
    assert amplitude == pytest.approx(2.0 * s.gain(5.0), rel=0.02)  # the filter's response, measured
    noise = np.random.default_rng(0).normal(0, 1, 6000)
    smoothed = np.concatenate(list(s.run(noise[:, None])))
    assert np.std(smoothed) == pytest.approx(s.jitter_gain(), rel=0.05)  # sqrt(sum c^2): 0.70 at 30 fps, w=5
    assert s.jitter_gain() < 0.8  # 25 fps: 0.75 (7 frames, order 4); 60 fps: 0.49 (15, order 4)
    if rate == 30.0:  # 5 frames, order 2: weights (-3, 12, 17, 12, -3) / 35
        assert (s.window, s.order, s.jitter_gain()) == (5, 2, pytest.approx(np.sqrt(17 / 35)))
    ramp = np.arange(40.0)  # slow movements pass exactly, edges included
    assert np.allclose(np.concatenate(list(s.run(ramp[:, None]))), ramp, atol=1e-4)
    step = np.repeat([0.0, 10.0], 20)  # a saccade: exact away from the step, no spreading
    stepped = np.concatenate(list(s.run(step[:, None])))
    h = s.window // 2
    assert np.allclose(stepped[:20 - h], 0, atol=1e-4) and np.allclose(stepped[20 + h:], 10, atol=1e-4)


def test_smoother_on_short_and_untimed_clips() -> None:
    s = Smoother.for_rate(30.0, 5.0, 0.9)
    for n in (1, 2, 3, 4):  # fewer frames than the window: one output per input, lines pass
        x = np.arange(n, dtype=float)[:, None] * 2 + 1
        assert np.allclose(np.concatenate(list(s.run(x))), x[:, 0], atol=1e-4)
    none = Smoother(1, 0, 1.0)
    x = np.random.default_rng(3).normal(size=(7, 2))
    assert np.array_equal(np.stack(list(none.run(x))), x.astype(np.float32))


# --- the clip masker on real pixels ----------------------------------------------------------------------

class Scripted:
    """A digital mask whose per-frame parameters are given: ``series`` (frames, columns) over ``base``, so
    the clip masker's smoothing is checked against known movements and known jitter."""

    name, cleans_recognizable_features = "digital_mask", True

    def __init__(self, base: dict, series: np.ndarray) -> None:
        self.base, self.series, self.i = base, series, 0

    def mask(self, image, ds):  # type: ignore[no-untyped-def]
        params = frame_params(self.base, self.series[self.i])
        self.i += 1
        return MaskResult(render_params(params), params)


def test_blink_and_nystagmus_kept_jitter_reduced(face, masker) -> None:
    """1.5 s at 30 fps: a 4 Hz, 3 degree nystagmus, a full blink (closing in 100 ms, opening in 133 ms) and
    white jitter on every number, as a per-frame fit gives them; the mask must keep the first two and cut
    the third by the filter's known factor."""
    base = masker.mask(face, Dataset()).params
    n, rng = 45, np.random.default_rng(7)
    cols = columns(base["eyes"])
    still = to_vector(base).astype(float)
    truth = np.repeat(still[None], n, axis=0)
    t = np.arange(n) / RATE
    gaze = [cols.index(f"{side}.gaze_yaw_deg") for side in ("right", "left")]
    truth[:, gaze] += 3.0 * np.sin(2 * np.pi * 4.0 * t)[:, None]
    lids = [cols.index(f"{side}.upper_lid_1_mm") for side in ("right", "left")]
    shut = closed(still, base["eyes"])
    blink = np.zeros(n)
    blink[20:28] = [1 / 3, 2 / 3, 1, 1, 0.75, 0.5, 0.25, 0]
    truth += blink[:, None] * (shut - still)[None]
    scale = np.where(np.isnan(still), 0, 0.3)  # 0.3 mm / deg of jitter; the absent reflex stays absent
    raw = truth + rng.normal(0, 1, truth.shape) * scale
    clip = ClipMasker(Scripted(base, raw.astype(np.float32)), Video(), RATE, n)
    out = list(clip.run(drifting(face, n, seed=8), Dataset()))
    smooth = clip.result.frames.values.astype(float)
    assert len(out) == n and (clip.result.frames.status == MEASURED).all()
    s = clip.smoother
    for j in lids:  # the blink: as deep, and as long at half depth, as it was
        depth = still[j] - truth[:, j].min()
        kept = still[j] - smooth[:, j].min()
        print(f"blink depth {depth:.2f} mm, mask {kept:.2f} mm; frames past half depth: truth "
              f"{(still[j] - truth[:, j] > depth / 2).sum()}, mask {(still[j] - smooth[:, j] > depth / 2).sum()}")
        assert kept >= 0.9 * depth
        assert abs(int((still[j] - smooth[:, j] > depth / 2).sum()) - int((still[j] - truth[:, j] > depth / 2).sum())) <= 1
    for shut_frame in (22, 23):
        with pytest.raises(Rejected, match="eyes closed"):
            analyse(out[shut_frame])
    design = np.column_stack([np.sin(2 * np.pi * 4.0 * t), np.cos(2 * np.pi * 4.0 * t), np.ones(n)])
    for j in gaze:  # the nystagmus: amplitude as the filter's response says
        amplitude = np.hypot(*np.linalg.lstsq(design[s.window:-s.window], smooth[s.window:-s.window, j], rcond=None)[0][:2])
        print(f"4 Hz nystagmus 3.00 deg -> mask {amplitude:.2f} deg (filter gain {s.gain(4.0):.3f})")
        assert amplitude == pytest.approx(3.0 * s.gain(4.0), abs=0.15) and amplitude > 0.9 * 3.0
    finite = ~np.isnan(still)
    before = np.std((raw - truth)[:, finite])
    after = np.std((smooth - truth)[s.window:-s.window][:, finite])
    print(f"jitter {before:.3f} -> {after:.3f} ({after / before:.2f}; white-noise factor {s.jitter_gain():.2f})")
    assert after / before == pytest.approx(s.jitter_gain(), abs=0.1)
    for i in (0, 22, n - 1):  # every output frame is the render of its stored vector
        assert np.array_equal(out[i], render_params(frame_params(clip.result.params, smooth[i])))


def test_real_clip_jitter_reduced(face, masker) -> None:
    """Real pixels: a slow drift under sensor noise; the per-frame fit's head numbers scatter about the
    straight line the drift draws, the smoothed ones less."""
    frames = drifting(face, 16)
    clip = ClipMasker(masker, Video(), RATE, len(frames))
    list(clip.run(frames, Dataset()))
    smooth = clip.result.frames.values
    kept = np.flatnonzero(clip.result.frames.status == MEASURED)  # a frame the fit's own check refuses is held
    raw = np.full_like(smooth, np.nan)
    for i in kept:
        raw[i] = to_vector(masker.mask(frames[i], Dataset()).params)
    assert len(kept) >= 13
    t = kept.astype(float)
    ratios = []
    for j in range(6):  # head yaw, pitch, roll, translation
        residual = [np.std(v[kept, j] - np.polyval(np.polyfit(t, v[kept, j], 1), t)) for v in (raw, smooth)]
        ratios.append(residual[1] / residual[0])
    print("head jitter after/before smoothing:", np.round(ratios, 2), "median", round(float(np.median(ratios)), 2))
    assert np.median(ratios) < 0.9


def test_each_frame_is_rendered_once(face, masker, monkeypatch) -> None:
    """The digital mask only fits each frame; the clip renders the smoothed parameters, once a frame."""
    from digimask.pipeline.mask import digital_mask

    renders = []
    real = digital_mask.render
    monkeypatch.setattr(digital_mask, "render", lambda *a, **k: renders.append(1) or real(*a, **k))
    frames = drifting(face, 6, seed=9)
    clip = ClipMasker(masker, Video(), RATE, len(frames))
    out = list(clip.run(frames, Dataset()))
    assert len(out) == 6 and len(renders) == 6
    for i in (0, 5):
        assert np.array_equal(out[i], real(digital_mask.AvatarParams.from_dict(
            frame_params(clip.result.params, clip.result.frames.values[i]))))
    assert masker.fit(face, Dataset()) == masker.mask(face, Dataset()).params


def test_strict_fit_still_reads_the_render(grace_hopper) -> None:
    """``fit`` renders nothing for the clip, except for strict's independent reading: same verdict as ``mask``."""
    strict = DigitalMask(strict=True)

    def code(call) -> str | None:  # type: ignore[no-untyped-def]
        try:
            call(grace_hopper, Dataset())
        except MaskingFailed as exc:
            return exc.code
        return None

    verdict = code(strict.mask)
    print("strict verdict on grace_hopper:", verdict)
    assert code(strict.fit) == verdict and verdict in (None, "fidelity")


def test_batched_fits_match_single_fits_and_keep_failures_in_place(face, masker) -> None:
    frames = drifting(face, 6, seed=10)
    frames[2] = np.full_like(face, 128)
    batched = list(masker.fit_many(frames, Dataset(), batch=4))
    assert len(batched) == 6 and isinstance(batched[2], Rejected) and batched[2].code == "no_face"
    compared = 0
    for i in (0, 1, 3, 4, 5):
        try:
            single = masker.fit(frames[i], Dataset())
        except MaskingFailed:  # a frame the drawn check refuses
            continue
        if not isinstance(batched[i], MaskingFailed):
            np.testing.assert_allclose(to_vector(batched[i]), to_vector(single), atol=2e-3)
            compared += 1
    assert compared >= 4


class ClosesEyes:
    """The digital mask, except that frames ``shut`` fail the analysis' closed-eyes gate, as in a blink."""

    name, cleans_recognizable_features = "digital_mask", True

    def __init__(self, inner: DigitalMask, shut: set[int], error: MaskingFailed | None = None) -> None:
        self.inner, self.shut, self.seen = inner, shut, 0
        self.error = error or Rejected("eyes closed", "eyes_closed")

    def mask(self, image, ds):  # type: ignore[no-untyped-def]
        self.seen += 1
        if self.seen - 1 in self.shut:
            raise self.error
        return self.inner.mask(image, ds)


def test_closed_eyes_are_drawn_shut(face, masker) -> None:
    frames = drifting(face, 9, seed=2)
    clip = ClipMasker(ClosesEyes(masker, {0, 4, 5}), Video(), RATE, len(frames))
    out = list(clip.run(frames, Dataset()))
    assert clip.result.frames.status.tolist() == [CLOSED, 0, 0, 0, CLOSED, CLOSED, 0, 0, 0]
    for i in (0, 4, 5):
        with pytest.raises(Rejected, match="eyes closed"):
            analyse(out[i])
    for i in (2, 7):
        assert analyse(out[i]).measurements.eyes  # open again
    v = to_vector(masker.mask(frames[2], Dataset()).params)
    with pytest.raises(Rejected, match="eyes closed"):
        analyse(render_params(frame_params(clip.result.params, closed(v, ["right", "left"]))))


def test_failures_are_told_apart_by_code_not_wording(face, masker) -> None:
    frames = drifting(face, 5, seed=2)
    for error, status in ((Rejected("lids shut: 0.05 open", "eyes_closed"), CLOSED),
                          (MaskingFailed("eyes closed"), HELD)):  # a masker error worded like the gate
        clip = ClipMasker(ClosesEyes(masker, {2}, error), Video(), RATE, len(frames))
        list(clip.run(frames, Dataset()))
        assert clip.result.frames.status[2] == status


def test_lost_face_is_held_briefly_then_quarantined(face, masker) -> None:
    grey = np.full_like(face, 128)
    frames = drifting(face, 10, seed=3)
    frames[4:6] = [grey, grey]  # 67 ms without a face
    clip = ClipMasker(masker, Video(hold_s=0.1, max_lost_fraction=0.4), RATE, len(frames))
    out = list(clip.run(frames, Dataset()))
    status = clip.result.frames.status
    assert status[4:6].tolist() == [HELD, HELD] and (status == MEASURED).sum() >= 6  # a frame may fail the fit's check
    assert all(np.abs(o.astype(int) - 128).max() > 40 for o in out[4:6])  # a face drawn, not the grey frame
    long = drifting(face, 10, seed=3)
    long[3:7] = [grey] * 4  # 133 ms > hold_s
    with pytest.raises(MaskingFailed, match=r"lost for more than 0.1 s \(from frame 4\): no face"):
        list(ClipMasker(masker, Video(hold_s=0.1, max_lost_fraction=0.5), RATE, 10).run(long, Dataset()))
    with pytest.raises(MaskingFailed, match="more than 10% of 10 frames unmaskable: no face"):
        list(ClipMasker(masker, Video(hold_s=0.1, max_lost_fraction=0.1), RATE, 10).run(frames, Dataset()))
    with pytest.raises(MaskingFailed, match="no frame could be masked"):
        list(ClipMasker(masker, Video(hold_s=10, max_lost_fraction=1.0), RATE, 5).run([grey] * 5, Dataset()))


def test_frames_before_the_first_face_take_it(face, masker) -> None:
    grey = np.full_like(face, 128)
    frames = [grey] + drifting(face, 6, seed=4)
    clip = ClipMasker(masker, Video(hold_s=0.1, max_lost_fraction=0.5), RATE, len(frames))
    out = list(clip.run(frames, Dataset()))
    status = clip.result.frames.status
    assert status[0] == HELD and (status[1:] == MEASURED).sum() >= 4 and len(out) == 7


def test_untimed_multiframe_masks_each_frame_alone(face, masker) -> None:
    frames = drifting(face, 3, seed=5)
    clip = ClipMasker(masker, Video(), None, 3)
    list(clip.run(frames, Dataset()))
    raw = np.stack([to_vector(masker.mask(frame, Dataset()).params) for frame in frames])
    assert np.array_equal(clip.result.frames.values, raw, equal_nan=True)  # no smoothing between unrelated frames
    with pytest.raises(MaskingFailed, match="eyes closed"):  # and nothing held or drawn shut
        list(ClipMasker(ClosesEyes(masker, {1}), Video(), None, 3).run(frames, Dataset()))


# --- instances through the pipeline ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def clip8(face) -> list[np.ndarray]:
    return drifting(face, 8, seed=6)


@pytest.mark.parametrize("kind", ["h264", "mpeg2", "multiframe_sc", "multiframe_op"])
def test_clip_instances_through_the_pipeline(kind, clip8, tmp_path) -> None:
    require("dciodvfy")
    source = {"h264": lambda: vf.video_photographic("v", clip8),
              "mpeg2": lambda: vf.video_photographic("v", clip8, codec="mpeg2video"),
              "multiframe_sc": lambda: vf.multiframe_sc("v", clip8),
              "multiframe_op": lambda: vf.multiframe_op("v", clip8)}[kind]()
    path = f.save(source, tmp_path / "in.dcm")
    assert dciodvfy_errors(path) == []
    proc = Processor(settings())
    done: list[tuple[int, int]] = []
    proc.progress = lambda i, n: done.append((i, n))
    processed = proc.process(pydicom.dcmread(path), route=False)
    out = processed.dataset
    assert processed.notes["clip"]["frames"] == 8 and processed.notes["clip"]["smoothing_window"] == 5
    target = tmp_path / "out.dcm"
    out.save_as(target, enforce_file_format=True)
    assert dciodvfy_errors(target) == []
    back = pydicom.dcmread(target)
    assert done[-1] == (8, 8)
    assert back.SOPClassUID == source.SOPClassUID
    for kw in ("NumberOfFrames", "FrameTime", "CineRate", "RecommendedDisplayFrameRate", "FrameIncrementPointer",
               "StartTrim", "StopTrim", "ActualFrameDuration", "Rows", "Columns"):
        assert back.get(kw) == source.get(kw), kw
    schema, masker_name, params = private_block.read(back)
    frames = private_block.read_frames(back)
    assert (schema, masker_name, frames.values.shape) == (PARAMS_SCHEMA, "digital_mask", (8, 36))
    rendered = [render_params(p) for p in series_params(params, frames)]  # from the block alone
    if kind.startswith("multiframe"):
        assert back.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        assert np.array_equal(np.stack(rendered), back.pixel_array)
        return
    assert back.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.102"
    assert (back.PhotometricInterpretation, back.LossyImageCompression) == ("YBR_PARTIAL_420", "01")
    stream = b"".join(generate_fragments(back.PixelData))
    again = encode_h264(iter(rendered), back.Columns, back.Rows, 1000 / float(back.FrameTime))
    assert again.data.rstrip(b"\0") == stream.rstrip(b"\0")  # the block re-creates the very stream
    decoded = list(iter_frames(stream, "h264"))
    assert len(decoded) == 8
    error = max(float(np.abs(d.astype(int) - r).mean()) for d, r in zip(decoded, rendered))
    print(f"{kind}: H.264 crf 12 mean abs error {error:.3f} grey levels")
    assert error < 1.0  # visually lossless
    assert max(float(np.abs(d.astype(int) - o).mean()) for d, o in zip(decoded, clip8)) > 20  # no original frame


def test_bad_videos_are_quarantined(clip8) -> None:
    proc = Processor(settings())
    good = vf.video_photographic("v", clip8)
    stream = b"".join(generate_fragments(good.PixelData))
    truncated = vf.video_photographic("v", clip8, data=stream[: len(stream) // 2])
    with pytest.raises(Quarantined, match="truncated video: [0-7] of NumberOfFrames=8"):
        proc.process(truncated, route=False)
    garbage = vf.video_photographic("v", clip8, data=b"\0\1" * 500)
    with pytest.raises(Quarantined, match="cannot (open|decode) video|no video stream|truncated video: 0"):
        proc.process(garbage, route=False)
    liar = vf.video_photographic("v", clip8)
    liar.NumberOfFrames = 4
    with pytest.raises(Quarantined, match="more frames than NumberOfFrames=4"):
        proc.process(liar, route=False)
    noface = vf.video_photographic("v", [np.full_like(clip8[0], 90)] * 8)
    with pytest.raises(Quarantined, match="masking failed: more than 20% of 8 frames unmaskable: no face or eye found"):
        proc.process(noface, route=False)


def test_stateless_masker_on_a_video_and_blank_on_failure(clip8) -> None:
    out = Processor(settings("blank")).process(vf.video_photographic("v", clip8), route=False).dataset
    assert private_block.read(out) is None and out.NumberOfFrames == 8
    noface = vf.video_photographic("v", [np.full_like(clip8[0], 90)] * 8)
    proc = Processor(parse({**settings().model_dump(mode="json", exclude_none=True),
                            "pixels": {"masker": "digital_mask", "on_failure": "blank"}}))
    done = proc.process(noface, route=False)
    assert done.notes["mask_failure"].startswith("more than 20% of 8 frames unmaskable")
    decoded = list(iter_frames(b"".join(generate_fragments(done.dataset.PixelData)), "h264"))
    assert len(decoded) == 8 and max(int(d.max()) for d in decoded) <= 2


def test_single_frame_blocks_still_read(face) -> None:
    ds = Dataset()
    private_block.write(ds, "digimask.params/1", "digital_mask", {"schema": "digimask.params/1"})
    assert private_block.read(ds)[0] == "digimask.params/1" and private_block.read_frames(ds) is None
    values = np.arange(6, dtype=np.float32).reshape(3, 2)
    private_block.write(ds, "s", "m", {}, private_block.FrameArray("x/1", values, np.array([0, 1, 2], np.uint8)))
    ds.NumberOfFrames = 3
    back = private_block.read_frames(ds)
    assert np.array_equal(back.values, values) and back.status.tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="unsupported per-frame schema"):
        list(series_params({"eyes": {}}, back))


def test_face_leaving_for_two_seconds_is_quarantined(clip8) -> None:
    """6 frames of face, 2 s (60 frames at 30 fps) without, 6 of face: past the default hold (0.5 s)."""
    grey = np.full_like(clip8[0], 100)
    frames = clip8[:6] + [grey] * 60 + clip8[:6]
    proc = Processor(settings(max_lost_fraction=0.9))
    with pytest.raises(Quarantined, match=r"masking failed: face or eye lost for more than 0.5 s \(from frame 7\)"):
        proc.process(vf.video_photographic("v", frames), route=False)


def test_frame_rate_from_the_timing_attributes() -> None:
    from digimask.pipeline.dicom.decode import frame_rate

    ds = Dataset()
    assert frame_rate(ds) is None
    ds.FrameTimeVector = [0, 40, 40, 40]
    assert frame_rate(ds) == pytest.approx(25.0)
    ds.RecommendedDisplayFrameRate = 24
    assert frame_rate(ds) == 24.0
    ds.CineRate = 30
    assert frame_rate(ds) == 30.0
    ds.FrameTime = "16.6667"
    assert frame_rate(ds) == pytest.approx(60.0, rel=1e-4)
    ds.FrameTime = "0"  # Ophthalmic Photography's "no timing"
    assert frame_rate(ds) == 30.0


class ReadsNarrow:
    """The digital mask, except that in frames ``narrow`` the analysis reads the fissures at ``fraction``
    of their height without calling them closed, as the landmark models read shut lids."""

    name, cleans_recognizable_features = "digital_mask", True

    def __init__(self, inner: DigitalMask, narrow: set[int], fraction: float) -> None:
        self.inner, self.narrow, self.fraction, self.seen = inner, narrow, fraction, 0

    def mask(self, image, ds):  # type: ignore[no-untyped-def]
        result = self.inner.mask(image, ds)
        self.seen += 1
        if self.seen - 1 in self.narrow:
            for eye in result.params["measurements"]["eyes"].values():
                eye["fissure_height_mm"] *= self.fraction
        return result


def test_frames_the_lid_rule_finds_shut_are_drawn_shut(face, masker) -> None:
    """Measured frames with the fissure below half the clip's median height (shut lids that the models
    read as a narrow opening) are drawn shut, so the mask reads closed where ``digimask measure`` reads the
    patient closed; at 0.6 of the median they stay open; frames without timing are not a clip's series."""
    frames = drifting(face, 9, seed=2)
    clip = ClipMasker(ReadsNarrow(masker, {3, 4}, 0.3), Video(), RATE, len(frames))
    out = list(clip.run(frames, Dataset()))
    assert clip.result.frames.status.tolist() == [MEASURED] * 3 + [CLOSED] * 2 + [MEASURED] * 4
    for i in (3, 4):
        with pytest.raises(Rejected, match="eyes closed"):
            analyse(out[i])
    assert analyse(out[7]).measurements.eyes
    for fraction, rate in ((0.6, RATE), (0.3, None)):
        clip = ClipMasker(ReadsNarrow(masker, {3, 4}, fraction), Video(), rate, len(frames))
        list(clip.run(frames[:6], Dataset()))
        assert clip.result.frames.status.tolist() == [MEASURED] * 6
