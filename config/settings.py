"""The node's configuration: one TOML file, validated at start-up.

Errors name the key and the problem (``routes.0.destinations: unknown destination 'PACS2'``).
Relative paths are resolved against the directory of the configuration file.
"""
from __future__ import annotations

import os
import re
import secrets
import socket
import tomllib
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

AETitle = Annotated[str, Field(min_length=1, max_length=16, pattern=r"^[\x20-\x5b\x5d-\x7e]*[^ ]+[\x20-\x5b\x5d-\x7e]*$")]


def _check_regex(pattern: str) -> None:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None


def _attribute_tag(name: str) -> int | None:
    """A DICOM keyword or ``GGGG,EEEE`` as a tag; None if it is neither."""
    from pydicom.datadict import tag_for_keyword

    tag = tag_for_keyword(name)
    if tag is None and re.fullmatch(r"[0-9A-Fa-f]{4},?[0-9A-Fa-f]{4}", name):
        tag = int(name.replace(",", ""), 16)
    return tag


class ConfigError(Exception):
    """The configuration is invalid; ``problems`` lists ``key: problem`` lines."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TLS(_Strict):
    """Certificate paths (PEM). ``ca_file`` set => the peer's certificate is verified against it."""

    cert_file: Path
    key_file: Path
    ca_file: Path | None = None
    require_client_cert: bool = False

    @model_validator(mode="after")
    def _client_certs_need_a_ca(self) -> "TLS":
        if self.require_client_cert and self.ca_file is None:
            raise ValueError("require_client_cert needs ca_file (the CA that signs the clients' certificates)")
        return self


class Node(_Strict):
    ae_title: AETitle = "DIGIMASK"  # answered to, and the calling AE when the node sends
    other_ae_titles: list[AETitle] = []  # further called AE titles the node answers to (route on called_ae)
    host: str = "127.0.0.1"
    port: int = Field(11112, ge=1, le=65535)
    node_id: str = ""  # unique per process sharing a database; default "<hostname>:<port>"
    allowed_calling_aes: list[AETitle] = Field(min_length=1)
    allowed_ips: list[str] = []  # empty: any address
    max_pdu: int = Field(0, ge=0)  # 0: unlimited
    max_associations: int = Field(64, ge=1)  # simultaneous; more are rejected ("local limit exceeded", logged)
    acse_timeout_s: float = Field(30, gt=0)
    dimse_timeout_s: float = Field(60, gt=0)
    network_timeout_s: float = Field(60, gt=0)
    # how often an association's two threads wake when nothing arrives, to check their timers; a C-STORE
    # never waits for it (scp_node/acceptor.py). pynetdicom's own reactors poll every 1 ms
    association_poll_s: float = Field(0.2, gt=0, le=1)
    tls: TLS | None = None

    @property
    def ae_titles(self) -> list[str]:
        """Every AE title the node answers to; associations calling any other are rejected."""
        return list(dict.fromkeys([self.ae_title, *self.other_ae_titles]))

    @model_validator(mode="after")
    def _default_node_id(self) -> "Node":
        if not self.node_id:
            object.__setattr__(self, "node_id", f"{socket.gethostname()}:{self.port}")
        return self


class Storage(_Strict):
    data_dir: Path = Path("var")
    database_url: str = ""  # default: SQLite in data_dir
    keep_originals_days: float = Field(0, ge=0)  # 0: delete once every destination confirmed
    max_pixels: int = Field(60_000_000, gt=0)  # rows x columns x frames; larger is quarantined
    purge_quarantined_days: float = Field(30, ge=0)  # delete quarantined originals this long after; 0: never
    purge_failed_days: float = Field(30, ge=0)  # the same for instances whose delivery failed for good

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'digimask.db'}"


