"""Real DICOM peers for the tests: DCMTK (the modality), Orthanc (the PACS), dciodvfy, the node itself.

Every server binds or is addressed on 127.0.0.1 only. Orthanc 1.10 cannot choose its address, so it
runs with RemoteAccessAllowed false and only ever receives traffic on 127.0.0.1.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable
from pathlib import Path

import pytest

PEER_ENV = {**os.environ, "TCP_NODELAY": "1"}


def require(*tools: str) -> None:
    """Fail in CI, skip loudly elsewhere, when a peer that scripts/setup installs is missing."""
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        msg = f"missing DICOM peer(s) {missing}: run scripts/setup (installs dcmtk, orthanc, dicom3tools)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def wait_for(predicate, timeout: float, what: str, interval: float = 0.25):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


class Orthanc:
    """A real Orthanc PACS in a temporary folder; survives stop()/start() with its data."""

    def __init__(self, folder: Path, aet: str = "ORTHANC") -> None:
        self.folder, self.aet = folder, aet
        self.dicom_port, self.http_port = free_port(), free_port()
        self.proc: subprocess.Popen | None = None
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "orthanc.json").write_text(json.dumps({
            "Name": "digimask-test", "StorageDirectory": str(folder / "db"), "IndexDirectory": str(folder / "db"),
            "HttpPort": self.http_port, "DicomPort": self.dicom_port, "DicomAet": aet,
            "RemoteAccessAllowed": False, "AuthenticationEnabled": False, "DicomModalities": {},
            "DicomAlwaysAllowStore": True, "DicomCheckCalledAet": False, "Plugins": [],
        }))

    def start(self) -> "Orthanc":
        log = open(self.folder / "orthanc.log", "ab")
        self.proc = subprocess.Popen(["Orthanc", str(self.folder / "orthanc.json")], stdout=log, stderr=log, env=PEER_ENV)
        wait_for(self._up, 30, "Orthanc REST API")
        wait_port(self.dicom_port)
        return self

    def _up(self) -> bool:
        try:
            self.get("/system")
            return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
            self.proc = None

    def get(self, path: str) -> object:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=10) as r:
            data = r.read()
        return json.loads(data) if path.split("?")[0].rsplit("/", 1)[-1] != "file" else data

    def instances(self) -> list[str]:
        return list(self.get("/instances"))  # type: ignore[arg-type]

    def file(self, orthanc_id: str) -> bytes:
        return self.get(f"/instances/{orthanc_id}/file")  # type: ignore[return-value]


def node_config(folder: Path, port: int, destinations: dict[str, int], *, masker: str = "blank",
                database_url: str = "", node_id: str = "", extra: str = "") -> Path:
    """Write a node configuration forwarding everything to each ``{AE: port}`` on 127.0.0.1."""
    dest = "".join(
        f'[[destinations]]\nname = "{ae}"\nae_title = "{ae}"\nhost = "127.0.0.1"\nport = {p}\n\n'
        for ae, p in destinations.items()
    )
    text = f"""
[node]
ae_title = "DIGIMASK"
host = "127.0.0.1"
port = {port}
allowed_calling_aes = ["STORESCU", "ECHOSCU"]
node_id = "{node_id or f'test-{port}'}"
[storage]
data_dir = "data"
database_url = "{database_url}"
[deid]
secret_file = "secret.key"
options = ["retain_longitudinal_modified_dates", "retain_patient_characteristics"]
[pixels]
masker = "{masker}"
[pipeline]
poll_interval_s = 0.1
lease_s = 30
[retry]
initial_delay_s = 0.5
max_delay_s = 2
max_age_s = 600
{extra}
{dest}
[[routes]]
name = "all"
destinations = {json.dumps(list(destinations))}
"""
    if "[console]" not in extra:  # the console's default port is one per machine: test nodes go without
        text += "\n[console]\nenabled = false\n"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "digimask.toml"
    path.write_text(text)
    return path


class NodeProcess:
    """``digimask serve`` as a real process, as an administrator runs it."""

    def __init__(self, config: Path, port: int) -> None:
        self.config, self.port = config, port
        self.proc: subprocess.Popen | None = None

    def start(self) -> "NodeProcess":
        log = open(self.config.parent / "node.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "digimask", "serve", "--config", str(self.config)],
                                     stdout=log, stderr=log)
        wait_port(self.port, 60)
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=60)
        self.proc = None

    def log(self) -> str:
        return (self.config.parent / "node.log").read_text(errors="replace")


def storescu(port: int, files: Iterable[Path], aet: str = "STORESCU", extra: Iterable[str] = ()) -> subprocess.CompletedProcess:
    """Send files as a modality does; ``-xy`` proposes JPEG Baseline as well as uncompressed."""
    cmd = ["/usr/bin/storescu", "-xy", "-aet", aet, "-aec", "DIGIMASK", *extra, "127.0.0.1", str(port), *map(str, files)]
    return subprocess.run(cmd, capture_output=True, text=True, env=PEER_ENV, timeout=300)


def dciodvfy_errors(path: Path) -> list[str]:
    r = subprocess.run(["dciodvfy", "-new", str(path)], capture_output=True, text=True, errors="replace", timeout=60)
    return [line for line in (r.stdout + r.stderr).splitlines() if line.startswith("Error")]
