"""Console accounts, sessions and API tokens, and the console's own audit trail.

Passwords are kept as Argon2id hashes (argon2-cffi's defaults, RFC 9106); session cookies and API
tokens only as the SHA-256 of their random secret, so a copy of the database lets nobody sign in.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from digimask.storage.models import (
    ConsoleAudit,
    ConsoleCredential,
    ConsoleUser,
    Role,
    utcnow,
)
from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import sessionmaker

_hasher = PasswordHasher()
_DUMMY = _hasher.hash("digimask: spends the same time on an unknown user name")
TOKEN_PREFIX = "dmk_"
RANK = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.PRIVACY: 2}


@dataclass(frozen=True)
class Principal:
    """Who is asking: a console user and how they signed in."""

    name: str
    role: Role
    via: str  # "session" | "token"

    def may(self, needed: Role) -> bool:
        return RANK[self.role] >= RANK[needed]


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class Accounts:
    def __init__(self, sessions: sessionmaker) -> None:
        self.sessions = sessions

    def add_user(self, name: str, role: Role, password: str | None) -> None:
        """Create a user; ``password`` None makes an API-token-only account. ValueError if the name is taken."""
        if not name or len(name) > 64:
            raise ValueError("a user name has 1 to 64 characters")
        with self.sessions.begin() as s:
            if s.scalar(select(ConsoleUser.id).where(ConsoleUser.name == name)) is not None:
                raise ValueError(f"user {name!r} exists")
            s.add(ConsoleUser(name=name, role=role.value, password_hash=_hasher.hash(password) if password else None))

    def users(self) -> list[tuple[str, str, bool, int]]:
        """(name, role, has a password, live API tokens) for each user."""
        with self.sessions() as s:
            tokens = dict(s.execute(select(ConsoleCredential.user_id, func.count())
                                    .where(ConsoleCredential.kind == "token").group_by(ConsoleCredential.user_id)).all())
            return [(u.name, u.role, u.password_hash is not None, tokens.get(u.id, 0))
                    for u in s.scalars(select(ConsoleUser).order_by(ConsoleUser.name)).all()]

    def count(self) -> int:
        with self.sessions() as s:
            return int(s.scalar(select(func.count()).select_from(ConsoleUser)) or 0)

    def issue_token(self, name: str) -> str:
        """A new API token for ``name`` (shown once; only its digest is kept). KeyError if no such user."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self.sessions.begin() as s:
            uid = s.scalar(select(ConsoleUser.id).where(ConsoleUser.name == name))
            if uid is None:
                raise KeyError(name)
            s.add(ConsoleCredential(digest=_digest(token), kind="token", user_id=uid))
        return token

    def revoke(self, name: str) -> int:
        """End every session and API token of ``name``; how many. KeyError if no such user."""
        with self.sessions.begin() as s:
            uid = s.scalar(select(ConsoleUser.id).where(ConsoleUser.name == name))
            if uid is None:
                raise KeyError(name)
            return s.execute(delete(ConsoleCredential).where(ConsoleCredential.user_id == uid)).rowcount

    def check_password(self, name: str, password: str) -> ConsoleUser | None:
        with self.sessions() as s:
            user = s.scalars(select(ConsoleUser).where(ConsoleUser.name == name)).one_or_none()
        try:
            _hasher.verify(user.password_hash if user and user.password_hash else _DUMMY, password)
        except (VerificationError, InvalidHashError):
            return None
        return user if user is not None and user.password_hash else None

    def open_session(self, user: ConsoleUser, lifetime_s: float) -> str:
        secret = secrets.token_urlsafe(32)
        now = utcnow()
        with self.sessions.begin() as s:
            s.execute(delete(ConsoleCredential).where(ConsoleCredential.kind == "session", ConsoleCredential.expires_at < now))
            s.add(ConsoleCredential(digest=_digest(secret), kind="session", user_id=user.id,
                                    expires_at=now + dt.timedelta(seconds=lifetime_s)))
        return secret

    def close_session(self, secret: str) -> None:
        with self.sessions.begin() as s:
            s.execute(delete(ConsoleCredential).where(ConsoleCredential.digest == _digest(secret)))

    def resolve(self, secret: str, kind: str) -> Principal | None:
        """The user behind a session cookie or API token, if it exists and has not expired."""
        with self.sessions() as s:
            row = s.execute(select(ConsoleUser.name, ConsoleUser.role, ConsoleCredential.expires_at)
                            .join(ConsoleCredential, ConsoleCredential.user_id == ConsoleUser.id)
                            .where(ConsoleCredential.digest == _digest(secret), ConsoleCredential.kind == kind)).one_or_none()
        if row is None or (row.expires_at is not None and row.expires_at <= utcnow()):
            return None
        return Principal(row.name, Role(row.role), kind)

    # -- audit --------------------------------------------------------------------------------------
    def audit(self, user: str, action: str, *, address: str | None = None, instance_id: int | None = None,
              detail: str | None = None) -> None:
        with self.sessions.begin() as s:
            s.add(ConsoleAudit(user=user[:64], action=action[:32], address=(address or None) and address[:64],
                               instance_id=instance_id, detail=(detail or None) and detail[:256]))

    def failures(self, name: str, address: str | None, window_s: float) -> int:
        """Failed logins for this user name or from this address within the window (rate limiting)."""
        since = utcnow() - dt.timedelta(seconds=window_s)
        who = ConsoleAudit.user == name[:64]
        if address:
            who = or_(who, ConsoleAudit.address == address)
        with self.sessions() as s:
            return int(s.scalar(select(func.count()).select_from(ConsoleAudit)
                                .where(ConsoleAudit.action == "login failed", ConsoleAudit.at >= since, who)) or 0)

    def audit_trail(self, limit: int = 200, instance_id: int | None = None) -> list[ConsoleAudit]:
        with self.sessions() as s:
            q = select(ConsoleAudit).order_by(ConsoleAudit.id.desc()).limit(limit)
            if instance_id is not None:
                q = q.where(ConsoleAudit.instance_id == instance_id)
            return list(s.scalars(q).all())
