"""The REST API, ``/api/v1``: JSON, the same operations and rules as the command line."""
from __future__ import annotations

import datetime as dt
from dataclasses import asdict
from typing import Annotated, Any

from cryptography.fernet import InvalidToken
from digimask.scp_node.console import ops
from digimask.scp_node.console.auth import (
    Login,
    address,
    ctx,
    login,
    logout,
    needs,
    set_session_cookie,
)
from digimask.storage.accounts import Principal
from digimask.storage.lookup import LookupImportError
from digimask.storage.models import Role, Send, State
from digimask.storage.overview import InstanceFilter
from fastapi import (
    APIRouter,
    Depends,
    File,
    HTTPException,
    Query,
    Request,
    Response,
    UploadFile,
)
from pydantic import BaseModel, Field

router = APIRouter(prefix="/api/v1")
Viewer = Annotated[Principal, Depends(needs(Role.VIEWER))]
Operator = Annotated[Principal, Depends(needs(Role.OPERATOR))]
Privacy = Annotated[Principal, Depends(needs(Role.PRIVACY))]


class Credentials(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class RetryRequest(BaseModel):
    destination: str | None = None  # None: every destination
    delivery_id: int | None = None  # only this failed delivery


class DeleteRequest(BaseModel):
    reason: str = Field(min_length=3, max_length=200)


class ExportRequest(BaseModel):
    key: str = Field(description="the privacy officer's Fernet key (urlsafe base64, 32 bytes)")


@router.post("/login")
def api_login(body: Credentials, request: Request, response: Response) -> dict[str, str]:
    c = ctx(request)
    result, secret, who = login(c, body.name, body.password, address(request))
    if result is Login.THROTTLED:
        raise HTTPException(429, "too many failed logins; wait and try again")
    if result is Login.REFUSED or secret is None or who is None:
        raise HTTPException(401, "wrong user name or password")
    set_session_cookie(c, response, secret)
    return {"name": who.name, "role": who.role.value}


@router.post("/logout")
def api_logout(request: Request, response: Response, who: Viewer) -> dict[str, str]:
    logout(request, response, who)
    return {"signed_out": who.name}


@router.get("/whoami")
def whoami(who: Viewer) -> dict[str, str]:
    return {"name": who.name, "role": who.role.value, "via": who.via}


@router.get("/status")
def get_status(request: Request, who: Viewer) -> dict[str, Any]:
    return ops.status(ctx(request))


@router.get("/instances")
def list_instances(request: Request, who: Viewer, state: State | None = None, destination: str | None = None,
                   since: dt.datetime | None = None, until: dt.datetime | None = None,
                   limit: Annotated[int, Query(ge=1, le=1000)] = 100, offset: Annotated[int, Query(ge=0)] = 0) -> list[dict[str, Any]]:
    return ops.instances(ctx(request), InstanceFilter(state, destination, _naive_utc(since), _naive_utc(until), limit, offset))


def _naive_utc(t: dt.datetime | None) -> dt.datetime | None:
    if t is None or t.tzinfo is None:
        return t
    return t.astimezone(dt.UTC).replace(tzinfo=None)


@router.get("/instances/{iid}")
def instance_history(iid: int, request: Request, who: Viewer) -> dict[str, Any]:
    found = ops.history(ctx(request), iid)
    if found is None:
        raise HTTPException(404, f"no instance {iid}")
    return found


@router.get("/instances/{iid}/masked.png", response_class=Response, responses={200: {"content": {"image/png": {}}}})
def masked_preview(iid: int, request: Request, who: Viewer) -> Response:
    png = ops.preview(ctx(request), who, iid, original=False, addr=address(request))
    if png is None:
        raise HTTPException(404, "no masked image held for this instance (not yet masked, or delivered and removed)")
    return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})


@router.get("/instances/{iid}/original.png", response_class=Response, responses={200: {"content": {"image/png": {}}}})
def original_preview(iid: int, request: Request, who: Privacy) -> Response:
    png = ops.preview(ctx(request), who, iid, original=True, addr=address(request))
    if png is None:
        raise HTTPException(404, "the original is no longer retained")
    return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})


