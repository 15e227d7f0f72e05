"""The console's REST API against a running node (real SQLite and PostgreSQL), DCMTK storescu as the
modality and Orthanc as the PACS: every role boundary, the operations, the metrics, no PHI anywhere."""
from __future__ import annotations

import io
import ssl
import subprocess
import sys
import time

import dicom_factory as f
import numpy as np
import pytest
from console.support import PASSWORD, ROUTE_NONE, add_user, console_config, phi_of
from databases import database
from peers import Orthanc, storescu, wait_for
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.peers

READS = ["/api/v1/status", "/api/v1/instances", "/api/v1/instances/1", "/api/v1/deliveries", "/api/v1/quarantine",
         "/api/v1/config", "/api/v1/whoami", "/api/v1/lookup", "/api/v1/lookup/DM-1", "/api/v1/instances/1/masked.png",
         "/api/v1/instances/1/original.png", "/api/v1/instances/1/geometry", "/openapi.json", "/metrics"]
WRITES = ["/api/v1/deliveries/retry", "/api/v1/quarantine/1/release", "/api/v1/quarantine/1/delete",
          "/api/v1/check-config", "/api/v1/lookup/import", "/api/v1/lookup/export", "/api/v1/logout"]


def metrics(client) -> dict[tuple[str, tuple], float]:  # type: ignore[no-untyped-def]
    r = client.get("/metrics")
    assert r.status_code == 200
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(r.text) for s in fam.samples}


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_roles_quarantine_release_delete_and_metrics(kind, small_face, start_console, tmp_path, monkeypatch, capsys) -> None:
    files = [f.save(f.op8("console a", small_face, 1), tmp_path / "a.dcm"),
             f.save(f.op8("console b", small_face, 2), tmp_path / "b.dcm")]
    orthanc = Orthanc(tmp_path / "orthanc").start()
    try:
        with database(kind, tmp_path) as url:
            config, port, cport = console_config(tmp_path / "node", orthanc.dicom_port, database_url=url, routes=ROUTE_NONE)
            add_user(config, "vera", "viewer", monkeypatch, capsys)
            add_user(config, "otto", "operator", monkeypatch, capsys)
            token = add_user(config, "pia", "privacy", monkeypatch, capsys, token=True)
            console = start_console(config, port, cport)

            anon = console.client()
            for path in READS:
                assert anon.get(path).status_code == 401, path
            for path in WRITES:
                assert anon.post(path).status_code == 401, path
            assert anon.get("/api/v1/status", headers={"Authorization": "Bearer dmk_forged"}).status_code == 401
            login_page = anon.get("/")
            assert login_page.status_code == 200 and 'name="password"' in login_page.text

            assert storescu(port, files).returncode == 0
            viewer, operator, privacy = console.login("vera"), console.login("otto"), console.client(token)
            quarantined = wait_for(lambda: len(q := viewer.get("/api/v1/quarantine").json()) == 2 and q, 90, "2 quarantined")
            assert {q["reason"] for q in quarantined} == {"no routing rule matched"}
            a, b = sorted(q["id"] for q in quarantined)

            # the viewer reads, but cannot act or see an original
            assert viewer.post(f"/api/v1/quarantine/{a}/release").status_code == 403
            assert viewer.post(f"/api/v1/quarantine/{a}/delete", json={"reason": "duplicate"}).status_code == 403
            assert viewer.post("/api/v1/deliveries/retry", json={}).status_code == 403
            assert viewer.get(f"/api/v1/instances/{a}/original.png").status_code == 403
            assert viewer.get("/api/v1/lookup/DM-1").status_code == 403
            assert operator.get(f"/api/v1/instances/{a}/original.png").status_code == 403
            assert viewer.get(f"/api/v1/instances/{a}/masked.png").status_code == 404  # never masked
            history = viewer.get(f"/api/v1/instances/{a}").json()
            assert [e["state"] for e in history["events"]] == ["received", "quarantined"]
            assert history["instance"]["original_retained"] and history["instance"]["pseudo_patient_id"] is None

            # the privacy role sees the original, and the view is in the audit trail
            png = privacy.get(f"/api/v1/instances/{a}/original.png")
            assert png.status_code == 200 and png.headers["content-type"] == "image/png"
            assert np.array_equal(np.asarray(Image.open(io.BytesIO(png.content)).convert("RGB")), small_face)
            views = [e for e in viewer.get(f"/api/v1/instances/{a}").json()["console"] if e["action"] == "view original"]
            assert [v["user"] for v in views] == ["pia"]

            # delete needs a reason; then the original is gone and it cannot be released
            assert operator.post(f"/api/v1/quarantine/{b}/delete", json={"reason": ""}).status_code == 422
            assert operator.post(f"/api/v1/quarantine/{b}/delete", json={"reason": "sent twice"}).status_code == 200
            assert not list((tmp_path / "node" / "data" / "quarantine").glob("*"))[1:]  # only a's original left
            assert operator.post(f"/api/v1/quarantine/{b}/release").status_code == 409
            hist_b = viewer.get(f"/api/v1/instances/{b}").json()
            assert hist_b["events"][-1]["state"] == "deleted" and "sent twice" in hist_b["events"][-1]["detail"]
            assert not hist_b["instance"]["original_retained"]

            # the configuration fixed (route everything), the node restarted: release -> delivered to Orthanc
            console.stop()
            config.write_text(config.read_text().replace(ROUTE_NONE, '[[routes]]\nname = "all"\n'))
            console = start_console(config, port, cport)
            operator, viewer = console.login("otto"), console.login("vera")
            assert operator.post(f"/api/v1/quarantine/{a}/release").status_code == 200
            wait_for(lambda: len(orthanc.instances()) == 1, 60, "the released instance in Orthanc")
            wait_for(lambda: viewer.get(f"/api/v1/instances/{a}").json()["instance"]["state"] == "done", 30, "done")
            assert [e["state"] for e in viewer.get(f"/api/v1/instances/{a}").json()["events"]] == [
                "received", "quarantined", "released", "deidentified+masked", "queued", "forwarded", "done"]
            done = viewer.get("/api/v1/instances", params={"state": "done", "destination": "ORTHANC"}).json()
            assert [i["id"] for i in done] == [a] and done[0]["pseudo_patient_id"].startswith("DM-")
            assert not done[0]["original_retained"]  # keep_originals_days = 0: gone once delivered ...
            assert privacy.get(f"/api/v1/instances/{a}/original.png").status_code == 404  # ... so no preview
            assert viewer.get("/api/v1/instances", params={"destination": "NOWHERE"}).json() == []
            assert viewer.get("/api/v1/instances", params={"since": "2099-01-01T00:00:00Z"}).json() == []
            assert viewer.get("/api/v1/instances", params={"until": "2000-01-01T00:00:00+02:00"}).json() == []
            assert len(viewer.get("/api/v1/instances", params={"since": "2000-01-01T00:00:00Z"}).json()) == 2
            assert operator.post("/api/v1/deliveries/retry", json={"destination": "NOWHERE"}).status_code == 404

            m = metrics(viewer)
            assert m[("digimask_instances", (("state", "done"),))] == 1
            assert m[("digimask_instances", (("state", "quarantined"),))] == 1
            assert m[("digimask_deliveries", (("destination", "ORTHANC"), ("state", "done")))] == 1
            assert m[("digimask_quarantined", (("reason", "no routing rule matched"),))] == 1
            assert m[("digimask_processing_seconds_count", ())] == 1
            masked_event = next(e for e in viewer.get(f"/api/v1/instances/{a}").json()["events"] if e["state"] == "deidentified+masked")
            worker_s = float(masked_event["detail"].split("seconds=")[1].split(";")[0])
            assert m[("digimask_masking_seconds_count", ())] == 1 and m[("digimask_masking_seconds_sum", ())] == pytest.approx(worker_s)
            assert 0 < worker_s <= m[("digimask_processing_seconds_sum", ())]  # the worker's part of receipt-to-mask
            status = viewer.get("/api/v1/status").json()
            assert status["instances"] == {"done": 1, "quarantined": 1} and status["deliveries"] == {"ORTHANC": {"done": 1}}
            assert status["rates_per_minute"]["5m"]["received"] == pytest.approx(2 / 5)

            for page in ["/", "/queues", "/queues?state=done&destination=ORTHANC", "/quarantine", f"/instances/{a}",
                         f"/instances/{b}", "/audit", "/config"]:  # every page a viewer sees, grepped below
                assert viewer.get(page).status_code == 200, page
            assert viewer.get("/lookup").status_code == 403 and viewer.get(f"/instances/{a}/original").status_code == 403
            schema = viewer.get("/openapi.json").json()
            assert {"/api/v1/status", "/api/v1/instances", "/api/v1/quarantine/{iid}/release"} <= set(schema["paths"])
            console.stop()
            text = "\n".join(console.seen) + console.node.log()
            for value in phi_of(files):
                assert value not in text, f"{value!r} reached the console or the log"
    finally:
        orthanc.stop()