class DeidOption(str, Enum):
    """PS3.15 Table E.1-1 options the node implements (CID 7050 code in brackets)."""

    retain_longitudinal_full_dates = "retain_longitudinal_full_dates"  # 113106
    retain_longitudinal_modified_dates = "retain_longitudinal_modified_dates"  # 113107
    retain_patient_characteristics = "retain_patient_characteristics"  # 113108
    retain_device_identity = "retain_device_identity"  # 113109
    retain_institution_identity = "retain_institution_identity"  # 113112
    retain_safe_private = "retain_safe_private"  # 113111
    clean_descriptors = "clean_descriptors"  # 113105


class Deid(_Strict):
    profile: Literal["basic"] = "basic"
    options: list[DeidOption] = []
    secret: str = ""  # HMAC key for pseudonyms and UIDs; prefer secret_file
    secret_file: Path | None = None  # created with a random key on first start if missing
    date_shift_max_days: int = Field(3650, ge=1)  # with retain_longitudinal_modified_dates
    uid_root: str = Field("2.25", pattern=r"^[0-2](\.(0|[1-9][0-9]*))*$")
    # public attributes to keep (at any depth) beyond the generated keep-list, by keyword or GGGG,EEEE;
    # Table E.1-1's actions still apply to the attributes it names
    keep_attributes: list[str] = []

    @field_validator("keep_attributes")
    @classmethod
    def _public_attributes(cls, v: list[str]) -> list[str]:
        for name in v:
            tag = _attribute_tag(name)
            if tag is None:
                raise ValueError(f"unknown attribute {name!r} (use a DICOM keyword or GGGG,EEEE)")
            if (tag >> 16) % 2:
                raise ValueError(f"{name!r} is private: private blocks are kept only by retain_safe_private")
        return v

    @property
    def keep_tags(self) -> list[int]:
        return [t for t in map(_attribute_tag, self.keep_attributes) if t is not None]

    @model_validator(mode="after")
    def _one_date_option(self) -> "Deid":
        dates = {DeidOption.retain_longitudinal_full_dates, DeidOption.retain_longitudinal_modified_dates}
        if dates <= set(self.options):
            raise ValueError("choose at most one of retain_longitudinal_full_dates / _modified_dates")
        if not self.secret and self.secret_file is None:
            raise ValueError("set secret_file (recommended) or secret: pseudonyms need a key")
        return self

    def key(self) -> bytes:
        """The HMAC key. ``secret_file`` is created on first use, atomically (a concurrent start reads the
        winner's key, never an empty file), mode 0600, with 32 random bytes (64 hex digits); an existing
        file must hold at least 32 bytes and be readable by its owner only (:class:`KeyFileError` otherwise)."""
        if self.secret:
            return self.secret.encode()
        assert self.secret_file is not None
        path = self.secret_file
        if not path.exists():
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, (secrets.token_hex(32) + "\n").encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, path)  # fails if another process created the key meanwhile: theirs is kept
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
        mode = path.stat().st_mode
        if mode & 0o077:
            raise KeyFileError(f"{path}: readable by others (mode {mode & 0o777:o}); chmod 600 it")
        key = path.read_text().strip().encode()
        if len(key) < 32:
            raise KeyFileError(f"{path}: the key has {len(key)} bytes; at least 32 are needed")
        return key


class KeyFileError(ValueError):
    """The pseudonym key file is unsafe (readable by others) or too short."""


class BlankOptions(_Strict):
    value: int = Field(0, ge=0, le=255)


class BlurOptions(_Strict):
    sigma_fraction: float = Field(0.02, gt=0, le=1)  # of the image's shorter side


class PixelateOptions(_Strict):
    blocks: int = Field(16, ge=1)


MultiFacePolicy = Literal["largest", "reject"]  # mask the largest face, or refuse a photo showing several
Renderer = Literal["moderngl", "pyrender"]


class DigitalMaskOptions(_Strict):
    renderer: Renderer = "moderngl"
    strict: bool = False  # also refuse a mask the analysis does not read within the acceptance limits
    multiple_faces: MultiFacePolicy = "largest"


