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
from dataclasses import asdict, dataclass, replace
from functools import wraps
from inspect import signature
from pathlib import Path
from typing import Literal

import numpy as np

Side = Literal["right", "left"]
SIDES: tuple[Side, Side] = ("right", "left")  # anatomical: the patient's right eye is on the image's left

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
# A mirrored run labels the eye the other way round: these map its points back to the model's labels.
CONTOUR_MIRROR = [8, 7, 6, 5, 4, 3, 2, 1, 0, 15, 14, 13, 12, 11, 10, 9]
IRIS_MIRROR = [0, 3, 2, 1, 4]  # centre, then limbus points at crop +x, up, -x, down
REFINE_CROP_FACTORS = (1.9, 2.1, 2.3, 2.5, 2.7)


@dataclass(frozen=True)
class FitQuality:
    """How one part of an eye (limbus, a lid margin, the reflex) fitted the image's edges.

    ``ok`` False means the seed (the landmark model's estimate) was kept, and ``reason`` says why.
    ``sd_px`` is the 1-SD uncertainty of what the measurements take from the part: the limbus centre,
    the lid's height at the iris centre, the reflex centroid.
    """

    ok: bool
    points: int = 0  # edge points found
    inliers: float = 0.0  # fraction of them the robust fit kept
    rms_px: float = float("nan")  # RMS residual of the inliers
    coverage: float = 0.0  # fraction of the angle (limbus) or of the canthus-to-canthus span (lids) covered
    sd_px: float = float("nan")
    reason: str | None = None

    def to_dict(self) -> dict:
        return {k: (None if isinstance(x, float) and not np.isfinite(x) else x) for k, x in asdict(self).items()}


@dataclass(frozen=True)
class EyeFit:
    """The fit quality of each fitted part of one eye."""

    limbus: FitQuality
    upper_lid: FitQuality
    lower_lid: FitQuality
    reflex: FitQuality | None = None  # None: no reflex looked for or none found
    limbus_radius_sd: float = float("nan")  # px, 1 SD of the fitted radius (NaN: not fitted)

    def to_dict(self) -> dict:
        parts = {"limbus": self.limbus, "upper_lid": self.upper_lid, "lower_lid": self.lower_lid,
                 "reflex": self.reflex}
        return {name: None if q is None else q.to_dict() for name, q in parts.items()}