def test_config_hidden_secrets_and_check_config(start_console, tmp_path, monkeypatch, capsys) -> None:
    config, port, cport = console_config(tmp_path / "node", 9, console='host = "127.0.0.1"')
    config.write_text(config.read_text().replace('secret_file = "secret.key"', 'secret = "s3cr3t-hmac-key"')
                      .replace('database_url = ""', 'database_url = ""\n# no password here'))
    add_user(config, "vera", "viewer", monkeypatch, capsys)
    console = start_console(config, port, cport)
    viewer = console.login("vera")
    cfg = viewer.get("/api/v1/config")
    assert cfg.status_code == 200 and "s3cr3t-hmac-key" not in cfg.text
    assert cfg.json()["deid"]["secret"] == "(hidden)" and cfg.json()["console"]["port"] == cport
    good = viewer.post("/api/v1/check-config", files={"file": ("ok.toml", config.read_bytes())}).json()
    assert good["valid"] and good["summary"].startswith("AE DIGIMASK")
    bad_text = config.read_text().replace('masker = "blank"', 'masker = "smudge"')
    bad = viewer.post("/api/v1/check-config", files={"file": ("bad.toml", bad_text.encode())}).json()
    cli = subprocess.run([sys.executable, "-m", "digimask", "check-config", "/dev/stdin"], input=bad_text,
                         capture_output=True, text=True, check=False)
    assert not bad["valid"] and cli.returncode == 2
    assert bad["problems"] == [line.strip() for line in cli.stderr.splitlines()[1:]]  # the CLI's own messages


