"""Who is asking: an API token (``Authorization: Bearer dmk_...``) or a session cookie from the login
form; no anonymous access. Logins are rate-limited per user name and per address, and audited."""
from __future__ import annotations

from collections.abc import Callable
from enum import Enum

from digimask.scp_node.console.context import ConsoleContext
from digimask.storage.accounts import Principal
from digimask.storage.models import Role
from fastapi import HTTPException, Request, Response

COOKIE = "digimask_session"


class Login(str, Enum):
    OK = "ok"
    REFUSED = "refused"
    THROTTLED = "throttled"


class LoginRequired(Exception):
    """A page asked for by someone not signed in: the app answers with the login page."""


def ctx(request: Request) -> ConsoleContext:
    return request.app.state.ctx


def address(request: Request) -> str | None:
    return request.client.host if request.client else None


def current(request: Request) -> Principal | None:
    c = ctx(request)
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return c.accounts.resolve(auth[7:].strip(), "token")
    cookie = request.cookies.get(COOKIE)
    return c.accounts.resolve(cookie, "session") if cookie else None


def login(c: ConsoleContext, name: str, password: str, addr: str | None) -> tuple[Login, str | None, Principal | None]:
    """Check a password; on success a new session secret. Too many recent failures: refused unchecked."""
    limits = c.settings.console
    if c.accounts.failures(name, addr, limits.login_window_s) >= limits.login_max_failures:
        c.accounts.audit(name, "login throttled", address=addr)
        return Login.THROTTLED, None, None
    user = c.accounts.check_password(name, password)
    if user is None:
        c.accounts.audit(name, "login failed", address=addr)
        return Login.REFUSED, None, None
    secret = c.accounts.open_session(user, limits.session_lifetime_s)
    c.accounts.audit(user.name, "login", address=addr)
    return Login.OK, secret, Principal(user.name, Role(user.role), "session")


def set_session_cookie(c: ConsoleContext, response: Response, secret: str) -> None:
    response.set_cookie(COOKIE, secret, max_age=int(c.settings.console.session_lifetime_s), httponly=True,
                        samesite="strict", secure=c.settings.console.tls is not None)


def logout(request: Request, response: Response, who: Principal) -> None:
    """End this browser session (an API token stays valid) and audit it."""
    c = ctx(request)
    secret = request.cookies.get(COOKIE)
    if secret:
        c.accounts.close_session(secret)
    c.accounts.audit(who.name, "logout", address=address(request))
    response.delete_cookie(COOKIE)


def needs(role: Role) -> Callable[[Request], Principal]:
    """API dependency: 401 without valid credentials, 403 when the role is not enough."""
    def check(request: Request) -> Principal:
        who = current(request)
        if who is None:
            raise HTTPException(401, "sign in or send an API token", headers={"WWW-Authenticate": "Bearer"})
        if not who.may(role):
            raise HTTPException(403, f"needs the {role.value} role")
        return who
    return check


def page_needs(role: Role) -> Callable[[Request], Principal]:
    """Page dependency: the login page when not signed in, 403 when the role is not enough."""
    def check(request: Request) -> Principal:
        who = current(request)
        if who is None:
            raise LoginRequired()
        if not who.may(role):
            raise HTTPException(403, f"needs the {role.value} role")
        return who
    return check
