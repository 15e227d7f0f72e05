"""The administrator's commands: echo, deid/mask-file, queue, quarantine, with their exit codes."""
from __future__ import annotations

from pathlib import Path

import dicom_factory as f
import pydicom
import pytest
from digimask.config.settings import load
from digimask.storage.store import open_store
from peers import Orthanc, free_port, node_config, require

from digimask.cli import main


@pytest.fixture
def config(tmp_path) -> Path:
    return node_config(tmp_path / "node", free_port(), {"PACS": 104})


def test_deid_file_mode(config, astronaut, tmp_path, capsys) -> None:
    src = f.save(f.op8("cli", astronaut), tmp_path / "in.dcm")
    out = tmp_path / "out.dcm"
    assert main(["deid", str(src), str(out), "--config", str(config)]) == 0
    ds = pydicom.dcmread(out)
    assert ds.PatientIdentityRemoved == "YES" and ds.pixel_array.max() == 0
    no_pixels = f.op8("cli", astronaut)
    del no_pixels.PixelData
    bad = f.save(no_pixels, tmp_path / "bad.dcm")
    assert main(["deid", str(bad), str(tmp_path / "x.dcm"), "--config", str(config)]) == 1
    assert "would be quarantined: no pixel data" in capsys.readouterr().err
    assert not (tmp_path / "x.dcm").exists()


def test_quarantine_and_queue_commands(config, capsys) -> None:
    store = open_store(load(config))
    bad = store.receive(b"bad", "2.25.1", "1.2", "STORESCU", "DIGIMASK")
    store.quarantine(store.claim_instance(60), "no face found")
    store.receive(b"good", "2.25.2", "1.2", "STORESCU", "DIGIMASK")
    store.processed(store.claim_instance(60), b"masked", ["PACS"], pseudo_uid="2.25.2", sop_class_uid="1.2", pseudo_patient_id="DM-X")
    (d,) = store.claim_deliveries("PACS", 5, 60)
    store.send_failed(d, "association rejected", None)
    capsys.readouterr()

    assert main(["quarantine", "list", "--config", str(config)]) == 0
    assert "no face found" in capsys.readouterr().out
    assert main(["quarantine", "show", str(bad), "--config", str(config)]) == 0
    shown = capsys.readouterr().out
    assert "quarantined" in shown and "no face found" in shown
    assert main(["quarantine", "release", str(bad), "--config", str(config)]) == 0
    assert main(["quarantine", "release", str(bad), "--config", str(config)]) == 1  # no longer quarantined
    assert main(["quarantine", "show", "999", "--config", str(config)]) == 1
    capsys.readouterr()

    assert main(["queue", "list", "--state", "failed", "--config", str(config)]) == 0
    assert "association rejected" in capsys.readouterr().out
    assert main(["queue", "retry", "--config", str(config)]) == 0
    assert "requeued 1" in capsys.readouterr().out
    assert len(store.claim_deliveries("PACS", 5, 60)) == 1


def test_echo_a_destination(tmp_path, capsys) -> None:
    require("Orthanc")
    pacs = Orthanc(tmp_path / "orthanc").start()
    try:
        config = node_config(tmp_path / "node", free_port(), {"ORTHANC": pacs.dicom_port})
        assert main(["echo", "ORTHANC", "--config", str(config)]) == 0
        assert "C-ECHO Success" in capsys.readouterr().out
        assert main(["echo", "NOWHERE", "--config", str(config)]) == 2
    finally:
        pacs.stop()
    assert main(["echo", "ORTHANC", "--config", str(config)]) == 1  # PACS down


def test_a_database_from_an_older_version_is_refused_clearly(config, capsys) -> None:
    """No automatic migration: a missing column stops serve and the admin commands at once, naming it."""
    import sqlalchemy

    settings = load(config)
    open_store(settings)  # creates the current schema
    engine = sqlalchemy.create_engine(settings.storage.db_url)
    with engine.begin() as conn:  # as a database from before claim tokens looked
        conn.execute(sqlalchemy.text("ALTER TABLE storage_instance DROP COLUMN claim_token"))
    engine.dispose()
    capsys.readouterr()
    assert main(["serve", "--config", str(config)]) == 2
    assert "missing column(s): storage_instance.claim_token" in capsys.readouterr().err
    assert main(["queue", "list", "--config", str(config)]) == 2
    assert "older digimask" in capsys.readouterr().err


