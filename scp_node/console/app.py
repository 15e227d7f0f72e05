"""The console's ASGI application: the API, the pages, the static files, ``/metrics`` and the schema."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from digimask.config.settings import Settings
from digimask.scp_node.console import api, metrics, pages
from digimask.scp_node.console.auth import LoginRequired, current, needs
from digimask.scp_node.console.context import ConsoleContext
from digimask.storage.accounts import Principal
from digimask.storage.models import Role
from digimask.storage.store import Store
from fastapi import Depends, FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

HERE = Path(__file__).parent
Viewer = Annotated[Principal, Depends(needs(Role.VIEWER))]


def create_app(settings: Settings, store: Store) -> FastAPI:
    # the interactive docs pages load their scripts from a CDN: not offered (the schema is, signed in)
    app = FastAPI(title="digimask console", version="1", openapi_url=None, docs_url=None, redoc_url=None)
    app.state.ctx = ConsoleContext(settings, store)
    reg = metrics.registry(store)
    app.include_router(api.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.get("/openapi.json", include_in_schema=False)
    def openapi(who: Viewer) -> dict[str, Any]:
        return app.openapi()

    @app.get("/metrics", include_in_schema=False)
    def prometheus(who: Viewer) -> Response:
        return Response(metrics.render(reg), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.exception_handler(LoginRequired)
    def to_login(request: Request, exc: LoginRequired) -> RedirectResponse:
        return RedirectResponse("/", status_code=303)

    @app.exception_handler(StarletteHTTPException)
    async def errors(request: Request, exc: StarletteHTTPException) -> Response:
        if request.url.path.startswith(("/api/", "/metrics", "/openapi", "/static/")):
            return await http_exception_handler(request, exc)  # JSON, as FastAPI answers
        return pages.render(request, "error.html", current(request), status_code=exc.status_code, error=exc.detail)

    @app.middleware("http")
    async def headers(request: Request, call_next):  # type: ignore[no-untyped-def]
        response = await call_next(request)
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Content-Security-Policy"] = "default-src 'self'; img-src 'self'; style-src 'self'; script-src 'none'"
        return response

    return app