# Each masker's options as a schema: a configuration is checked without importing any masker (torch, GL).
# Maskers whose output still shows a recognisable face (comparison only; cleans_recognizable_features is
# False in pipeline/mask/maskers.py, which a test checks)
IDENTIFIABLE_MASKERS = frozenset({"blur", "pixelate"})
MASKER_OPTIONS: dict[str, type[_Strict]] = {
    "blank": BlankOptions,
    "blur": BlurOptions,
    "pixelate": PixelateOptions,
    "digital_mask": DigitalMaskOptions,
}


class Pixels(_Strict):
    masker: str = "digital_mask"
    options: dict[str, Any] = {}
    on_failure: Literal["quarantine", "blank"] = "quarantine"
    # the node refuses to serve with a masker whose output still shows the face unless this is set
    allow_identifiable_output: bool = False

    @field_validator("masker")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in MASKER_OPTIONS:
            raise ValueError(f"unknown masker {v!r}; known: {', '.join(sorted(MASKER_OPTIONS))}")
        return v

    @model_validator(mode="after")
    def _options_fit(self) -> "Pixels":
        schema = MASKER_OPTIONS[self.masker]
        try:
            schema.model_validate(self.options)
        except ValidationError as exc:
            problems = []
            for err in exc.errors():
                name = ".".join(str(p) for p in err["loc"])
                problems.append(f"unknown option {name!r} (known: {', '.join(schema.model_fields)})"
                                if err["type"] == "extra_forbidden" else f"{name}: {err['msg']}")
            raise ValueError(f"options for masker {self.masker!r}: {'; '.join(problems)}") from None
        return self


class Destination(_Strict):
    name: str = Field(min_length=1)
    ae_title: AETitle
    host: str
    port: int = Field(ge=1, le=65535)
    tls: TLS | None = None
    tls_server_name: str | None = None


class Retry(_Strict):
    initial_delay_s: float = Field(5, gt=0)
    max_delay_s: float = Field(600, gt=0)
    max_age_s: float = Field(86400, gt=0)  # then the delivery is marked failed (visible, kept)
    batch: int = Field(50, ge=1)  # instances sent per association
    probe_interval_s: float = Field(5, gt=0)  # C-ECHO a destination that is down this often; send at once when it answers


class TagMatch(_Strict):
    """One condition on a header attribute, by keyword (``Modality``) or tag (``0008,0060``)."""

    tag: str
    equals: str | None = None
    regex: str | None = None
    present: bool | None = None

    @model_validator(mode="after")
    def _one_test(self) -> "TagMatch":
        tests = [t for t in (self.equals, self.regex, self.present) if t is not None]
        if len(tests) != 1:
            raise ValueError("give exactly one of equals, regex, present")
        if self.regex is not None:
            _check_regex(self.regex)
        from pydicom.datadict import tag_for_keyword

        if tag_for_keyword(self.tag) is None and not re.fullmatch(r"[0-9A-Fa-f]{4},?[0-9A-Fa-f]{4}", self.tag):
            raise ValueError(f"unknown attribute {self.tag!r} (use a DICOM keyword or GGGG,EEEE)")
        return self


class Match(_Strict):
    """All given conditions must hold; lists mean any-of; strings for AEs are regular expressions."""

    calling_ae: str | None = None
    called_ae: str | None = None
    sop_class_uid: list[str] = []
    modality: list[str] = []
    tags: list[TagMatch] = []

    @field_validator("calling_ae", "called_ae")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        if v is not None:
            _check_regex(v)
        return v


class Route(_Strict):
    name: str
    match: Match = Match()
    destinations: list[str] = Field(min_length=1)