def test_queue_retry_pending_sends_now(config, capsys) -> None:
    """`queue retry --pending [--destination]`: the PACS is back, the administrator says "send now"."""
    import datetime as dt

    from digimask.storage.models import utcnow

    store = open_store(load(config))
    for i in range(2):
        store.receive(b"x", f"2.25.{i}", "1.2", "STORESCU", "DIGIMASK")
        store.processed(store.claim_instance(60), b"m", ["PACS", "OTHER"], pseudo_uid=f"2.25.{i}", sop_class_uid="1.2",
                        pseudo_patient_id="DM-X")
    for dest in ("PACS", "OTHER"):
        for d in store.claim_deliveries(dest, 5, 60):
            store.send_failed(d, "no association", utcnow() + dt.timedelta(hours=1))
    assert store.claim_deliveries("PACS", 5, 60) == []  # waiting out the backoff
    capsys.readouterr()
    assert main(["queue", "retry", "--pending", "--destination", "PACS", "--config", str(config)]) == 0
    assert "2 pending deliver(y/ies) to PACS due now" in capsys.readouterr().out
    assert len(store.claim_deliveries("PACS", 5, 60)) == 2
    assert store.claim_deliveries("OTHER", 5, 60) == []  # another destination's backoff is untouched


def test_serve_refuses_an_identifiable_masker_and_an_unsafe_key(config, capsys) -> None:
    text = config.read_text()
    config.write_text(text.replace('masker = "blank"', 'masker = "blur"'))
    assert main(["serve", "--config", str(config)]) == 2
    assert "pixels.allow_identifiable_output = true" in capsys.readouterr().err
    key = config.parent / "secret.key"
    config.write_text(text)
    load(config).deid.key()  # created on first use
    assert key.stat().st_mode & 0o777 == 0o600 and len(key.read_text().strip()) == 64
    key.chmod(0o644)
    assert main(["serve", "--config", str(config)]) == 2
    assert "readable by others (mode 644)" in capsys.readouterr().err
    key.write_text("short\n")
    key.chmod(0o600)
    assert main(["serve", "--config", str(config)]) == 2
    assert "the key has 5 bytes; at least 32 are needed" in capsys.readouterr().err


def test_identifiable_maskers_are_the_ones_that_say_so() -> None:
    from digimask.config.settings import IDENTIFIABLE_MASKERS
    from digimask.pipeline.mask.maskers import MASKERS, create_masker

    assert {name for name in MASKERS if not create_masker(name).cleans_recognizable_features} == IDENTIFIABLE_MASKERS


def _key_of(path: str, queue) -> None:  # type: ignore[no-untyped-def]
    from digimask.config.settings import Deid

    queue.put(Deid(secret_file=Path(path)).key())


def test_concurrent_starts_agree_on_one_key(tmp_path) -> None:
    """Several processes creating the key file at once: none reads an empty or different key."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_key_of, args=(str(tmp_path / "k" / "secret.key"), queue)) for _ in range(6)]
    for p in procs:
        p.start()
    keys = {queue.get(timeout=60) for _ in procs}
    for p in procs:
        p.join(30)
    assert len(keys) == 1 and len(keys.pop()) == 64


def test_commands_write_owner_only_files(config, astronaut, tmp_path) -> None:
    import os

    old = os.umask(0o022)
    try:
        src = f.save(f.op8("umask", astronaut), tmp_path / "in.dcm")
        assert main(["deid", str(src), str(tmp_path / "out.dcm"), "--config", str(config)]) == 0
    finally:
        os.umask(old)
    assert (tmp_path / "out.dcm").stat().st_mode & 0o077 == 0


def test_retry_one_delivery_and_delete_a_quarantined_original(config, capsys) -> None:
    """``queue retry --id`` requeues that failed delivery only; ``quarantine delete ID --reason`` removes
    the original for good, keeps the row and writes the reason to the audit trail."""
    store = open_store(load(config))
    ids = []
    for n in (1, 2):
        store.receive(b"good", f"2.25.{n}", "1.2", "STORESCU", "DIGIMASK")
        store.processed(store.claim_instance(60), b"masked", ["PACS"], pseudo_uid=f"2.25.{n}", sop_class_uid="1.2",
                        pseudo_patient_id="DM-X")
        (d,) = store.claim_deliveries("PACS", 5, 60)
        store.send_failed(d, "refused", None)
        ids.append(d.id)
    assert main(["queue", "retry", "--id", str(ids[1]), "--config", str(config)]) == 0
    assert "requeued 1" in capsys.readouterr().out
    assert [d.id for d in store.claim_deliveries("PACS", 5, 60)] == [ids[1]]

    bad = store.receive(b"bad", "2.25.9", "1.2", "STORESCU", "DIGIMASK")
    store.quarantine(store.claim_instance(60), "no face found")
    original = store.data_dir / store.instance(bad)[0].original_path
    assert main(["quarantine", "delete", str(bad), "--config", str(config)]) == 2  # a reason is required
    assert original.exists()
    assert main(["quarantine", "delete", str(bad), "--reason", "sent twice", "--config", str(config)]) == 0
    assert not original.exists()
    inst, events, _ = store.instance(bad)
    assert inst.original_path is None and events[-1].state == "deleted" and "sent twice" in events[-1].detail
    assert main(["quarantine", "delete", str(bad), "--reason", "again", "--config", str(config)]) == 1
