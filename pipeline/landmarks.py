"""Face, eyelid and iris landmark backends that run offline on models shipped in registry wheels.

* :class:`FaceMeshBackend`: MediaPipe FaceMesh with iris refinement (478 points) for full-face photos.
* :class:`IrisModel`: MediaPipe's ``iris_landmark.tflite`` (71 eye-region points + iris centre and 4 limbus
  points) on a square eye crop, for external-eye close-ups where a face detector fails or invents a face.
  It runs in a MediaPipe calculator graph (the TFLite interpreter inside the mediapipe wheel).
* :class:`FaceAlignmentBackend`: optional, needs the ``face-alignment`` package and its weights on a local
  path; the default path never uses it.

Coordinates are image pixels, x right, y down. Lid contours run from the lateral canthus to the medial
canthus, both canthi included.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np

Side = Literal["right", "left"]

# FaceMesh indices per anatomical side (MediaPipe's "right eye" set 33/133 is the patient's right eye).
# Lids run lateral canthus -> medial canthus.
FACEMESH_EYES: dict[str, dict[str, list[int] | int]] = {
    "right": {
        "upper": [33, 246, 161, 160, 159, 158, 157, 173, 133],
        "lower": [33, 7, 163, 144, 145, 153, 154, 155, 133],
        "iris": [468, 469, 470, 471, 472],
    },
    "left": {
        "upper": [263, 466, 388, 387, 386, 385, 384, 398, 362],
        "lower": [263, 249, 390, 373, 374, 380, 381, 382, 362],
        "iris": [473, 474, 475, 476, 477],
    },
}
# The iris model's first 16 eye points: lower lid (lateral -> medial, 9 points incl. canthi), then the
# upper lid without canthi (lateral -> medial, 7 points); for an eye shown as the patient's right eye.
IRIS_MODEL_LOWER = list(range(0, 9))
IRIS_MODEL_UPPER = [0, *range(9, 16), 8]
IRIS_MODEL_INPUT = 64
CLOSEUP_CROP_FACTOR = 2.3  # square crop side / eye-corner width, as MediaPipe's own eye ROI


@dataclass(frozen=True)
class EyeLandmarks:
    """One eye in image pixels. ``side`` is the patient's anatomical side.

    Lids run from the lateral canthus (first point) to the medial canthus (last point).
    """

    side: Side
    upper_lid: np.ndarray  # (N, 2)
    lower_lid: np.ndarray  # (M, 2)
    medial_canthus: np.ndarray  # (2,)
    lateral_canthus: np.ndarray  # (2,)
    iris_center: np.ndarray  # (2,)
    iris_radius: float  # px, mean distance of the 4 limbus points from the centre
    iris_rim: np.ndarray | None = None  # (4, 2) limbus points, when the model gives them

    @property
    def width(self) -> float:
        return float(np.linalg.norm(self.lateral_canthus - self.medial_canthus))

    def flipped(self, image_width: int) -> "EyeLandmarks":
        """The same eye in a horizontally mirrored image (side unchanged: the caller relabels)."""

        def fx(p: np.ndarray) -> np.ndarray:
            q = np.array(p, dtype=float, copy=True)
            q[..., 0] = image_width - 1 - q[..., 0]
            return q

        return EyeLandmarks(
            self.side, fx(self.upper_lid), fx(self.lower_lid), fx(self.medial_canthus),
            fx(self.lateral_canthus), fx(self.iris_center), self.iris_radius,
            None if self.iris_rim is None else fx(self.iris_rim),
        )


def _iris_geometry(points: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    centre, rim = points[0], points[1:5]
    return centre, float(np.mean(np.linalg.norm(rim - centre, axis=1))), rim


def eyes_from_facemesh(points: np.ndarray) -> dict[str, EyeLandmarks]:
    """Both eyes from one face's 478 FaceMesh points (pixels)."""
    eyes = {}
    for side, idx in FACEMESH_EYES.items():
        upper, lower = points[idx["upper"], :2], points[idx["lower"], :2]
        centre, radius, rim = _iris_geometry(points[idx["iris"], :2])
        eyes[side] = EyeLandmarks(side, upper, lower, upper[-1].copy(), upper[0].copy(), centre, radius, rim)
    return eyes