@dataclass(frozen=True)
class EyeLandmarks:
    """One eye in image pixels. ``side`` is the patient's anatomical side.

    Lids run from the lateral canthus (first point) to the medial canthus (last point). After the analysis
    (``pipeline.eyes.edges.fit_eyes``) the iris and the lids are the geometry fitted to the image's edges:
    the limbus circle, and points resampled on the fitted margin curves; ``seed`` keeps the landmark
    model's estimate they started from. The mask's self-check may build one from drawn geometry.
    """

    side: Side
    upper_lid: np.ndarray  # (N, 2)
    lower_lid: np.ndarray  # (M, 2)
    medial_canthus: np.ndarray  # (2,)
    lateral_canthus: np.ndarray  # (2,)
    iris_center: np.ndarray  # (2,) limbus centre
    iris_radius: float  # px, limbus radius
    iris_rim: np.ndarray | None = None  # (4, 2) limbus points at +u, +v, -u, -v (or the model's 4 points)
    reflex: np.ndarray | None = None  # (2,) corneal light reflex centroid, when one was found
    pupil_radius: float | None = None  # px, when the pupil was resolved
    fit: EyeFit | None = None  # None: landmarks only, nothing fitted
    seed: EyeLandmarks | None = None  # the landmark estimate the fit started from

    @property
    def width(self) -> float:
        return float(np.linalg.norm(self.lateral_canthus - self.medial_canthus))

    def flipped(self, image_width: int) -> "EyeLandmarks":
        """The same eye in a horizontally mirrored image (side unchanged: the caller relabels)."""

        def fx(p: np.ndarray) -> np.ndarray:
            q = np.array(p, dtype=float, copy=True)
            q[..., 0] = image_width - q[..., 0]
            return q

        return replace(
            self, upper_lid=fx(self.upper_lid), lower_lid=fx(self.lower_lid),
            medial_canthus=fx(self.medial_canthus), lateral_canthus=fx(self.lateral_canthus),
            iris_center=fx(self.iris_center), iris_rim=None if self.iris_rim is None else fx(self.iris_rim),
            reflex=None if self.reflex is None else fx(self.reflex),
            seed=None if self.seed is None else self.seed.flipped(image_width),
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
    """MediaPipe FaceMesh (static images, iris refinement: 478 points). Thread-safe: calls are serialised."""

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
node { calculator: "TensorsToFloatsCalculator" input_stream: "TENSORS:eye_tensor" output_stream: "FLOATS:eye" }
node { calculator: "TensorsToFloatsCalculator" input_stream: "TENSORS:iris_tensor" output_stream: "FLOATS:iris" }
"""


class IrisModel:
    """MediaPipe's eye/iris landmark model on one square eye crop. Thread-safe: calls are serialised."""

    name = "mediapipe-iris"

    def __init__(self) -> None:
        from mediapipe.python import resource_util
        from mediapipe.python._framework_bindings import calculator_graph

        resource_util.set_resource_dir(str(_mediapipe_dir().parent))
        self._graph = calculator_graph.CalculatorGraph(graph_config=_IRIS_GRAPH)
        self._out: dict[tuple[str, int], object] = {}
        from mediapipe.python import packet_getter

        for stream in ("eye", "iris"):
            self._graph.observe_output_stream(
                stream, lambda s, p: self._out.__setitem__((s, p.timestamp.value), packet_getter.get_float_list(p))
            )
        self._graph.start_run()
        self._ts = 0
        self._lock = threading.Lock()

    def _infer(self, crops: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """All crops through the graph as one stream of packets, waited for once, as normalised crop
        points (the model itself, 1.2 ms a crop here, is the cost: a call adds about 0.1 ms, so batching more
        crops per call saves nothing more).

        The model's raw (x, y, z) outputs are divided by the input size in float32, exactly as MediaPipe's
        TensorsToLandmarksCalculator does for NORM_LANDMARKS (bit for bit), without its protos."""
        from mediapipe.python import packet_creator
        from mediapipe.python._framework_bindings import image_frame

        frames = [
            packet_creator.create_image_frame(image_format=image_frame.ImageFormat.SRGB, data=np.ascontiguousarray(c))
            for c in crops
        ]
        with self._lock:
            self._out.clear()
            first = self._ts
            for frame in frames:
                self._graph.add_packet_to_input_stream("image", frame.at(self._ts))
                self._ts += 1
            self._graph.wait_until_idle()
            out = [(self._out[("eye", t)], self._out[("iris", t)]) for t in range(first, self._ts)]
        size = np.float32(IRIS_MODEL_INPUT)
        as_xy = lambda raw: (np.asarray(raw, np.float32).reshape(-1, 3)[:, :2] / size).astype(float)  # noqa: E731
        return [(as_xy(eye), as_xy(iris)) for eye, iris in out]

    def run_many(
        self, image: np.ndarray, crops: list[tuple[np.ndarray, float, bool, float]]
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """:meth:`run` for several (centre, size, mirrored, angle) crops of one image, in one pass."""
        prepared = [eye_crop(image, c, size, angle, mirrored, IRIS_MODEL_INPUT) for c, size, mirrored, angle in crops]
        results = self._infer([crop for crop, _ in prepared])
        return [(to_image(eye), to_image(iris)) for (_, to_image), (eye, iris) in zip(prepared, results)]

    def run(
        self, image: np.ndarray, centre: np.ndarray, size: float, mirrored: bool, angle: float = 0.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Eye (71, 2) and iris (5, 2) points in image pixels for a square crop.

        The crop of side ``size`` px at ``centre`` is turned by ``angle`` (radians, the eye's canthal axis
        from the image's x axis) so the model sees an upright eye. The model is trained on eyes shown like
        a patient's right eye (lateral canthus on the crop's left); ``mirrored=True`` flips the crop for
        a left eye. Points come back in image coordinates either way.
        """
        return self.run_many(image, [(centre, size, mirrored, angle)])[0]

    def eye(
        self, image: np.ndarray, centre: np.ndarray, size: float, side: Side, mirrored: bool, angle: float = 0.0
    ) -> EyeLandmarks:
        eye, iris = self.run(image, centre, size, mirrored, angle)
        return _eye_from_model(eye[:16], iris, side)


def _eye_from_model(contour: np.ndarray, iris: np.ndarray, side: Side) -> EyeLandmarks:
    upper, lower = contour[IRIS_MODEL_UPPER], contour[IRIS_MODEL_LOWER]
    c, r, rim = _iris_geometry(iris)
    return EyeLandmarks(side, upper, lower, upper[-1].copy(), upper[0].copy(), c, r, rim)


def eye_crop(
    image: np.ndarray, centre: np.ndarray, size: float, angle: float, mirrored: bool, out: int
):
    """Resample a square (side ``size`` px, turned by ``angle``, optionally mirrored) to ``out`` x ``out``.

    Pixel coordinates are continuous (a pixel's centre at +0.5). Outside the image, edge pixels are
    repeated. Returns the crop and a function mapping normalised crop points (N, 2) to image pixels.
    """
    import cv2

    centre = np.asarray(centre, dtype=float)
    ex = np.array([np.cos(angle), np.sin(angle)])
    ey = np.array([-ex[1], ex[0]])
    if mirrored:
        ex = -ex
    step = float(size) / out
    origin = centre - (ex + ey) * size / 2.0  # image position of the crop's (0, 0) corner
    k = max(1, int(step))  # box-filter first so a large crop does not alias
    src, corner = image, np.zeros(2)
    if k > 1:
        half = size / 2.0 * (abs(ex).sum())  # half-extent of the turned square's bounding box
        x0, y0 = int(np.floor(centre[0] - half)) - 2 * k, int(np.floor(centre[1] - half)) - 2 * k
        n = (int(np.ceil(2 * half)) + 4 * k) // k * k + k  # a whole number of k-blocks
        h, w = image.shape[:2]
        region = image[max(0, y0):max(0, min(h, y0 + n)), max(0, x0):max(0, min(w, x0 + n))]
        if region.size == 0:
            region = np.zeros((1, 1, *image.shape[2:]), dtype=image.dtype)
        pads = ((max(0, -y0), max(0, y0 + n - max(h, y0))), (max(0, -x0), max(0, x0 + n - max(w, x0))), (0, 0))
        region = np.pad(region, pads[: region.ndim], mode="edge")[:n, :n]
        src = cv2.resize(region, (n // k, n // k), interpolation=cv2.INTER_AREA)
        corner = np.array([x0, y0], dtype=float)
    # dst pixel (j, i) samples the continuous point origin + (j + 0.5) step ex + (i + 0.5) step ey; in the
    # (reduced) source that is (point - corner) / k, and OpenCV puts pixel centres at integers (-0.5).
    s = step / k
    c = (origin - corner) / k - 0.5 + 0.5 * s * (ex + ey)
    matrix = np.array([[ex[0] * s, ey[0] * s, c[0]], [ex[1] * s, ey[1] * s, c[1]]])
    crop = cv2.warpAffine(np.ascontiguousarray(src), matrix, (out, out), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)

    def to_image(points: np.ndarray) -> np.ndarray:
        p = np.asarray(points, dtype=float) * size
        return origin + p[:, :1] * ex + p[:, 1:2] * ey

    return crop, to_image


class FaceAlignmentBackend:
    """Optional 68-point landmarks from the ``face-alignment`` package (1.5.0), weights from a local path.

    face-alignment fetches its weights through torch hub at run time, which fails offline. Provision the
    files by hand into ``WEIGHTS_DIR/checkpoints/`` (``2DFAN4-*.zip`` and ``s3fd-*.pth``, the names
    face-alignment requests) and pass ``WEIGHTS_DIR``; this points torch hub there (process-wide). The
    package is not a dependency: installing it adds numba and opencv-python, which would shadow the
    opencv-contrib-python that mediapipe uses. The default MediaPipe path never needs it.
    """

    name = "face-alignment"

    def __init__(self, weights_dir: str | os.PathLike[str], device: str = "cpu") -> None:
        checkpoints = Path(weights_dir) / "checkpoints"
        missing = [p for p in ("2DFAN4-*.zip", "s3fd-*.pth") if not any(checkpoints.glob(p))]
        if missing:
            raise FileNotFoundError(
                f"face-alignment weights not found in {checkpoints} (missing {', '.join(missing)}): "
                "provision them by hand; nothing is downloaded at run time"
            )
        try:
            import face_alignment
            import torch
        except ImportError as exc:
            raise ImportError(
                "the face-alignment backend needs the optional 'face-alignment' package; the default "
                "MediaPipe backend does not"
            ) from exc
        torch.hub.set_dir(str(weights_dir))
        self._fa = face_alignment.FaceAlignment(face_alignment.LandmarksType.TWO_D, device=device)
        self._lock = threading.Lock()

    def detect(self, image: np.ndarray) -> list[np.ndarray]:
        """One (68, 2) array per face, pixels (iBUG 68-point order)."""
        with self._lock:
            found = self._fa.get_landmarks_from_image(image)
        return [np.asarray(f, dtype=float)[:, :2] for f in found or ()]


_THREAD_MODELS = threading.local()


def _per_thread(factory):
    """Cache ``factory(*args)`` per calling thread: MediaPipe graphs run one image at a time, so worker
    threads sharing one would queue on its lock (two workers on 2 cores: 1.1-1.3x instead of ~1.8x)."""

    sig = signature(factory)

    @wraps(factory)
    def get(*args):
        bound = sig.bind(*args)
        bound.apply_defaults()
        cache = _THREAD_MODELS.__dict__.setdefault(factory.__name__, {})
        if bound.args not in cache:
            cache[bound.args] = factory(*bound.args)
        return cache[bound.args]

    return get


@_per_thread
def facemesh(max_faces: int = 4) -> FaceMeshBackend:
    """This thread's FaceMesh instance (creation takes ~100 ms)."""
    return FaceMeshBackend(max_faces)


@_per_thread
def iris_model() -> IrisModel:
    return IrisModel()


class FaceDetectorBackend:
    """MediaPipe's face detector: full-range (faces up to ~5 m; used to count faces) or short-range.
    Thread-safe."""

    def __init__(self, min_confidence: float = 0.5, full_range: bool = True) -> None:
        from mediapipe.python.solutions import face_detection

        self._detector = face_detection.FaceDetection(model_selection=int(full_range),
                                                      min_detection_confidence=min_confidence)
        self._min_confidence = min_confidence  # the short-range graph passes lower scores through
        self._lock = threading.Lock()

    def boxes(self, image: np.ndarray) -> list[np.ndarray]:
        """Face boxes (x0, y0, x1, y1) in pixels."""
        h, w = image.shape[:2]
        with self._lock:
            detections = self._detector.process(np.ascontiguousarray(image)).detections or ()
        out = []
        for det in detections:
            if det.score[0] < self._min_confidence:
                continue
            b = det.location_data.relative_bounding_box
            out.append(np.array([b.xmin * w, b.ymin * h, (b.xmin + b.width) * w, (b.ymin + b.height) * h]))
        return out


@_per_thread
def face_detector() -> FaceDetectorBackend:
    return FaceDetectorBackend()


def detect_face_boxes(image: np.ndarray) -> list[np.ndarray]:
    return face_detector().boxes(image)


NEAR_FACE_MIN_CONFIDENCE = 0.75


@_per_thread
def near_face_detector() -> FaceDetectorBackend:
    return FaceDetectorBackend(NEAR_FACE_MIN_CONFIDENCE, full_range=False)


def detect_near_face_boxes(image: np.ndarray) -> list[np.ndarray]:
    """Confident boxes of MediaPipe's short-range detector (faces within ~2 m, filling the frame).

    The full-range model misses some of these (a frontal face with the tongue out and the eyes wide,
    55 % of a 940 px photo). FaceMesh uses the short-range model itself, so only a confident box counts:
    on the 22 test photos here real faces score 0.75-0.94 (0.56-0.58 for small background faces the
    full-range model finds), the face it imagines on an eye close-up 0.63.
    """
    return near_face_detector().boxes(image)


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
    crops = [(centre, size * f, m, 0.0) for f, m in ((1.0, mirrored), (0.85, mirrored), (1.2, mirrored), (1.0, not mirrored))]
    runs = []
    for (_, _, mirror, _), (eye, iris) in zip(crops, model.run_many(image, crops)):
        contour = eye[:16]
        if mirror != mirrored:  # same lid points, canthi and order reversed
            contour = contour[CONTOUR_MIRROR]
        runs.append(np.vstack([contour, iris[:1]]))
    runs = np.stack(runs)
    width = np.linalg.norm(runs[0, 8] - runs[0, 0])
    return float(np.linalg.norm(runs - runs.mean(axis=0), axis=2).mean() / max(width, 1e-6))


def refine_eye(
    model: IrisModel,
    image: np.ndarray,
    eye: EyeLandmarks,
    angle: float,
    factors: tuple[float, ...] = REFINE_CROP_FACTORS,
    width: float | None = None,
) -> EyeLandmarks:
    """The eye model's average over crops (side = factor x ``width``, default the eye's width), plain and
    mirrored, centred on the eye and turned by ``angle``.

    Averaging both orientations makes the result mirror-symmetric by construction (a flipped image gives
    the flipped landmarks) and halves the model's scatter.
    """
    centre = (eye.lateral_canthus + eye.medial_canthus) / 2.0
    width = max(width or eye.width, 4.0)
    proper = eye.side == "left"  # the model's own orientation for this eye
    crops = [(centre, factor * width, mirrored, angle) for factor in factors for mirrored in (proper, not proper)]
    contours, irises = [], []
    for (_, _, mirrored, _), (points, iris) in zip(crops, model.run_many(image, crops)):
        contour = points[:16]
        if mirrored != proper:
            contour, iris = contour[CONTOUR_MIRROR], iris[IRIS_MIRROR]
        contours.append(contour)
        irises.append(iris)
    return _eye_from_model(np.mean(contours, axis=0), np.mean(irises, axis=0), eye.side)


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
