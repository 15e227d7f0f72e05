"""Console accounts and the pseudonym map: ``digimask user add|token|revoke|list``,
``digimask lookup import|export|show|decrypt``."""
from __future__ import annotations

import argparse
import getpass
import os
import secrets
import sys
from pathlib import Path

from digimask.commands.node import CONFIG_HELP, _settings, _store


def _cli_user() -> str:
    try:
        return f"cli:{getpass.getuser()}"[:64]
    except (KeyError, OSError):
        return "cli"


def cmd_user(args: argparse.Namespace) -> int:
    from digimask.storage.accounts import Accounts
    from digimask.storage.models import Role

    store = _store(args.config)
    if store is None:
        return 2
    accounts = Accounts(store.sessions)
    if args.action == "list":
        print(f"{'USER':<24} {'ROLE':<9} {'PASSWORD':<8} TOKENS")
        for name, role, has_password, tokens in accounts.users():
            print(f"{name:<24} {role:<9} {'yes' if has_password else 'no':<8} {tokens}")
        return 0
    if not args.name:
        print(f"user {args.action} needs a user name", file=sys.stderr)
        return 2
    if args.action == "revoke":
        try:
            n = accounts.revoke(args.name)
        except KeyError:
            print(f"no user {args.name!r}", file=sys.stderr)
            return 1
        accounts.audit(_cli_user(), "revoked", detail=f"{args.name}: {n} session(s)/token(s)")
        print(f"{args.name}: {n} session(s) and API token(s) ended")
        return 0
    if args.action == "token":
        try:
            token = accounts.issue_token(args.name)
        except KeyError:
            print(f"no user {args.name!r}", file=sys.stderr)
            return 1
        accounts.audit(_cli_user(), "token issued", detail=args.name)
        print(f"API token for {args.name} (shown once; send as 'Authorization: Bearer ...'):\n{token}")
        return 0
    if args.role is None:
        print("user add needs --role (viewer, operator or privacy)", file=sys.stderr)
        return 2
    generated = False
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    elif sys.stdin.isatty():
        password = getpass.getpass(f"password for {args.name}: ")
        if password != getpass.getpass("again: "):
            print("the passwords differ", file=sys.stderr)
            return 2
    else:
        password, generated = secrets.token_urlsafe(12), True
    if len(password) < 8:
        print("a password has at least 8 characters", file=sys.stderr)
        return 2
    try:
        accounts.add_user(args.name, Role(args.role), password)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 1
    accounts.audit(_cli_user(), "user added", detail=f"{args.name} ({args.role})")
    print(f"user {args.name} added with role {args.role}" + (f"; password (shown once): {password}" if generated else ""))
    if args.token:
        print(f"API token (shown once): {accounts.issue_token(args.name)}")
    return 0


def cmd_lookup(args: argparse.Namespace) -> int:
    from cryptography.fernet import InvalidToken

    from digimask.storage.accounts import Accounts
    from digimask.storage.lookup import (
        LookupImportError,
        PseudonymMap,
        decrypt_export,
        new_export_key,
    )

    settings = _settings(args.config)
    store = _store(args.config) if settings is not None else None
    if settings is None or store is None:
        return 2
    pmap, accounts, who = PseudonymMap(store.sessions, settings.deid.key()), Accounts(store.sessions), _cli_user()
    if args.action == "import":
        try:
            done = pmap.import_csv(args.file.read_text(encoding="utf-8-sig"))
        except OSError as exc:
            print(f"{args.file}: cannot read ({exc.strerror})", file=sys.stderr)
            return 2
        except LookupImportError as exc:
            print(f"{args.file}: nothing imported:", file=sys.stderr)
            for p in exc.problems:
                print(f"  {p}", file=sys.stderr)
            return 1
        detail = f"{done.added} added, {done.updated} updated, {done.previously_seen} previously seen"
        accounts.audit(who, "lookup import", detail=detail)
        print(f"{args.file}: {detail}" + (" (their earlier studies keep the former pseudonym)" if done.previously_seen else ""))
        return 0
    if args.action == "show":
        rows = pmap.rows(args.pseudonym)
        accounts.audit(who, "lookup show", detail=f"{args.pseudonym}: {len(rows)} found")
        if not rows:
            print(f"{args.pseudonym}: not in the map", file=sys.stderr)
            return 1
        for r in rows:
            print(f"{r.kind} {r.pseudonym} <- {r.original}" + (f" ({r.subject_name})" if r.subject_name else "") + f" [{r.source}]")
        return 0
    if args.key_file is None:
        print(f"lookup {args.action} needs --key-file", file=sys.stderr)
        return 2
    if args.action == "decrypt":
        try:
            sys.stdout.write(decrypt_export(args.file.read_bytes(), args.key_file.read_bytes().strip()))
        except (OSError, ValueError, InvalidToken):
            print(f"{args.file}: cannot decrypt with {args.key_file} (wrong key, or not an export)", file=sys.stderr)
            return 1
        return 0
    if not args.key_file.exists():
        fd = os.open(args.key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(new_export_key() + b"\n")
        print(f"new export key written to {args.key_file}: give it to the privacy officer apart from the export")
    try:
        data = pmap.export(args.key_file.read_bytes().strip())
    except ValueError:
        print(f"{args.key_file}: not a Fernet key", file=sys.stderr)
        return 2
    args.file.write_bytes(data)
    accounts.audit(who, "lookup export", detail=f"{sum(pmap.counts().values())} entries")
    print(f"wrote {args.file} (encrypted; decrypt with: digimask lookup decrypt {args.file} --key-file {args.key_file} --config ...)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("user", help="console accounts: add a user (password and/or API token), issue or revoke tokens, list",
                       description="console accounts; roles: viewer (read), operator (retry, release, delete), "
                                   "privacy (original previews, the pseudonym map)")
    p.set_defaults(func=cmd_user)
    p.add_argument("action", choices=["add", "token", "revoke", "list"])
    p.add_argument("name", nargs="?")
    p.add_argument("--role", choices=["viewer", "operator", "privacy"])
    p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    p.add_argument("--token", action="store_true", help="with add: also issue an API token")
    p.add_argument("--config", type=Path, required=True, help=CONFIG_HELP)
    p = sub.add_parser("lookup", help="the pseudonym map: import pre-assigned subject IDs, export it encrypted, show one",
                       description="import FILE: CSV original_patient_id,subject_id[,subject_name]; export FILE "
                                   "--key-file KEY: the whole map, encrypted (KEY is created if missing); show PSEUDONYM; "
                                   "decrypt FILE --key-file KEY")
    p.add_argument("action", choices=["import", "export", "show", "decrypt"])
    p.add_argument("target", help="a file (import, export, decrypt) or a pseudonym (show)")
    p.add_argument("--key-file", type=Path, help="the privacy officer's export key (export, decrypt)")
    p.add_argument("--config", type=Path, required=True, help=CONFIG_HELP)
    p.set_defaults(func=lambda a: cmd_lookup(_targets(a)))


def _targets(args: argparse.Namespace) -> argparse.Namespace:
    args.file = Path(args.target)
    args.pseudonym = args.target
    return args
