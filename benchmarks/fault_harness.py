#!/usr/bin/env python3
"""Fault harness: the node under crashes, a PACS outage, fuzzed inputs and many associations, against
real DCMTK storescu, pynetdicom (raw sends) and Orthanc on 127.0.0.1. Prints the figures.

1. SIGKILL of the node at random moments during N stores (the modality re-sends what was not
   acknowledged): lost = acknowledged instances that never reach the PACS (target 0).
2. The PACS down for a while with instances queued: seconds from its return until all are delivered
   (target < 60 s).
3. Fuzzed inputs from this file's mutator (byte flips, truncation, deleted or lied-about attributes,
   PHI planted in unknown, retired, nested and private tags): every input gets a clear status or is
   quarantined with a reason, the node stays up, and of what reaches the PACS none holds original
   pixels or a planted PHI string, and each is dciodvfy-clean.
4. Concurrent associations (storescu processes at once): all arrive.
5. Held-out inputs: pydicom's test files as they are and relabelled Secondary Capture: clear statuses,
   and what is forwarded holds none of their identifying values or pixels and is dciodvfy-clean.

Usage: .venv/bin/python benchmarks/fault_harness.py [--full]   (default: a small run; the test suite runs
``SMALL`` through tests/soak/test_fault_harness.py; ``--full`` is 1,000 stores, a 10-minute outage,
10,000 fuzzed inputs, 50 associations).
"""
from __future__ import annotations

import argparse
import io
import json
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import dicom_factory as f  # noqa: E402
from digimask.config.settings import load  # noqa: E402
from digimask.pipeline.deid.pseudonym import Pseudonymizer  # noqa: E402
from digimask.storage.models import Send  # noqa: E402
from digimask.storage.store import open_store  # noqa: E402
from peers import PEER_ENV, NodeProcess, Orthanc, free_port, node_config, wait_for  # noqa: E402

CLEAR = {0x0000, 0x0122, 0xA900, 0xC210}  # Success, SOP class not supported, does not match, cannot understand
PLANTED = "ZZPHI"  # every planted value starts with this (and a serial), so a leak is found by substring


@dataclass(frozen=True)
class Sizes:
    stores: int = 1000
    kills: int = 6
    outage_s: float = 600
    queued_in_outage: int = 50
    fuzz: int = 10_000
    associations: int = 50
    per_association: int = 10


SMALL = Sizes(stores=40, kills=2, outage_s=3, queued_in_outage=5, fuzz=40, associations=6, per_association=2)


@dataclass
class Figures:
    stores: int = 0
    kills: int = 0
    acknowledged: int = 0
    lost: int = 0
    outage_s: float = 0
    delivered_after_return_s: float = 0
    fuzzed: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    unclear: int = 0  # no status, or a status outside CLEAR (e.g. 0xA700 for the node's own trouble)
    node_down: int = 0
    accepted: int = 0
    forwarded: int = 0
    quarantined: int = 0
    original_pixels_forwarded: int = 0
    planted_phi_forwarded: int = 0
    dciodvfy_failures: int = 0
    associations: int = 0
    concurrent_sent: int = 0
    concurrent_arrived: int = 0
    held_out: int = 0  # pydicom's own test files, as they are and relabelled Secondary Capture
    held_out_statuses: dict[str, int] = field(default_factory=dict)
    held_out_unclear: int = 0
    held_out_forwarded: int = 0
    held_out_phi_forwarded: int = 0
    held_out_original_pixels: int = 0
    held_out_dciodvfy_failures: int = 0


# -- the mutator -------------------------------------------------------------------------------------
_HOSTILE = [(0x0008C830, "LO"), (0x00A00050, "LO"), (0x0010B030, "LO"), (0x00202410, "SH"), (0x00080042, "CS"),
            (0x00181030, "LO"), (0x00204000, "LT"), (0x00321060, "LO"), (0x00400275, "SQ")]
_DELETABLE = ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "Modality", "Rows", "PixelData",
              "PatientID", "StudyDate", "ImageType", "SamplesPerPixel", "PhotometricInterpretation", "BitsAllocated"]


