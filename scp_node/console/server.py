"""The console's HTTP server: uvicorn in a thread of the node process, on a socket bound at start so a
busy port is reported at once (and the DICOM side keeps running without the console)."""
from __future__ import annotations

import logging
import socket
import threading

import uvicorn
from digimask.config.settings import Settings
from digimask.scp_node.logs import _NoExceptionText
from digimask.storage.store import Store

log = logging.getLogger(__name__)


class ConsoleServer:
    def __init__(self, settings: Settings, store: Store) -> None:
        from digimask.scp_node.console.app import create_app

        self.settings = settings
        c = settings.console
        for name in ("uvicorn", "uvicorn.error"):  # a traceback of a failed request may quote a value: type only
            logger = logging.getLogger(name)
            if not any(isinstance(f, _NoExceptionText) for f in logger.filters):
                logger.addFilter(_NoExceptionText())
        self.app = create_app(settings, store)
        self.server = uvicorn.Server(uvicorn.Config(
            self.app, log_level="warning", access_log=False, lifespan="off",
            ssl_certfile=str(c.tls.cert_file) if c.tls else None, ssl_keyfile=str(c.tls.key_file) if c.tls else None,
        ))
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        c = self.settings.console
        return f"{'https' if c.tls else 'http'}://{c.host}:{c.port}/"

    def start(self) -> None:
        """Bind (OSError if the port is taken) and serve in a daemon thread."""
        c = self.settings.console
        sock = socket.socket(socket.AF_INET6 if ":" in c.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((c.host, c.port))
        except OSError:
            sock.close()
            raise
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, name="console", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)


def start_console(settings: Settings, store: Store) -> ConsoleServer | None:
    """Start the console if enabled; a port that cannot be bound is logged, never fatal to the node."""
    if not settings.console.enabled:
        return None
    console = ConsoleServer(settings, store)
    try:
        console.start()
    except OSError as exc:
        log.error("console: cannot listen on %s:%d (%s); the node runs without it",
                  settings.console.host, settings.console.port, exc.strerror)
        return None
    users = console.app.state.ctx.accounts.count()
    log.info("console at %s%s", console.url,
             "" if users else " (no user yet: digimask user add NAME --role privacy --config CONFIG)")
    return console