def test_failed_logins_are_limited_and_audited_and_sessions_expire(start_console, tmp_path, monkeypatch, capsys) -> None:
    config, port, cport = console_config(tmp_path / "node", 9, console="login_max_failures = 3\nsession_lifetime_s = 3")
    add_user(config, "otto", "operator", monkeypatch, capsys)
    console = start_console(config, port, cport)
    anon = console.client()
    for _ in range(3):
        assert anon.post("/api/v1/login", json={"name": "otto", "password": "guess"}).status_code == 401
    assert anon.post("/api/v1/login", json={"name": "otto", "password": PASSWORD}).status_code == 429  # even the right one
    assert anon.post("/login", data={"name": "otto", "password": PASSWORD}).status_code == 429
    config.write_text(config.read_text().replace("login_max_failures = 3", "login_max_failures = 5"))
    console.stop()
    from console.support import start

    console = start(config, port, cport)
    try:
        client = console.login("otto")  # 3 failures of 5 allowed now
        assert client.get("/api/v1/whoami").json() == {"name": "otto", "role": "operator", "via": "session"}
        audit = [(a.user, a.action) for a in _audit(config)]
        assert audit.count(("otto", "login failed")) == 3 and audit.count(("otto", "login throttled")) == 2
        time.sleep(3.5)
        assert client.get("/api/v1/whoami").status_code == 401  # the session expired
    finally:
        console.stop()


