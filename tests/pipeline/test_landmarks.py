"""Landmark backends on real photos (skimage/matplotlib) and on images drawn here."""
from __future__ import annotations

import numpy as np
import pytest
from digimask.pipeline.eyes.landmarks import (
    _IRIS_GRAPH,
    IRIS_MODEL_INPUT,
    EyeLandmarks,
    FaceAlignmentBackend,
    detect_face_boxes,
    detect_near_face_boxes,
    eye_crop,
    eyes_from_facemesh,
    facemesh,
    find_closeup_eyes,
    iris_model,
    refine_eye,
)
from PIL import Image


@pytest.fixture(scope="module")
def astronaut_eyes(astronaut: np.ndarray) -> dict[str, EyeLandmarks]:
    faces = facemesh().detect(astronaut)
    assert len(faces) == 1 and faces[0].shape == (478, 3)
    return eyes_from_facemesh(faces[0])


@pytest.mark.parametrize("mirrored", [False, True])
@pytest.mark.parametrize("angle_deg", [0.0, 20.0, -35.0])
def test_eye_crop_maps_crop_points_back_to_the_image(mirrored: bool, angle_deg: float) -> None:
    image = np.zeros((120, 160, 3), np.uint8)
    image[40:44, 90:94] = 255  # a bright square centred at (92, 42) in continuous coordinates
    crop, to_image = eye_crop(image, np.array([80.0, 50.0]), 60.0, np.radians(angle_deg), mirrored, 64)
    ys, xs = np.nonzero(crop[:, :, 0] > 60)
    weights = crop[ys, xs, 0].astype(float)
    found = np.array([(xs + 0.5) @ weights, (ys + 0.5) @ weights]) / weights.sum() / 64
    assert to_image(found[None])[0] == pytest.approx([92.0, 42.0], abs=0.6)


@pytest.mark.parametrize("size", [40.0, 130.0, 250.0, 321.0])
@pytest.mark.parametrize("angle_deg", [0.0, 25.0])
def test_eye_crop_samples_where_it_says_at_every_size(size: float, angle_deg: float) -> None:
    """On an image whose pixels hold their own centre's coordinates, every crop pixel must read the
    point ``to_image`` gives for it, also for large crops that are box-filtered first (those were offset
    by 1-2 px before)."""
    yy, xx = np.mgrid[0:600, 0:800]
    ramp = np.dstack([xx + 0.5, yy + 0.5, np.zeros_like(xx)]).astype(np.float32)
    crop, to_image = eye_crop(ramp, np.array([400.3, 300.6]), size, np.radians(angle_deg), False, 64)
    grid = (np.stack(np.meshgrid(np.arange(64), np.arange(64)), axis=-1).reshape(-1, 2) + 0.5) / 64
    np.testing.assert_allclose(crop[..., :2].reshape(-1, 2), to_image(grid), atol=0.02 * max(1.0, size / 64))


def test_eye_crop_repeats_edges_outside_the_image() -> None:
    image = np.full((50, 50, 3), 200, np.uint8)
    crop, _ = eye_crop(image, np.array([0.0, 0.0]), 80.0, 0.3, False, 64)
    assert crop.min() == 200


def test_iris_model_agrees_with_facemesh(astronaut: np.ndarray, astronaut_eyes: dict[str, EyeLandmarks]) -> None:
    model = iris_model()
    for side, eye in astronaut_eyes.items():
        centre = (eye.lateral_canthus + eye.medial_canthus) / 2
        found = model.eye(astronaut, centre, 2.3 * eye.width, side, mirrored=side == "left")
        lids = np.vstack([found.upper_lid, found.lower_lid]) - np.vstack([eye.upper_lid, eye.lower_lid])
        assert np.linalg.norm(lids, axis=1).mean() < 0.08 * eye.width
        assert np.linalg.norm(found.iris_center - eye.iris_center) < 0.1 * eye.width
        assert found.iris_radius == pytest.approx(eye.iris_radius, rel=0.2)


_LANDMARK_NODES = """
node {
  calculator: "TensorsToLandmarksCalculator"
  input_stream: "TENSORS:eye_tensor"
  output_stream: "NORM_LANDMARKS:eye"
  options { [mediapipe.TensorsToLandmarksCalculatorOptions.ext] {
    num_landmarks: 71 input_image_width: 64 input_image_height: 64 } }
}
node {
  calculator: "TensorsToLandmarksCalculator"
  input_stream: "TENSORS:iris_tensor"
  output_stream: "NORM_LANDMARKS:iris"
  options { [mediapipe.TensorsToLandmarksCalculatorOptions.ext] {
    num_landmarks: 5 input_image_width: 64 input_image_height: 64 } }
}
"""