def mutate(seed: Dataset, serial: int, rng: random.Random) -> tuple[bytes, list[str]]:
    """One hostile instance from ``seed``: (file bytes, the PHI strings planted in it)."""
    ds = pydicom.dcmread(io.BytesIO(_encode(seed)))
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    planted: list[str] = []

    def phi() -> str:
        planted.append(f"{PLANTED}{serial:05d}{len(planted)}")
        return planted[-1]

    ds.PatientName = phi() + "^" + phi()
    ds.PatientID, ds.AccessionNumber = phi(), phi()
    for _ in range(rng.randint(1, 4)):
        tag, vr = rng.choice(_HOSTILE)
        if vr == "SQ":
            item = Dataset()
            item.add_new(0x00100010, "PN", phi())  # a name inside a sequence
            item.add_new(0x0008C830, "LO", phi())
            ds.add_new(tag, vr, Sequence([item]))
        else:
            ds.add_new(tag, vr, phi()[:16] if vr in ("SH", "CS") else phi())
    if rng.random() < 0.3:
        blk = ds.private_block(0x0031 + 2 * rng.randint(0, 8), f"VENDOR {serial}", create=True)
        blk.add_new(0x01, "LO", phi())
    if rng.random() < 0.3:
        ds.AnatomicRegionSequence[0].add_new(0x00080070, "LO", phi())  # defined, but not in that sequence
    for kw in rng.sample(_DELETABLE, rng.choice([0, 0, 1, 1, 2])):
        ds.pop(kw, None)
    if rng.random() < 0.15 and "Rows" in ds:
        ds.Rows = int(ds.Rows) * rng.choice([2, 3])  # the header lies about the pixel data
    data = bytearray(_encode(ds))
    meta_end = 132 + 12 + int.from_bytes(data[140:144], "little")  # preamble, DICM, group length element
    roll = rng.random()
    if roll < 0.2:
        for _ in range(rng.randint(1, 8)):  # bit flips anywhere in the data set
            i = rng.randrange(meta_end, len(data))
            data[i] ^= 1 << rng.randrange(8)
    elif roll < 0.3:
        data = data[: rng.randrange(meta_end + 8, len(data))]  # truncated
    return bytes(data), planted


def dciodvfy_errors(path: Path) -> list[str]:
    """dciodvfy's Error lines; its output quotes values, which need not be UTF-8 (ISO_IR 100 text)."""
    r = subprocess.run(["dciodvfy", "-new", str(path)], capture_output=True, timeout=60)
    return [line for line in (r.stdout + r.stderr).decode("latin-1").splitlines() if line.startswith("Error")]


