"""What every console request works with: the settings, the node's store, accounts and the pseudonym map."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from digimask.config.settings import Settings
from digimask.storage.accounts import Accounts
from digimask.storage.lookup import PseudonymMap
from digimask.storage.store import Store

SECRET = "(hidden)"


def _version() -> str:
    try:
        return version("digimask")
    except PackageNotFoundError:
        return "unknown"


@dataclass
class ConsoleContext:
    settings: Settings
    store: Store
    started: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        self.accounts = Accounts(self.store.sessions)
        self.map = PseudonymMap(self.store.sessions, self.settings.deid.key())
        self.version = _version()

    def effective_config(self) -> dict[str, Any]:
        """The settings in force, with every secret replaced (key, passwords inside URLs)."""
        cfg = self.settings.model_dump(mode="json")
        if cfg["deid"].get("secret"):
            cfg["deid"]["secret"] = SECRET
        for section, key in (("storage", "database_url"), ("scale", "celery_broker_url")):
            cfg[section][key] = hide_password(cfg[section].get(key, ""))
        return cfg


def hide_password(url: str) -> str:
    """``scheme://user:secret@host`` -> ``scheme://user:(hidden)@host``."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in creds:
        return url
    return f"{scheme}://{creds.split(':', 1)[0]}:{SECRET}@{host}"