def _mediapipe_dir() -> Path:
    import mediapipe

    return Path(mediapipe.__file__).parent


class FaceMeshBackend:
    """MediaPipe FaceMesh (static images, iris refinement). Thread-safe: calls are serialised."""

    name = "mediapipe-facemesh"

    def __init__(self, max_faces: int = 4, min_detection_confidence: float = 0.5) -> None:
        from mediapipe.python.solutions import face_mesh

        self._mesh = face_mesh.FaceMesh(
            static_image_mode=True,
            max_num_faces=max_faces,
            refine_landmarks=True,
            min_detection_confidence=min_detection_confidence,
        )
        self._lock = threading.Lock()

    def detect(self, image: np.ndarray) -> list[np.ndarray]:
        """One (478, 3) array per face found, in pixels (z scaled like x, as MediaPipe gives it)."""
        h, w = image.shape[:2]
        with self._lock:
            result = self._mesh.process(np.ascontiguousarray(image))
        faces = []
        for face in result.multi_face_landmarks or ():
            pts = np.array([(p.x, p.y, p.z) for p in face.landmark], dtype=float)
            pts *= (w, h, w)
            faces.append(pts)
        return faces


_IRIS_GRAPH = """
input_stream: "image"
output_stream: "eye"
output_stream: "iris"
node {
  calculator: "ImageToTensorCalculator"
  input_stream: "IMAGE:image"
  output_stream: "TENSORS:input"
  options { [mediapipe.ImageToTensorCalculatorOptions.ext] {
    output_tensor_width: 64 output_tensor_height: 64 keep_aspect_ratio: false
    output_tensor_float_range { min: 0.0 max: 1.0 } } }
}
node {
  calculator: "InferenceCalculator"
  input_stream: "TENSORS:input"
  output_stream: "TENSORS:output"
  options { [mediapipe.InferenceCalculatorOptions.ext] {
    model_path: "mediapipe/modules/iris_landmark/iris_landmark.tflite" delegate { xnnpack {} } } }
}
node {
  calculator: "SplitTensorVectorCalculator"
  input_stream: "output"
  output_stream: "eye_tensor"
  output_stream: "iris_tensor"
  options { [mediapipe.SplitVectorCalculatorOptions.ext] {
    ranges: { begin: 0 end: 1 } ranges: { begin: 1 end: 2 } } }
}
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


class IrisModel:
    """MediaPipe's eye/iris landmark model on one square eye crop. Thread-safe: calls are serialised."""

    name = "mediapipe-iris"

    def __init__(self) -> None:
        from mediapipe.python import resource_util
        from mediapipe.python._framework_bindings import calculator_graph

        resource_util.set_resource_dir(str(_mediapipe_dir().parent))
        self._graph = calculator_graph.CalculatorGraph(graph_config=_IRIS_GRAPH)
        self._out: dict[str, object] = {}
        from mediapipe.python import packet_getter

        for stream in ("eye", "iris"):
            self._graph.observe_output_stream(
                stream, lambda s, p: self._out.__setitem__(s, packet_getter.get_proto(p))
            )
        self._graph.start_run()
        self._ts = 0
        self._lock = threading.Lock()

    def _infer(self, crop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from mediapipe.python import packet_creator
        from mediapipe.python._framework_bindings import image_frame

        frame = packet_creator.create_image_frame(
            image_format=image_frame.ImageFormat.SRGB, data=np.ascontiguousarray(crop)
        )
        with self._lock:
            self._out.clear()
            self._graph.add_packet_to_input_stream("image", frame.at(self._ts))
            self._ts += 1
            self._graph.wait_until_idle()
            eye, iris = self._out["eye"], self._out["iris"]
        as_xy = lambda lms: np.array([(p.x, p.y) for p in lms.landmark], dtype=float)  # noqa: E731
        return as_xy(eye), as_xy(iris)

    def run(
        self, image: np.ndarray, centre: np.ndarray, size: float, mirrored: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """Eye (71, 2) and iris (5, 2) points in image pixels for the square crop at ``centre``.

        The model is trained on eyes shown like a patient's right eye (lateral canthus on the image's
        left); ``mirrored=True`` flips the crop for a left eye and maps the points back.
        """
        crop, origin, step = square_crop(image, centre, size, IRIS_MODEL_INPUT)
        if mirrored:
            crop = crop[:, ::-1]
        eye, iris = self._infer(crop)
        if mirrored:
            eye[:, 0], iris[:, 0] = 1.0 - eye[:, 0], 1.0 - iris[:, 0]
        to_px = lambda p: origin + p * IRIS_MODEL_INPUT * step  # noqa: E731
        return to_px(eye), to_px(iris)

    def eye(self, image: np.ndarray, centre: np.ndarray, size: float, side: Side, mirrored: bool) -> EyeLandmarks:
        eye, iris = self.run(image, centre, size, mirrored)
        upper, lower = eye[IRIS_MODEL_UPPER], eye[IRIS_MODEL_LOWER]
        c, r, rim = _iris_geometry(iris)
        return EyeLandmarks(side, upper, lower, upper[-1].copy(), upper[0].copy(), c, r, rim)


def square_crop(image: np.ndarray, centre: np.ndarray, size: float, out: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Resample the square of side ``size`` px centred at ``centre`` to ``out`` x ``out`` (edges replicated).

    Returns the crop, the image position of the crop's top-left corner, and image px per crop px.
    """
    from PIL import Image

    step = float(size) / out
    origin = np.asarray(centre, dtype=float) - size / 2.0
    h, w = image.shape[:2]
    pad = int(np.ceil(size)) + 2
    x0, y0 = origin
    # Pad by edge replication only as much as the square leaves the image.
    left, top = max(0, -int(np.floor(x0))), max(0, -int(np.floor(y0)))
    right, bottom = max(0, int(np.ceil(x0 + size)) - w + 1), max(0, int(np.ceil(y0 + size)) - h + 1)
    src = image
    if left or top or right or bottom:
        src = np.pad(image, ((min(top, pad), min(bottom, pad)), (min(left, pad), min(right, pad)), (0, 0)), mode="edge")
        x0, y0 = x0 + min(left, pad), y0 + min(top, pad)
    box = (x0, y0, x0 + size, y0 + size)
    crop = Image.fromarray(src).resize((out, out), Image.BILINEAR, box=box, reducing_gap=None)
    return np.asarray(crop), origin, step


class FaceAlignmentBackend:
    """Optional 68-point landmarks from the ``face-alignment`` package, weights from a local path.

    face-alignment downloads its weights at run time, which fails offline; provision them by hand (the
    files its torch hub cache expects) and pass their folder as ``weights_dir``. Not installed by default.
    """

    name = "face-alignment"

    def __init__(self, weights_dir: str | os.PathLike[str], device: str = "cpu") -> None:
        weights = Path(weights_dir)
        if not weights.is_dir() or not any(weights.glob("*.pth*")) and not any(weights.glob("*.zip")):
            raise FileNotFoundError(
                f"face-alignment weights not found in {weights}: provision the 2DFAN4 and face detector "
                "files there by hand (no download at run time)"
            )
        try:
            import face_alignment
        except ImportError as exc:
            raise ImportError(
                "the face-alignment backend needs the optional 'face-alignment' package "
                "(pip install face-alignment==1.5.0, CPU torch); the default MediaPipe backend does not"
            ) from exc
        os.environ["TORCH_HOME"] = str(weights.parent.parent if weights.name == "checkpoints" else weights)
        self._fa = face_alignment.FaceAlignment(face_alignment.LandmarksType.TWO_D, device=device)
        self._lock = threading.Lock()

    def detect(self, image: np.ndarray) -> list[np.ndarray]:
        """One (68, 2) array per face, pixels (iBUG 68-point order)."""
        with self._lock:
            found = self._fa.get_landmarks_from_image(image)
        return [np.asarray(f, dtype=float)[:, :2] for f in found or ()]


@lru_cache(maxsize=4)
def facemesh(max_faces: int = 4) -> FaceMeshBackend:
    """The process's FaceMesh instance (creation takes ~100 ms)."""
    return FaceMeshBackend(max_faces)


@lru_cache(maxsize=1)
def iris_model() -> IrisModel:
    return IrisModel()


@dataclass(frozen=True)
class CloseupEye:
    eye: EyeLandmarks
    side_source: Literal["position", "header", "canthal_tilt"]
    consistency: float  # landmark spread between crops and orientations / eye width (small = stable)


CLOSEUP_CROP_SIZES = (0.55, 0.7, 0.85, 1.0, 1.15, 1.3)  # square crop side / region extent


def locate_eye(
    model: IrisModel, image: np.ndarray, centre: np.ndarray, extent: float, mirrored: bool
) -> tuple[np.ndarray, float, float]:
    """The square crop where the model finds an eye most consistently.

    For each crop size (a fraction of ``extent``) the crop is re-centred on the eye the model finds;
    the size whose contour is most stable (:func:`closeup_consistency`) wins. Iterating the size itself
    (2.3x the found eye width, as MediaPipe does from a face) does not settle: the model reads large,
    hooded eyes as narrower at every scale. Returns centre, size and that stability figure.
    """
    best = (np.asarray(centre, dtype=float), extent, float("inf"))
    for fraction in CLOSEUP_CROP_SIZES:
        size, c = fraction * extent, np.asarray(centre, dtype=float)
        for _ in range(3):
            eye, _ = model.run(image, c, size, mirrored)
            c = eye[[0, 8]].mean(axis=0)
        spread = closeup_consistency(model, image, c, size, mirrored)
        if spread < best[2]:
            best = (c, size, spread)
    return best


def closeup_consistency(model: IrisModel, image: np.ndarray, centre: np.ndarray, size: float, mirrored: bool) -> float:
    """How much the eye contour moves across crop scales and between the two orientations.

    A real eye gives the same contour wherever the crop sits; texture that merely resembles an eye does
    not. Points are compared by position (the mirrored run labels the canthi the other way round).
    """
    runs = []
    for factor, mirror in ((1.0, mirrored), (0.85, mirrored), (1.2, mirrored), (1.0, not mirrored)):
        eye, iris = model.run(image, centre, size * factor, mirror)
        contour = eye[:16]
        if mirror != mirrored:  # same lid points, canthi and order reversed
            contour = contour[[8, 7, 6, 5, 4, 3, 2, 1, 0, 15, 14, 13, 12, 11, 10, 9]]
        runs.append(np.vstack([contour, iris[:1]]))
    runs = np.stack(runs)
    width = np.linalg.norm(runs[0, 8] - runs[0, 0])
    return float(np.linalg.norm(runs - runs.mean(axis=0), axis=2).mean() / max(width, 1e-6))


def find_closeup_eyes(
    image: np.ndarray, model: IrisModel, laterality: Side | None = None
) -> list[CloseupEye]:
    """Eyes in an external-eye close-up: one eye, or both when the image is wide.

    The side of a lone eye comes from ``laterality`` (e.g. DICOM ImageLaterality) when given, else from
    the canthal tilt (the lateral canthus normally sits higher than the medial one): a guess, reported
    as such.
    """
    h, w = image.shape[:2]
    if w >= 1.6 * h:
        regions = [((w / 4, h / 2), "right", "position"), ((3 * w / 4, h / 2), "left", "position")]
        extent = max(w / 2, h)
    else:
        regions = [((w / 2, h / 2), laterality, "header" if laterality else "canthal_tilt")]
        extent = max(w, h)
    found = []
    for centre, side, source in regions:
        if side is None:
            c, size, _ = locate_eye(model, image, np.array(centre), extent, mirrored=False)
            eye, _ = model.run(image, c, size, mirrored=False)
            side = "right" if eye[0, 1] <= eye[8, 1] else "left"  # image-left canthus higher: lateral
        mirrored = side == "left"
        c, size, spread = locate_eye(model, image, np.array(centre), extent, mirrored)
        found.append(CloseupEye(model.eye(image, c, size, side, mirrored), source, spread))
    return found
