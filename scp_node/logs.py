"""Logging without PHI, at every verbosity.

Exception messages may quote header values (pydicom's parsing errors do), so the node logs and stores
only an exception's type and where it was raised. pynetdicom logs every PDU, with the SOP Instance UIDs,
at INFO and DEBUG: its logger stays at WARNING whatever the verbosity. pydicom's warnings quote values:
they are captured into the ``py.warnings`` logger and not shown.
"""
from __future__ import annotations

import logging
import traceback
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def failure(exc: BaseException) -> str:
    """``"ValueError in decode (decode.py:42)"``: the type and the innermost frame, never the message."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return type(exc).__name__
    last = frames[-1]
    return f"{type(exc).__name__} in {last.name} ({Path(last.filename).name}:{last.lineno})"


class _NoExceptionText(logging.Filter):
    """For third-party loggers: an exception logged as the message, or its traceback, may quote values."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, BaseException):
            record.msg, record.args = failure(record.msg), ()
        if record.exc_info and record.exc_info[1] is not None:
            record.msg = f"{record.getMessage()} ({failure(record.exc_info[1])})"
            record.args = ()
        record.exc_info = record.exc_text = None
        return True


def configure(verbose: bool = False) -> None:
    """Root logging for a node process; ``verbose`` turns on DEBUG for digimask's own loggers only."""
    logging.basicConfig(level=logging.INFO, format=FORMAT)
    logging.getLogger("digimask").setLevel(logging.DEBUG if verbose else logging.INFO)
    pynetdicom = logging.getLogger("pynetdicom")
    pynetdicom.setLevel(logging.WARNING)
    if not any(isinstance(f, _NoExceptionText) for f in pynetdicom.filters):
        pynetdicom.addFilter(_NoExceptionText())
    logging.captureWarnings(True)
    logging.getLogger("py.warnings").setLevel(logging.CRITICAL + 1)