@router.get("/instances/{iid}/mask")
def mask_parameters(iid: int, request: Request, who: Viewer) -> dict[str, Any]:
    found = ops.mask_params(ctx(request), iid)
    if found is None:
        raise HTTPException(404, "no mask parameters held for this instance (no masked output, or a masker without them)")
    return found


@router.get("/instances/{iid}/geometry")
def drawn_geometry(iid: int, request: Request, who: Viewer) -> dict[str, Any]:
    """What the mask drew, in the masked image's pixels: per eye the lid margins (lateral to medial), canthi,
    limbus and reflex (schema ``digimask.geometry/1``)."""
    found = ops.drawn(ctx(request), iid)
    if found is None:
        raise HTTPException(404, "no drawn geometry held for this instance (no masked output, or not the digital mask)")
    return found


@router.get("/deliveries")
def list_deliveries(request: Request, who: Viewer, state: Send | None = None,
                    limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict[str, Any]]:
    return [ops.delivery_json(d) for d in ctx(request).store.deliveries(state, limit)]


@router.post("/deliveries/retry")
def retry_deliveries(body: RetryRequest, request: Request, who: Operator) -> dict[str, int]:
    try:
        return {"requeued": ops.retry(ctx(request), who, body.destination, address(request), body.delivery_id)}
    except KeyError:
        raise HTTPException(404, f"unknown destination {body.destination!r}") from None


@router.get("/quarantine")
def list_quarantine(request: Request, who: Viewer, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict[str, Any]]:
    return [ops.instance_json(i) for i in ctx(request).store.instances(State.QUARANTINED, limit)]


@router.post("/quarantine/{iid}/release")
def release(iid: int, request: Request, who: Operator) -> dict[str, Any]:
    if not ops.release(ctx(request), who, iid, address(request)):
        raise HTTPException(409, f"instance {iid} is not in quarantine (or its original was deleted)")
    return {"released": iid}


@router.post("/quarantine/{iid}/delete")
def delete(iid: int, body: DeleteRequest, request: Request, who: Operator) -> dict[str, Any]:
    if not ops.delete(ctx(request), who, iid, body.reason, address(request)):
        raise HTTPException(409, f"instance {iid} is not in quarantine with its original")
    return {"deleted": iid}


@router.get("/config")
def effective_config(request: Request, who: Viewer) -> dict[str, Any]:
    return ctx(request).effective_config()


@router.post("/check-config")
async def check_config(who: Viewer, file: Annotated[UploadFile, File(description="a digimask TOML file")]) -> dict[str, Any]:
    return ops.check_config(await file.read(1_000_000))


@router.get("/lookup")
def lookup_counts(request: Request, who: Privacy) -> dict[str, int]:
    return ctx(request).map.counts()


@router.post("/lookup/import")
async def lookup_import(request: Request, who: Privacy, file: Annotated[UploadFile, File(description="lookup CSV")]) -> dict[str, int]:
    try:
        done = ops.lookup_import(ctx(request), who, (await file.read(20_000_000)).decode("utf-8-sig"), address(request))
    except (LookupImportError, UnicodeDecodeError) as exc:
        problems = exc.problems if isinstance(exc, LookupImportError) else ["not UTF-8 text"]
        raise HTTPException(422, {"problems": problems}) from None
    return {"added": done.added, "updated": done.updated, "previously_seen": done.previously_seen}


@router.get("/lookup/{pseudonym}")
def lookup_show(pseudonym: str, request: Request, who: Privacy) -> list[dict[str, Any]]:
    rows = ops.lookup_show(ctx(request), who, pseudonym, address(request))
    if not rows:
        raise HTTPException(404, "no such pseudonym in the map")
    return [asdict(r) for r in rows]


@router.post("/lookup/export", response_class=Response, responses={200: {"content": {"application/octet-stream": {}}}})
def lookup_export(body: ExportRequest, request: Request, who: Privacy) -> Response:
    try:
        data = ops.lookup_export(ctx(request), who, body.key.encode(), address(request))
    except (ValueError, InvalidToken):
        raise HTTPException(422, "key: not a Fernet key (digimask lookup export makes one)") from None
    return Response(data, media_type="application/octet-stream",
                    headers={"Content-Disposition": 'attachment; filename="digimask-pseudonyms.fernet"'})