def _audit(config):  # type: ignore[no-untyped-def]
    from digimask.config.settings import load
    from digimask.storage.accounts import Accounts
    from digimask.storage.store import open_store

    return Accounts(open_store(load(config)).sessions).audit_trail()


def test_console_imports_no_model_code() -> None:
    """The console runs in the SCP's process: building it must not load torch or MediaPipe."""
    code = ("import sys; from digimask.scp_node.console.server import ConsoleServer; import digimask.scp_node.console.app; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'mediapipe', 'moderngl', 'pyrender', 'cv2'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_masked_preview_and_retry_of_failed_deliveries(small_face, start_console, tmp_path, monkeypatch, capsys) -> None:
    """Orthanc down until the deliveries give up (FAILED, masked output kept and previewable); an
    operator's retry after it is back delivers them."""
    sent = [f.save(f.op8("retry patient", small_face, 1), tmp_path / "r.dcm")]
    orthanc = Orthanc(tmp_path / "orthanc")  # not started yet
    config, port, cport = console_config(tmp_path / "node", orthanc.dicom_port,
                                         retry="initial_delay_s = 0.2\nmax_delay_s = 0.5\nmax_age_s = 1.5")
    add_user(config, "otto", "operator", monkeypatch, capsys)
    console = start_console(config, port, cport)
    operator = console.login("otto")
    assert storescu(port, sent).returncode == 0
    failed = wait_for(lambda: operator.get("/api/v1/deliveries", params={"state": "failed"}).json(), 90, "a failed delivery")
    assert [d["destination"] for d in failed] == ["ORTHANC"] and failed[0]["attempts"] >= 1
    iid = failed[0]["instance_id"]
    png = operator.get(f"/api/v1/instances/{iid}/masked.png")
    assert png.status_code == 200
    masked = np.asarray(Image.open(io.BytesIO(png.content)).convert("RGB"))
    assert masked.shape == small_face.shape and masked.max() == 0  # the blank masker's output, not the photo
    assert operator.get(f"/api/v1/instances/{iid}/mask").status_code == 404  # the blank masker writes no parameters
    orthanc.start()
    try:
        assert operator.post("/api/v1/deliveries/retry", json={"destination": "ORTHANC"}).json() == {"requeued": 1}
        wait_for(lambda: len(orthanc.instances()) == 1, 30, "the retried instance in Orthanc")
        wait_for(lambda: operator.get(f"/api/v1/instances/{iid}").json()["instance"]["state"] == "done", 30, "done")
        events = [e["state"] for e in operator.get(f"/api/v1/instances/{iid}").json()["events"]]
        assert events[-4:] == ["delivery failed", "retry", "forwarded", "done"]
        assert operator.post("/api/v1/deliveries/retry", json={}).json() == {"requeued": 0}
    finally:
        orthanc.stop()


def test_console_over_tls(start_console, tmp_path, monkeypatch, capsys) -> None:
    """[console.tls]: HTTPS only, the certificate verified by the client; the session cookie is Secure."""
    certs = tmp_path / "certs"
    certs.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=console",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(certs / "c.key"), "-out", str(certs / "c.crt")],
                   check=True, capture_output=True)
    config, port, cport = console_config(tmp_path / "node", 9, console=f'[console.tls]\ncert_file = "{certs / "c.crt"}"\n'
                                                                         f'key_file = "{certs / "c.key"}"')
    add_user(config, "vera", "viewer", monkeypatch, capsys)
    start_console(config, port, cport)
    import httpx

    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{cport}/", timeout=5)  # no plain HTTP
    trust = ssl.create_default_context(cafile=str(certs / "c.crt"))
    with httpx.Client(base_url=f"https://127.0.0.1:{cport}", verify=trust, timeout=10) as client:
        r = client.post("/api/v1/login", json={"name": "vera", "password": PASSWORD})
        assert r.status_code == 200 and "secure" in r.headers["set-cookie"].lower()
        assert client.get("/api/v1/whoami").json()["name"] == "vera"
