"""A node with its console, as `digimask serve` runs it; API clients signed in per role; users added by the CLI."""
from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import dicom_factory as f
import httpx
import pytest
from peers import NodeProcess, free_port, node_config, storescu, wait_port

from digimask.cli import main

PASSWORD = "correct horse battery"
ROUTE_ALL = '[[routes]]\nname = "all"\n'
ROUTE_NONE = '[[routes]]\nname = "eyecam only"\nmatch = { calling_ae = "^EYECAM01$" }\n'  # STORESCU: quarantined


@dataclass
class Console:
    """A running node with its console; ``seen`` keeps every response body, to check for PHI at the end."""

    node: NodeProcess
    url: str
    config: Path
    seen: list[str] = field(default_factory=list)

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        client = httpx.Client(base_url=self.url, headers=headers, timeout=30,
                              event_hooks={"response": [self._keep]})
        return client

    def login(self, name: str, password: str = PASSWORD) -> httpx.Client:
        client = self.client()
        r = client.post("/api/v1/login", json={"name": name, "password": password})
        assert r.status_code == 200, r.text
        return client

    def _keep(self, response: httpx.Response) -> None:
        response.read()
        if not response.headers.get("content-type", "").startswith("image/"):
            self.seen.append(response.text)

    def stop(self) -> None:
        self.node.kill(15)


def console_config(folder: Path, dest_port: int, *, database_url: str = "", routes: str = ROUTE_ALL,
                   console: str = "", retry: str = "") -> tuple[Path, int, int]:
    """node_config with a [console] table on a free port, the given routing rule and retry policy."""
    port, cport = free_port(), free_port()
    path = node_config(folder, port, {"ORTHANC": dest_port}, database_url=database_url,
                       extra=f"[console]\nport = {cport}\n{console}\n")
    text = path.read_text().replace(ROUTE_ALL, routes)
    if retry:
        text = re.sub(r"\[retry\]\n(.*\n){3}", f"[retry]\n{retry}\n", text)
    path.write_text(text)
    return path, port, cport


def add_user(config: Path, name: str, role: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
             token: bool = False) -> str | None:
    """`digimask user add` as an administrator types it; returns the API token when asked for one."""
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    args = ["user", "add", name, "--role", role, "--password-stdin", "--config", str(config)]
    assert main(args + (["--token"] if token else [])) == 0
    out = capsys.readouterr().out
    found = re.search(r"API token \(shown once\): (\S+)", out)
    return found.group(1) if found else None



def phi_of(paths: list[Path]) -> set[str]:
    return {v for p in paths for v in f.phi_values(f.read(p))}


def start(config: Path, port: int, cport: int) -> Console:
    node = NodeProcess(config, port).start()
    wait_port(cport, 30)
    return Console(node, f"http://127.0.0.1:{cport}", config)


def masked_held(image, start_console, tmp_path: Path, monkeypatch, capsys, user: str = "vera") -> tuple[Console, list[Path]]:
    """A node with the digital mask whose destination never answers (so the masked output stays held), a
    viewer ``user``, and ``image`` sent to it by DCMTK storescu as an OP instance; the console and the file sent."""
    sent = [f.save(f.op8("overlay patient", image), tmp_path / "face.dcm")]
    config, port, cport = console_config(tmp_path / "node", 9)  # nothing listens on port 9
    config.write_text(config.read_text().replace('masker = "blank"', 'masker = "digital_mask"'))
    add_user(config, user, "viewer", monkeypatch, capsys)
    console = start_console(config, port, cport)
    assert storescu(port, sent).returncode == 0
    return console, sent
