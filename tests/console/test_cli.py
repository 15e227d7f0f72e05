"""`digimask user` and `digimask lookup` as an administrator types them: exit codes and messages."""
from __future__ import annotations

import io

import pytest
from console.support import PASSWORD, console_config
from digimask.config.settings import load
from digimask.storage.accounts import Accounts
from digimask.storage.store import open_store

from digimask.cli import main


@pytest.fixture
def config(tmp_path):  # type: ignore[no-untyped-def]
    return console_config(tmp_path / "node", 9)[0]


def run(args: list[str], monkeypatch, capsys, stdin: str = "") -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_user_add_token_revoke_list(config, monkeypatch, capsys) -> None:
    c = ["--config", str(config)]
    code, out, _ = run(["user", "add", "otto", "--role", "operator", "--password-stdin", "--token", *c], monkeypatch, capsys, PASSWORD + "\n")
    assert code == 0 and "user otto added with role operator" in out
    token = out.split("API token (shown once): ")[1].split()[0]
    accounts = Accounts(open_store(load(config)).sessions)
    assert accounts.resolve(token, "token").name == "otto"
    assert run(["user", "add", "otto", "--role", "viewer", "--password-stdin", *c], monkeypatch, capsys, PASSWORD + "\n")[0] == 1
    assert run(["user", "add", "shorty", "--role", "viewer", "--password-stdin", *c], monkeypatch, capsys, "short\n")[0] == 2
    assert run(["user", "add", "nobody", *c], monkeypatch, capsys)[0] == 2  # --role is required
    code, out, _ = run(["user", "add", "vera", "--role", "viewer", *c], monkeypatch, capsys)  # no terminal: generated
    generated = out.split("password (shown once): ")[1].strip()
    assert code == 0 and accounts.check_password("vera", generated) is not None
    assert accounts.check_password("vera", PASSWORD) is None
    code, out, _ = run(["user", "list", *c], monkeypatch, capsys)
    assert [line.split()[:4] for line in out.splitlines()[1:]] == [["otto", "operator", "yes", "1"], ["vera", "viewer", "yes", "0"]]
    code, out, _ = run(["user", "revoke", "otto", *c], monkeypatch, capsys)
    assert code == 0 and "otto: 1 session(s) and API token(s) ended" in out
    assert accounts.resolve(token, "token") is None
    assert run(["user", "token", "ghost", *c], monkeypatch, capsys)[0] == 1
    actions = [(a.user.split(":")[0], a.action) for a in accounts.audit_trail()]
    assert ("cli", "user added") in actions and ("cli", "revoked") in actions


def test_lookup_import_refusal_and_missing_key(config, tmp_path, monkeypatch, capsys) -> None:
    c = ["--config", str(config)]
    bad = tmp_path / "bad.csv"
    bad.write_text("original_patient_id,subject_id\nMRN0001234,\n")
    code, _, err = run(["lookup", "import", str(bad), *c], monkeypatch, capsys)
    assert code == 1 and "line 2: subject_id is empty" in err and "MRN0001234" not in err
    assert run(["lookup", "import", str(tmp_path / "none.csv"), *c], monkeypatch, capsys)[0] == 2
    assert run(["lookup", "export", str(tmp_path / "x"), *c], monkeypatch, capsys)[0] == 2  # --key-file needed
    code, _, err = run(["lookup", "show", "DM-0000000000000000", *c], monkeypatch, capsys)
    assert code == 1 and "not in the map" in err
    key = tmp_path / "k"
    assert run(["lookup", "export", str(tmp_path / "map"), "--key-file", str(key), *c], monkeypatch, capsys)[0] == 0
    assert key.stat().st_mode & 0o077 == 0  # the new key is the owner's only
    wrong = tmp_path / "wrong"
    wrong.write_bytes(b"bm90IGEga2V5IGF0IGFsbCBub3QgYSBrZXkgYXQgYWxsIQ==\n")
    assert run(["lookup", "decrypt", str(tmp_path / "map"), "--key-file", str(wrong), *c], monkeypatch, capsys)[0] == 1
    code, out, _ = run(["lookup", "decrypt", str(tmp_path / "map"), "--key-file", str(key), *c], monkeypatch, capsys)
    assert code == 0 and out.splitlines() == ["kind,original,pseudonym,subject_name,patient_pseudonym,source"]