def _encode(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def send_raw(port: int, paths: list[Path]) -> list[int | None]:
    """C-STORE each file's bytes as they are (pynetdicom chunked send), re-associating after an abort;
    None: no status came back."""
    from pynetdicom import AE, _config
    from pynetdicom.presentation import build_context

    from digimask.scp_node.contexts import ACCEPTED_TRANSFER_SYNTAXES
    from digimask.pipeline.dicom.sop import SUPPORTED_SOP_CLASSES

    _config.STORE_SEND_CHUNKED_DATASET = True
    ae = AE(ae_title="STORESCU")
    # one context per (class, syntax): the acceptor picks one syntax per context, and each file has its own
    ae.requested_contexts = [build_context(uid, ts) for uid in SUPPORTED_SOP_CLASSES for ts in ACCEPTED_TRANSFER_SYNTAXES[:3]]
    statuses: list[int | None] = []
    assoc = None
    try:
        for path in paths:
            if assoc is None or not assoc.is_established:
                assoc = ae.associate("127.0.0.1", port, ae_title="DIGIMASK")
            try:
                rsp = assoc.send_c_store(path)
                statuses.append(int(rsp.Status) if rsp and "Status" in rsp else None)
            except Exception:  # a file whose meta pynetdicom cannot read: never sent
                statuses.append(-1)
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = False
        if assoc is not None and assoc.is_established:
            assoc.release()
    return statuses


# -- the scenarios -----------------------------------------------------------------------------------
class Harness:
    def __init__(self, root: Path, sizes: Sizes, seed: int = 0) -> None:
        self.root, self.sizes, self.rng = root, sizes, random.Random(seed)
        self.figures = Figures()
        self.orthanc = Orthanc(root / "orthanc").start()
        self.port = free_port()
        config = node_config(root / "node", self.port, {"ORTHANC": self.orthanc.dicom_port})
        config.write_text(config.read_text().replace("initial_delay_s = 0.5", "initial_delay_s = 60\nprobe_interval_s = 2")
                          .replace("max_delay_s = 2", "max_delay_s = 600"))
        self.node = NodeProcess(config, self.port).start()
        self.store = open_store(load(config))
        self.pseudo = Pseudonymizer(load(config).deid.key())
        rng = np.random.default_rng(seed)
        self.pixels = rng.integers(0, 255, (48, 64, 3), np.uint8)

    def close(self) -> None:
        self.node.kill(signal.SIGTERM)
        self.orthanc.stop()

    def arrived(self) -> set[str]:
        """SOP Instance UIDs Orthanc holds (one REST call)."""
        return {i["MainDicomTags"]["SOPInstanceUID"] for i in self.orthanc.get("/instances?expand")}  # type: ignore[union-attr]

    def sigkill_during_stores(self) -> None:
        s, fig = self.sizes, self.figures
        files = [f.save(f.op8(f"kill-{i}", self.pixels, i), self.root / f"kill-{i}.dcm") for i in range(s.stores)]
        # kill once the node has recorded a random number of instances, so every kill lands mid-stream
        thresholds = sorted(self.rng.sample(range(1, s.stores), s.kills))
        remaining, kills = list(files), 0
        while remaining:
            log = (self.root / "storescu.log").open("w+")  # a file, not a pipe: -v output would fill a pipe and block
            sender = subprocess.Popen(["/usr/bin/storescu", "-v", "-aet", "STORESCU", "-aec", "DIGIMASK", "127.0.0.1", str(self.port),
                                       *map(str, remaining)], stdout=log, stderr=subprocess.STDOUT, env=PEER_ENV)
            if kills < len(thresholds):
                try:
                    wait_for(lambda: sum(self.store.counts().values()) >= thresholds[kills], 120, "a kill threshold", 0.005)
                except TimeoutError:
                    pass
                self.node.kill(signal.SIGKILL)
                kills += 1
            sender.wait(timeout=600)
            log.seek(0)
            acked = log.read().count("Received Store Response (Success)")
            log.close()
            remaining = remaining[acked:]
            if self.node.proc is None:
                self.node.start()
        fig.stores, fig.kills, fig.acknowledged = len(files), kills, len(files)
        want = {self.pseudo.derived_uid(str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID)) for p in files}
        try:
            wait_for(lambda: want <= self.arrived(), 120 + len(files) / 5, "every acknowledged instance in Orthanc", 1)
        except TimeoutError:
            pass
        fig.lost = len(want - self.arrived())

    def pacs_outage(self) -> None:
        s, fig = self.sizes, self.figures
        self.orthanc.stop()
        files = [f.save(f.op8(f"outage-{i}", self.pixels, i), self.root / f"outage-{i}.dcm") for i in range(s.queued_in_outage)]
        subprocess.run(["/usr/bin/storescu", "-aet", "STORESCU", "-aec", "DIGIMASK", "127.0.0.1", str(self.port), *map(str, files)],
                       check=True, capture_output=True, env=PEER_ENV)
        time.sleep(s.outage_s)
        self.orthanc.start()
        back = time.monotonic()
        want = {self.pseudo.derived_uid(str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID)) for p in files}
        try:
            wait_for(lambda: want <= self.arrived(), 600, "the backlog delivered", 0.5)
        except TimeoutError:
            pass
        fig.outage_s, fig.delivered_after_return_s = s.outage_s, round(time.monotonic() - back, 1)

    def _forwarded_since(self, before: set[str]):  # type: ignore[no-untyped-def]
        """(Orthanc ID, bytes, dataset) of every instance Orthanc holds that was not there ``before`` (SOP
        Instance UIDs)."""
        for oid in self.orthanc.instances():
            raw = self.orthanc.file(oid)
            ds = pydicom.dcmread(io.BytesIO(raw))
            if str(ds.SOPInstanceUID) not in before:
                yield oid, raw, ds

    def fuzz(self) -> None:
        s, fig = self.sizes, self.figures
        seeds = [f.op8("fuzz-seed", self.pixels), f.vl("fuzz-seed-vl", self.pixels)]
        folder = self.root / "fuzz"
        folder.mkdir()
        before = self.arrived()
        self.before_fuzz = before
        planted: list[str] = []
        statuses: list[int | None] = []
        batch = 200
        for start in range(0, s.fuzz, batch):
            paths = []
            for serial in range(start, min(start + batch, s.fuzz)):
                data, phi = mutate(seeds[serial % 2], serial, self.rng)
                planted += phi
                paths.append(folder / f"{serial}.dcm")
                paths[-1].write_bytes(data)
            statuses += send_raw(self.port, paths)
            echo = subprocess.run(["/usr/bin/echoscu", "-aet", "ECHOSCU", "-aec", "DIGIMASK", "127.0.0.1", str(self.port)],
                                  capture_output=True, env=PEER_ENV)
            fig.node_down += echo.returncode != 0
        fig.fuzzed = len(statuses)
        fig.statuses = {("none" if c is None else "unsendable" if c < 0 else f"0x{c:04X}"): n for c, n in Counter(statuses).items()}
        fig.unclear = sum(1 for c in statuses if c is None or (c >= 0 and c not in CLEAR))
        fig.accepted = statuses.count(0)
        wait_for(lambda: self.store.counts().get("received", 0) + self.store.counts().get("processing", 0) == 0,
                 600 + s.fuzz / 10, "the pipeline to settle", 1)
        try:  # a delivery the PACS refuses for every instance stays pending (retried): do not wait for it long
            wait_for(lambda: not self.store.deliveries(Send.PENDING, 1) and not self.store.deliveries(Send.SENDING, 1),
                     120 + s.fuzz / 20, "deliveries settled", 1)
        except TimeoutError:
            pass
        fig.quarantined = self.store.counts().get("quarantined", 0)
        originals = [np.asarray(seed.pixel_array) for seed in seeds]
        leak_re = PLANTED.encode()
        out_dir = self.root / "forwarded"
        out_dir.mkdir()
        for oid, raw, ds in self._forwarded_since(before):
            fig.forwarded += 1
            fig.planted_phi_forwarded += leak_re in raw
            try:
                pixels = ds.pixel_array
            except Exception:
                pixels = None
            fig.original_pixels_forwarded += any(pixels is not None and pixels.shape == o.shape and np.array_equal(pixels, o)
                                                 for o in originals)
            target = out_dir / f"{oid}.dcm"
            target.write_bytes(raw)
            fig.dciodvfy_failures += bool(dciodvfy_errors(target))

    def concurrent(self) -> None:
        s, fig = self.sizes, self.figures
        before = len(self.orthanc.instances())
        groups = [[f.save(f.op8(f"conc-{a}-{i}", self.pixels, i), self.root / f"conc-{a}-{i}.dcm")
                   for i in range(s.per_association)] for a in range(s.associations)]
        codes: list[int] = []

        def one(files: list[Path]) -> None:
            r = subprocess.run(["/usr/bin/storescu", "-aet", "STORESCU", "-aec", "DIGIMASK", "127.0.0.1", str(self.port),
                                *map(str, files)], capture_output=True, env=PEER_ENV, timeout=600)
            codes.append(r.returncode)

        threads = [threading.Thread(target=one, args=(g,)) for g in groups]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        n = s.associations * s.per_association
        fig.associations, fig.concurrent_sent = s.associations, n if all(c == 0 for c in codes) else codes.count(0) * s.per_association
        try:
            wait_for(lambda: len(self.orthanc.instances()) >= before + n, 300, "the concurrent instances", 0.5)
        except TimeoutError:
            pass
        fig.concurrent_arrived = len(self.orthanc.instances()) - before


    def held_out(self) -> None:
        """Inputs the mutator never saw: pydicom's test files (most of other SOP classes: refused), and the
        same headers relabelled Secondary Capture so that the de-identifier and encoder meet them."""
        import pydicom.data

        fig = self.figures
        folder = self.root / "held_out"
        folder.mkdir()
        sources = sorted(p for p in (Path(pydicom.data.__file__).parent / "test_files").rglob("*") if p.is_file())
        paths, phi, pixels = [], set(), []
        for i, src in enumerate(sources):
            paths.append(src)
            try:
                ds = pydicom.dcmread(src, force=True)
                for kw in ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber", "InstitutionName",
                           "ReferringPhysicianName", "OperatorsName", "StudyInstanceUID", "SOPInstanceUID"):
                    value = str(ds.get(kw, "") or "")
                    if len(value) >= 6:
                        phi.add(value)
                try:
                    pixels.append(np.asarray(ds.pixel_array))
                except Exception:
                    pass
                ds.SOPClassUID = f.SC
                ds.file_meta.MediaStorageSOPClassUID = f.SC
                ds.file_meta.MediaStorageSOPInstanceUID = ds.get("SOPInstanceUID") or pydicom.uid.generate_uid()
                if "TransferSyntaxUID" not in ds.file_meta:
                    ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian if ds.original_encoding[0] \
                        else pydicom.uid.ExplicitVRLittleEndian
                relabelled = folder / f"{i}.dcm"
                ds.save_as(relabelled, enforce_file_format=True)
                paths.append(relabelled)
            except Exception:  # a file pydicom itself cannot rewrite: sent only as it is
                pass
        before = self.arrived()
        statuses = send_raw(self.port, paths)
        fig.held_out = len(statuses)
        fig.held_out_statuses = {("none" if c is None else "unsendable" if c < 0 else f"0x{c:04X}"): n
                                 for c, n in Counter(statuses).items()}
        fig.held_out_unclear = sum(1 for c in statuses if c is None or (c >= 0 and c not in CLEAR))
        wait_for(lambda: self.store.counts().get("received", 0) + self.store.counts().get("processing", 0) == 0,
                 600, "the pipeline to settle", 1)
        time.sleep(5)  # the last deliveries
        out_dir = self.root / "held_out_forwarded"
        out_dir.mkdir()
        for oid, raw, ds in self._forwarded_since(before):
            fig.held_out_forwarded += 1
            text = "\n".join(str(e.value) for e in ds.iterall() if e.VR not in ("OB", "OW", "SQ", "UN"))
            fig.held_out_phi_forwarded += any(v in text for v in phi)
            try:
                out = ds.pixel_array
                fig.held_out_original_pixels += any(o.shape == out.shape and np.array_equal(o, out) and o.std() > 0
                                                    for o in pixels)
            except Exception:
                pass
            target = out_dir / f"{oid}.dcm"
            target.write_bytes(raw)
            fig.held_out_dciodvfy_failures += bool(dciodvfy_errors(target))


