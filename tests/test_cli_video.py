"""``digimask mask``, ``render`` and ``measure`` on clips: .mp4 files and multi-frame DICOM, end to end."""
from __future__ import annotations

import json
from fractions import Fraction

import av
import dicom_factory as f
import numpy as np
import pydicom
import pytest
import video_factory as vf
from digimask.evaluation.eye_warps import iris_moved
from digimask.pipeline.dicom.video import iter_frames, probe
from digimask.pipeline.eyes.analyse import analyse
from PIL import Image

from digimask.cli import main
from digimask.commands.measure_video import blinks, nystagmus


def write_mp4(path, frames, rate=30):  # type: ignore[no-untyped-def]
    """A camera's clip: H.264 in MP4 by FFmpeg (PyAV), with a sound track the mask must not carry over."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        stream.options = {"crf": "16"}
        audio = container.add_stream("aac", rate=16000)
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        tone = av.AudioFrame.from_ndarray(np.zeros((1, 16000), np.float32), format="fltp", layout="mono")
        tone.sample_rate, tone.pts = 16000, 0
        container.mux(audio.encode(tone))
        container.mux(audio.encode(None))
        container.mux(stream.encode(None))
    return path


@pytest.fixture(scope="module")
def face(astronaut) -> np.ndarray:
    return vf.small(astronaut, 384)


@pytest.fixture(scope="module")
def masked_mp4(face, tmp_path_factory):  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("clip")
    clip = write_mp4(folder / "clip.mp4", vf.jittered(face, 20, px=1))
    out = folder / "out"
    code = main(["mask", str(clip), "-o", str(out), "--no-progress"])
    return code, clip, out


def test_mask_mp4_writes_the_masked_clip(masked_mp4) -> None:
    code, clip, out = masked_mp4
    assert code == 0
    source, result = probe(clip), probe(out / "clip.mp4")
    assert (result.frames, result.rate, result.width, result.height) == (20, Fraction(30), 384, 384)
    assert source.frames == 20
    with av.open(str(out / "clip.mp4")) as container:
        assert not container.streams.audio  # the sound stays behind
    masked, original = list(iter_frames(out / "clip.mp4")), list(iter_frames(clip))
    assert len(masked) == 20
    assert min(np.abs(m.astype(int) - o).mean() for m, o in zip(masked, original)) > 20
    params = json.loads((out / "clip.params.json").read_text())
    assert len(params["frames"]["values"]) == 20 and params["frames"]["rate_hz"] == 30
    assert len(params["frames"]["columns"]) == len(params["frames"]["values"][0])
    assert not list(out.glob(".*partial*"))


def test_render_recreates_the_clip(masked_mp4, tmp_path) -> None:
    _, _, out = masked_mp4
    assert main(["render", str(out / "clip.params.json"), "-o", str(tmp_path / "again.mp4")]) == 0
    again, masked = list(iter_frames(tmp_path / "again.mp4")), list(iter_frames(out / "clip.mp4"))
    assert len(again) == 20 and all(np.array_equal(a, m) for a, m in zip(again, masked))  # the same stream
    assert main(["render", str(out / "clip.params.json"), "-o", str(tmp_path / "frame.png")]) == 0
    pngs = sorted(tmp_path.glob("frame.*.png"))
    assert len(pngs) == 20
    error = max(np.abs(np.asarray(Image.open(p)).astype(int) - m).mean() for p, m in zip(pngs, masked))
    assert error < 1.0  # PNG: the render itself; MP4: its visually lossless encoding


def test_mp4_without_a_face_is_rejected_and_leaves_nothing(face, tmp_path, capsys) -> None:
    clip = write_mp4(tmp_path / "wall.mp4", [np.full_like(face, 120)] * 10)
    out = tmp_path / "out"
    assert main(["mask", str(clip), "-o", str(out), "--no-progress"]) == 1
    assert "rejected:" in capsys.readouterr().err
    assert list(out.iterdir()) == []


def test_multiframe_dicom_masked_and_rendered_exactly(face, tmp_path) -> None:
    src = f.save(vf.multiframe_sc("cli-clip", vf.jittered(face, 6, px=1, seed=2)), tmp_path / "clip.dcm")
    config = tmp_path / "node.toml"
    config.write_text('[node]\nallowed_calling_aes = ["SCU"]\n[deid]\nsecret = "test-key"\n')
    out = tmp_path / "out"
    assert main(["mask", str(src), "-o", str(out), "--config", str(config), "--no-progress"]) == 0
    masked = pydicom.dcmread(out / "clip.dcm")
    assert masked.NumberOfFrames == 6
    assert main(["render", str(out / "clip.dcm"), "-o", str(tmp_path / "r.png")]) == 0
    pngs = sorted(tmp_path.glob("r.*.png"))
    assert len(pngs) == 6
    assert np.array_equal(np.stack([np.asarray(Image.open(p)) for p in pngs]), masked.pixel_array)


def test_measure_video_series_and_nystagmus(face, tmp_path, capsys) -> None:
    """The irises swing 3 Hz side to side (a known warp of the photo) for 2 s: the trace shows it."""
    found = analyse(face)
    rng = np.random.default_rng(0)
    frames = []
    for i in range(60):
        frame = face
        for eye in found.eyes.values():
            frame = iris_moved(frame, eye, 3.0 * np.sin(2 * np.pi * 3.0 * i / 30))
        frames.append(np.clip(frame + rng.normal(0, 2, frame.shape), 0, 255).astype(np.uint8))
    clip = write_mp4(tmp_path / "nystagmus.mp4", frames)
    report = tmp_path / "m.json"
    assert main(["measure", str(clip), "--json", str(report), "--no-progress"]) == 0
    (record,) = json.loads(report.read_text())
    assert (record["status"], record["frames"], record["rate_hz"]) == ("ok", 60, 30.0)
    table = capsys.readouterr().out
    assert "/60 frames measured" in table and "nystagmus yes" in table
    assert record["measured_frames"] >= 55 and len(record["series"]) == 60
    n = record["nystagmus"]
    print("nystagmus", n)
    assert n["present"] and n["frequency_hz"] == pytest.approx(3.0, abs=0.5)
    assert record["blinks"]["count"] == 0


def _series(lids: list[str], gaze: np.ndarray) -> list[dict]:
    return [{"status": "ok" if lid == "open" else "closed", "lid": lid,
             "eyes": {"right": {"gaze_h_deg": float(g)}, "left": {"gaze_h_deg": float(g)}} if lid == "open" else {}}
            for lid, g in zip(lids, gaze)]


def test_blink_and_nystagmus_indicators_on_known_series() -> None:
    rate = 30.0
    lids = ["open"] * 90
    for start, n in ((20, 5), (60, 8)):  # 167 ms and 267 ms blinks
        lids[start:start + n] = ["closed"] * n
    t = np.arange(90) / rate
    still = blinks(_series(lids, np.zeros(90)), rate)
    assert still["count"] == 2 and [e["duration_ms"] for e in still["events"]] == [166.7, 266.7]
    assert still["per_minute"] == pytest.approx(40.0)
    assert nystagmus(_series(lids, 0.2 * np.random.default_rng(1).normal(size=90)), rate)["present"] is False
    wobble = nystagmus(_series(lids, 2.0 * np.sin(2 * np.pi * 4.0 * t) + 5 * t), rate)  # 4 Hz on a slow drift
    assert wobble["present"] and wobble["frequency_hz"] == pytest.approx(4.0, abs=0.34)
    assert wobble["amplitude_deg"] == pytest.approx(2.0, rel=0.1)
    long = ["closed"] * 45 + ["open"] * 45
    assert blinks(_series(long, np.zeros(90)), rate)["closures"][0]["duration_ms"] == 1500.0


def test_a_folder_batch_finds_clips(masked_mp4) -> None:
    """``digimask mask DIR`` / ``measure DIR`` pick up .mp4/.mov files beside photos and DICOM files."""
    from digimask.commands.inputs import collect_inputs

    _, clip, out = masked_mp4
    found = collect_inputs([clip.parent], skip_names=(".params.json",))
    assert clip in found and out / "clip.mp4" in found


def test_measure_video_takes_the_analysis_options(face, tmp_path) -> None:
    """The options of ``measure`` reach a clip's frames as they reach a photo: a nearer fixation distance
    adds exactly the extra convergence of fixating it to every frame's deviation."""
    clip = write_mp4(tmp_path / "still.mp4", [face] * 6)
    series = {}
    for distance in (1000, 400):
        report = tmp_path / f"m{distance}.json"
        assert main(["measure", str(clip), "--json", str(report), "--no-progress",
                     "--fixation-distance-mm", str(distance)]) == 0
        (record,) = json.loads(report.read_text())
        series[distance] = [f["deviation"]["horizontal_deg"] for f in record["series"] if f["status"] == "ok"]
    assert len(series[1000]) == len(series[400]) >= 5
    half = np.radians(analyse(face).measurements.binocular.convergence_deg / 2)  # atan(IPD / 2 / 1000 mm)
    extra = 2 * np.degrees(np.arctan(np.tan(half) * 1000 / 400)) - 2 * np.degrees(half)
    assert np.allclose(np.subtract(series[400], series[1000]), extra, atol=0.05)
