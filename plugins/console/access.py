"""Who may use the Lethe console: Airflow's own login (the auth manager's JWT, from the UI's ``_token``
cookie or an ``Authorization: Bearer`` header), checked on every request, then Lethe's roles.

- ``LETHE_CONSOLE_ROLES`` (default ``admin,op,user``): roles that may open the console's pages.
- ``LETHE_PACKAGE_ROLES`` (default ``admin``): roles that may download an access package (the only place
  the console hands out personal data); each download is recorded in the ledger.

Roles are the auth manager's: with the simple auth manager the role after the colon in
``AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS`` (``viewer``, ``user``, ``op``, ``admin``); with the FAB auth
manager the user's role names. Compared case-insensitively; ``*`` allows every signed-in user.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

CONSOLE_ROLES_ENV = "LETHE_CONSOLE_ROLES"
PACKAGE_ROLES_ENV = "LETHE_PACKAGE_ROLES"
DEFAULT_CONSOLE_ROLES = ("admin", "op", "user")
DEFAULT_PACKAGE_ROLES = ("admin",)


class NotSignedIn(Exception):
    """No valid Airflow login on the request (401)."""


@dataclass(frozen=True)
class ConsoleUser:
    name: str
    roles: tuple[str, ...]

    def has_any(self, allowed: tuple[str, ...]) -> bool:
        return "*" in allowed or bool({r.casefold() for r in self.roles} & {a.casefold() for a in allowed})


def _roles_from_env(env: str, default: tuple[str, ...]) -> tuple[str, ...]:
    raw = os.environ.get(env)
    if raw is None or not raw.strip():
        return default
    return tuple(r.strip() for r in raw.split(",") if r.strip())


def console_roles() -> tuple[str, ...]:
    return _roles_from_env(CONSOLE_ROLES_ENV, DEFAULT_CONSOLE_ROLES)


def package_roles() -> tuple[str, ...]:
    return _roles_from_env(PACKAGE_ROLES_ENV, DEFAULT_PACKAGE_ROLES)


def user_roles(user) -> tuple[str, ...]:
    """The role names of an auth manager's user: the simple auth manager's ``role``, FAB's ``roles``."""
    out: list[str] = []
    role = getattr(user, "role", None)
    if isinstance(role, str) and role:
        out.append(role)
    for r in getattr(user, "roles", None) or []:
        name = getattr(r, "name", r)
        if isinstance(name, str) and name:
            out.append(name)
    return tuple(dict.fromkeys(out))


async def signed_in_user(request) -> ConsoleUser:
    """The Airflow user of `request`, resolved exactly as Airflow's own API resolves it
    (`airflow.api_fastapi.core_api.security.get_user`: a Bearer token first, else the UI's ``_token``
    cookie, validated by the auth manager). NotSignedIn when there is none or it is invalid/expired."""
    from fastapi import HTTPException
    from airflow.api_fastapi.core_api.security import bearer_scheme, get_user

    try:
        credentials = await bearer_scheme(request)
        user = await get_user(request, None, credentials)
    except HTTPException as exc:
        raise NotSignedIn(str(exc.detail)) from None
    name = getattr(user, "get_name", None)
    return ConsoleUser(name=str(name() if callable(name) else getattr(user, "username", "?")), roles=user_roles(user))


def login_url(next_url: str) -> str:
    """The auth manager's login page, returning to `next_url` afterwards."""
    try:
        from airflow.api_fastapi.app import get_auth_manager

        return get_auth_manager().get_url_login(next_url=next_url)
    except Exception:  # noqa: BLE001 - an auth manager without a login page: Airflow's own /auth/login
        from urllib.parse import urlencode

        return "/auth/login?" + urlencode({"next": next_url})