@dataclass
class PipelineFuzz:
    fuzzed: int = 0
    refused_at_intake: int = 0
    quarantined: int = 0
    outputs: int = 0
    dciodvfy_failures: int = 0
    planted_phi: int = 0
    errors: dict[str, int] = field(default_factory=dict)  # dciodvfy's Error lines, values cut off
    reasons: dict[str, int] = field(default_factory=dict)  # quarantine reasons of the output check


def fuzz_pipeline(n: int, root: Path, seed: int = 0, keep: Path | None = None) -> PipelineFuzz:
    """The mutator's inputs straight through the node's stages, no network: the intake check, the pipeline
    (blank masker), the output check before queueing; every output that would be queued goes to dciodvfy
    (``keep``: a folder for the outputs it fails)."""
    from digimask.pipeline.dicom.validate import check_received, complete_output
    from digimask.pipeline.errors import Quarantined
    from digimask.pipeline.process import Processor

    rng, out = random.Random(seed), PipelineFuzz()
    pixels = np.random.default_rng(seed).integers(0, 255, (48, 64, 3), np.uint8)
    seeds = [f.op8("fuzz-seed", pixels), f.vl("fuzz-seed-vl", pixels)]
    processor = Processor(load(node_config(root / "node", free_port(), {"ORTHANC": 1})))
    errors: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    for serial in range(n):
        data, _ = mutate(seeds[serial % 2], serial, rng)
        path = root / "fuzz.dcm"
        path.write_bytes(data)
        out.fuzzed += 1
        try:
            head = pydicom.dcmread(path, force=True, stop_before_pixels=True)
            request = str(head.file_meta.MediaStorageSOPClassUID), str(head.file_meta.MediaStorageSOPInstanceUID)
        except Exception:
            out.refused_at_intake += 1
            continue
        if check_received(path, *request) is not None:
            out.refused_at_intake += 1
            continue
        try:
            done = processor.process(pydicom.dcmread(path, force=True))
            complete_output(done.dataset)
        except Quarantined as exc:
            out.quarantined += 1
            if exc.reason.startswith("output"):
                reasons[exc.reason[:120]] += 1
            continue
        target = root / "output.dcm"
        done.dataset.save_as(target, enforce_file_format=True)
        out.outputs += 1
        out.planted_phi += PLANTED.encode() in target.read_bytes()
        found = dciodvfy_errors(target)
        out.dciodvfy_failures += bool(found)
        errors.update(re.sub(r'"[^"]*"', '"."', line)[:160] for line in found)  # values cut: they are fuzzed
        if found and keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            target.rename(keep / f"{serial}.dcm")
    out.errors, out.reasons = dict(errors.most_common()), dict(reasons.most_common())
    return out


def run(sizes: Sizes, root: Path) -> Figures:
    h = Harness(root, sizes)
    try:
        h.sigkill_during_stores()
        h.pacs_outage()
        h.concurrent()
        h.fuzz()
        h.held_out()
    finally:
        h.close()
    return h.figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="the issue's sizes (long: a 10-minute outage)")
    parser.add_argument("--pipeline-fuzz", type=int, metavar="N",
                        help="only N fuzzed inputs through the stages in this process (no network), with dciodvfy")
    parser.add_argument("--keep", type=Path, help="with --pipeline-fuzz: a folder for the outputs dciodvfy fails")
    args = parser.parse_args()
    if args.pipeline_fuzz:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(asdict(fuzz_pipeline(args.pipeline_fuzz, Path(tmp), keep=args.keep)), indent=1))
        return
    sizes = Sizes() if args.full else SMALL
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        figures = run(sizes, Path(tmp))
    print(json.dumps({"sizes": asdict(sizes), "figures": asdict(figures), "wall_s": round(time.monotonic() - start)}, indent=1))


if __name__ == "__main__":
    main()