def test_iris_model_reads_the_points_mediapipes_landmark_calculator_gives(
        astronaut: np.ndarray, astronaut_eyes: dict[str, EyeLandmarks]) -> None:
    """The model's raw outputs become points as MediaPipe's TensorsToLandmarksCalculator makes them
    (the iris model's own graph), bit for bit, on crops of a real face at several sizes and turns."""
    from mediapipe.python import packet_creator, packet_getter
    from mediapipe.python._framework_bindings import calculator_graph, image_frame

    model = iris_model()  # (sets MediaPipe's resource folder, where the graph finds the model)
    crops = [eye_crop(astronaut, (eye.lateral_canthus + eye.medial_canthus) / 2, f * eye.width, angle,
                      mirrored, IRIS_MODEL_INPUT)[0]
             for eye in astronaut_eyes.values() for f in (1.9, 2.5) for angle in (0.0, 0.2) for mirrored in (False, True)]
    graph = calculator_graph.CalculatorGraph(
        graph_config=_IRIS_GRAPH[:_IRIS_GRAPH.index('node { calculator: "TensorsToFloatsCalculator"')] + _LANDMARK_NODES)
    out: dict[tuple[str, int], np.ndarray] = {}
    for stream in ("eye", "iris"):
        graph.observe_output_stream(stream, lambda s, p: out.__setitem__(
            (s, p.timestamp.value), np.array([(q.x, q.y) for q in packet_getter.get_proto(p).landmark])))
    graph.start_run()
    for t, crop in enumerate(crops):
        frame = packet_creator.create_image_frame(image_format=image_frame.ImageFormat.SRGB, data=crop)
        graph.add_packet_to_input_stream("image", frame.at(t))
    graph.wait_until_idle()
    graph.close()
    for t, (eye, iris) in enumerate(model._infer(crops)):
        np.testing.assert_array_equal(eye, out[("eye", t)])
        np.testing.assert_array_equal(iris, out[("iris", t)])

def test_refined_eye_is_mirror_symmetric(grace_hopper: np.ndarray) -> None:
    """Averaging plain and mirrored crops: a flipped image gives the flipped landmarks."""
    eye = eyes_from_facemesh(facemesh().detect(grace_hopper)[0])["right"]
    w = grace_hopper.shape[1]
    direct = refine_eye(iris_model(), grace_hopper, eye, 0.0)
    # In the mirror the same eye looks like a left eye, and "toward the patient's left" is still +x.
    mirrored_eye = eye.flipped(w)
    mirrored_eye = EyeLandmarks("left", *[getattr(mirrored_eye, f) for f in
                                          ("upper_lid", "lower_lid", "medial_canthus", "lateral_canthus",
                                           "iris_center", "iris_radius", "iris_rim")])
    back = refine_eye(iris_model(), np.ascontiguousarray(grace_hopper[:, ::-1]), mirrored_eye, 0.0).flipped(w)
    assert np.abs(back.upper_lid - direct.upper_lid).max() < 0.3
    assert np.abs(back.iris_center - direct.iris_center).max() < 0.3
    assert back.iris_radius == pytest.approx(direct.iris_radius, abs=0.2)


def _closeup(image: np.ndarray, eye: EyeLandmarks, size: int = 384) -> tuple[np.ndarray, float, np.ndarray]:
    """An external-eye close-up cut from a full-face photo: square, ~2.6x the eye width, upscaled."""
    centre = (eye.lateral_canthus + eye.medial_canthus) / 2
    half = 1.3 * eye.width
    x0, y0 = int(centre[0] - half), int(centre[1] - half)
    crop = image[y0:y0 + int(2 * half), x0:x0 + int(2 * half)]
    zoom = size / crop.shape[1]
    big = np.asarray(Image.fromarray(crop).resize((size, size), Image.BICUBIC))
    return big, zoom, (eye.iris_center - (x0, y0)) * zoom


@pytest.mark.parametrize("side", ["right", "left"])
def test_closeup_finds_the_eye_cut_from_a_photo(grace_hopper: np.ndarray, side: str) -> None:
    eye = eyes_from_facemesh(facemesh().detect(grace_hopper)[0])[side]
    image, zoom, iris = _closeup(grace_hopper, eye)
    found = find_closeup_eyes(image, iris_model(), laterality=side)
    assert len(found) == 1
    got = found[0]
    assert got.eye.side == side and got.side_source == "header"
    assert got.consistency < 0.075
    assert np.linalg.norm(got.eye.iris_center - iris) < 0.15 * eye.width * zoom
    assert got.eye.width == pytest.approx(eye.width * zoom, rel=0.25)


@pytest.mark.parametrize("photo", ["astronaut", "grace_hopper"])
def test_near_face_detector_confirms_faces_not_the_ones_imagined_on_eye_closeups(photo: str, request) -> None:
    """The short-range detector is the second opinion for a face the full-range one misses: it must find
    the real face, and must not confirm what it half-sees in an eye close-up (there it scores 0.5-0.6)."""
    image = request.getfixturevalue(photo)
    (near,), (full,) = detect_near_face_boxes(image), detect_face_boxes(image)
    assert np.abs(near - full).max() < 0.25 * (full[2] - full[0])
    for side, eye in eyes_from_facemesh(facemesh().detect(image)[0]).items():
        assert detect_near_face_boxes(_closeup(image, eye)[0]) == []


def test_each_thread_gets_its_own_models() -> None:
    """Worker threads must not queue on one MediaPipe graph; within a thread a model is built once."""
    import threading

    seen = []
    worker = threading.Thread(target=lambda: seen.append((iris_model(), iris_model(), facemesh(), facemesh(4))))
    worker.start()
    worker.join()
    (model, again, mesh, mesh4), = seen
    assert model is again and mesh is mesh4
    assert model is not iris_model() and mesh is not facemesh()


def test_closeup_search_finds_no_stable_eye_in_a_non_face(astronaut: np.ndarray) -> None:
    from skimage import data

    for image in (data.coffee(), data.rocket()):
        assert all(e.consistency > 0.075 for e in find_closeup_eyes(image, iris_model()))


def test_face_alignment_backend_names_missing_weights(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=r"weights not found .*missing 2DFAN4-\*.zip, s3fd-\*.pth"):
        FaceAlignmentBackend(tmp_path / "nowhere")
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "s3fd-619a316812.pth").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"missing 2DFAN4-\*.zip\)"):
        FaceAlignmentBackend(tmp_path)