class Video(_Strict):
    """Multi-frame and video instances (``pipeline/mask/video.py``)."""

    hold_s: float = Field(0.5, ge=0)  # a frame whose face or eye is lost holds the last good mask this long
    max_lost_fraction: float = Field(0.2, ge=0, le=1)  # more unmaskable frames than this: quarantine
    keep_hz: float = Field(5.0, gt=0)  # eye movements up to this frequency pass the smoothing ...
    min_gain: float = Field(0.9, gt=0, le=1)  # ... at this fraction of their amplitude at least
    crf: int = Field(12, ge=0, le=51)  # x264 constant rate factor of the H.264 output (12: visually lossless)
    max_frames: int = Field(36_000, gt=0)  # longer clips are quarantined (20 min at 30 fps)


class Pipeline(_Strict):
    workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1, le=64)  # one render context each
    poll_interval_s: float = Field(0.2, gt=0)
    lease_s: float = Field(300, gt=0)  # a claim older than this is taken over (crashed node)


class Scale(_Strict):
    """Scale-out: dispatch processing and sending as Celery tasks to ``digimask worker`` processes.

    Empty ``celery_broker_url``: the embedded default (a pipeline process beside the SCP). The database
    stays the durable record either way; tasks are triggers, and claims make duplicates harmless.
    """

    celery_broker_url: str = ""  # e.g. "redis://127.0.0.1:6379/0"
    queue: str = Field("digimask", min_length=1)
    sweep_interval_s: float = Field(10, gt=0)  # re-announce work whose trigger may have been lost


class ConsoleTLS(_Strict):
    """HTTPS for the console (PEM files)."""

    cert_file: Path
    key_file: Path


class Console(_Strict):
    """The administrator's web console and REST API (``scp_node/console``), started by ``digimask serve``."""

    enabled: bool = True
    host: str = "127.0.0.1"  # loopback by default: put a TLS proxy or [console.tls] in front of anything wider
    port: int = Field(8104, ge=1, le=65535)
    tls: ConsoleTLS | None = None
    session_lifetime_s: float = Field(8 * 3600, gt=0)  # a signed-in session ends this long after login
    login_max_failures: int = Field(5, ge=1)  # per user name and per address, within login_window_s
    login_window_s: float = Field(300, gt=0)


class Settings(_Strict):
    node: Node
    console: Console = Console()
    storage: Storage = Storage()
    deid: Deid
    pixels: Pixels = Pixels()
    pipeline: Pipeline = Pipeline()
    video: Video = Video()
    retry: Retry = Retry()
    scale: Scale = Scale()
    destinations: list[Destination] = []
    routes: list[Route] = []

    @model_validator(mode="after")
    def _routes_name_destinations(self) -> "Settings":
        names = [d.name for d in self.destinations]
        if len(set(names)) != len(names):
            raise ValueError("destinations: names must be unique")
        for i, route in enumerate(self.routes):
            for dest in route.destinations:
                if dest not in names:
                    raise ValueError(f"routes.{i}.destinations: unknown destination {dest!r}")
        return self

    def destination(self, name: str) -> Destination:
        return next(d for d in self.destinations if d.name == name)


def _resolve_paths(raw: dict[str, Any], base: Path) -> None:
    storage = raw.setdefault("storage", {})
    storage["data_dir"] = str(base / storage.get("data_dir", "var"))
    deid = raw.get("deid", {})
    if "secret_file" in deid:
        deid["secret_file"] = str(base / deid["secret_file"])
    for section in [raw.get("node", {}), raw.get("console", {})] + list(raw.get("destinations", [])):
        tls = section.get("tls") if isinstance(section, dict) else None
        if isinstance(tls, dict):
            for key in ("cert_file", "key_file", "ca_file"):
                if key in tls:
                    tls[key] = str(base / tls[key])


def parse(raw: dict[str, Any], base_dir: Path = Path(".")) -> Settings:
    """Validate a configuration mapping; raises :class:`ConfigError` naming each bad key."""
    _resolve_paths(raw, base_dir)
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{loc}: {msg}")
        raise ConfigError(problems) from None


def load(path: Path) -> Settings:
    """Read and validate a TOML configuration file."""
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read ({exc.strerror})"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML ({exc})"]) from None
    return parse(raw, path.resolve().parent)
