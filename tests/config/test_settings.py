"""Configuration: the example runs as it is; every error names its key."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from digimask.config.settings import ConfigError, load, parse

from digimask.cli import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "digimask.toml"


def minimal(**over):  # type: ignore[no-untyped-def]
    raw = {"node": {"allowed_calling_aes": ["CAM"]}, "deid": {"secret": "k"}}
    raw.update(over)
    return raw


def problems(raw) -> list[str]:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError) as err:
        parse(raw)
    return err.value.problems


def test_example_is_complete_and_valid() -> None:
    s = load(EXAMPLE)
    assert (s.node.ae_title, s.node.host, s.node.port) == ("DIGIMASK", "127.0.0.1", 11112)
    assert [(d.name, d.host, d.port) for d in s.destinations] == [("ORTHANC", "127.0.0.1", 4242)]
    assert s.storage.db_url.startswith("sqlite:///") and s.storage.data_dir.is_absolute()
    assert main(["check-config", str(EXAMPLE)]) == 0


@pytest.mark.parametrize("raw, expected", [
    (minimal(node={"allowed_calling_aes": ["CAM"], "port": 70000}), "node.port: Input should be less than or equal to 65535"),
    (minimal(node={"allowed_calling_aes": []}), "node.allowed_calling_aes"),
    (minimal(node={"allowed_calling_aes": ["CAM"], "ae_title": "A_TITLE_LONGER_THAN_16"}), "node.ae_title"),
    (minimal(deid={}), "deid: set secret_file (recommended) or secret"),
    (minimal(deid={"secret": "k", "options": ["retain_everything"]}), "deid.options.0"),
    (minimal(deid={"secret": "k", "options": ["retain_longitudinal_full_dates", "retain_longitudinal_modified_dates"]}),
     "choose at most one"),
    (minimal(pixels={"masker": "sunglasses"}), "pixels.masker: unknown masker 'sunglasses'"),
    (minimal(pixels={"masker": "blur", "options": {"sigma": 3}}), "pixels: options for masker 'blur': unknown option 'sigma' (known: sigma_fraction)"),
    (minimal(pixels={"masker": "digital_mask", "options": {"multiple_faces": "all"}}),
     "pixels: options for masker 'digital_mask': multiple_faces: Input should be 'largest' or 'reject'"),
    (minimal(routes=[{"name": "r", "destinations": ["NOPE"]}]), "routes.0.destinations: unknown destination 'NOPE'"),
    (minimal(routes=[{"name": "r", "destinations": ["X"], "match": {"tags": [{"tag": "NoSuchKeyword", "equals": "a"}]}}],
             destinations=[{"name": "X", "ae_title": "X", "host": "h", "port": 1}]), "unknown attribute 'NoSuchKeyword'"),
    (minimal(routes=[{"name": "r", "destinations": ["X"], "match": {"calling_ae": "("}}],
             destinations=[{"name": "X", "ae_title": "X", "host": "h", "port": 1}]), "routes.0.match.calling_ae"),
    (minimal(retyr={}), "retyr: Extra inputs are not permitted"),
])
def test_errors_name_the_key(raw, expected) -> None:
    found = problems(raw)
    assert any(expected in p for p in found), found


def test_check_config_exit_code_and_message(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[node]\nport = "eleven"\nallowed_calling_aes = ["CAM"]\n[deid]\nsecret = "k"\n')
    assert main(["check-config", str(bad)]) == 2
    assert "node.port" in capsys.readouterr().err
    (tmp_path / "broken.toml").write_text("[node\n")
    assert main(["check-config", str(tmp_path / "broken.toml")]) == 2
    assert "not valid TOML" in capsys.readouterr().err


def test_secret_file_is_created_once_and_private(tmp_path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[node]\nallowed_calling_aes = ["CAM"]\n[deid]\nsecret_file = "keys/secret.key"\n')
    key = load(cfg).deid.key()
    path = tmp_path / "keys" / "secret.key"
    assert len(key) == 64 and path.stat().st_mode & 0o077 == 0
    assert load(cfg).deid.key() == key


def test_check_config_imports_no_model_or_renderer():
    """check-config validates masker names and options from the schema: no torch, MediaPipe or GL."""
    code = ("import sys; from digimask.cli import main; rc = main(['check-config', 'examples/digimask.toml']); "
            "heavy = sorted(m for m in ('torch', 'mediapipe', 'moderngl', 'pyrender', 'cv2') if m in sys.modules); "
            "print(rc, heavy)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[-2] == "0 []", out.stdout + out.stderr
