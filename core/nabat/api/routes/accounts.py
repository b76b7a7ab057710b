"""Console accounts for administrators (``admin``): list, create, change role and
municipalities, disable, reset a password, unlock — what ``nabat users`` does, for the
console's admin page. Every change is audited (never a password); disabling an account or
resetting its password ends its sessions. An administrator cannot disable or demote their own
account: the last admin locking themselves out is a call to the vendor at 3 a.m.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, get, post
from litestar.di import NamedDependency
from litestar.params import PathParameter

from ...regions import load_region
from ..problems import ProblemError, documented
from ..state import ApiState
from ..tokens import TokenInfo
from ..users import User, UserError

__all__ = ["HANDLERS"]

Login = Annotated[str, PathParameter(max_length=64)]
Role = Literal["operator", "supervisor", "admin"]
Slug = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class Account(msgspec.Struct, kw_only=True):
    login: str
    name: str
    role: str
    municipalities: list[str]
    language: str
    disabled: bool
    locked_until: datetime | None = None
    failures: int = 0
    created: datetime
    last_sign_in: datetime | None = None


def _account(user: User) -> Account:
    return Account(
        login=user.login,
        name=user.name,
        role=user.role,
        municipalities=list(user.municipalities),
        language=user.language,
        disabled=user.disabled,
        locked_until=user.locked_until,
        failures=user.failures,
        created=user.created,
        last_sign_in=user.last_sign_in,
    )


class NewAccount(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    login: Annotated[str, msgspec.Meta(min_length=2, max_length=64)]
    password: Annotated[str, msgspec.Meta(max_length=1024)]
    role: Role
    name: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    municipalities: list[Slug] = []
    language: Literal["ru", "en"] = "ru"


class AccountChange(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    role: Role | None = None
    municipalities: list[Slug] | None = None
    language: Literal["ru", "en"] | None = None
    disabled: bool | None = None


class NewPassword(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    password: Annotated[str, msgspec.Meta(max_length=1024)]


def _console(api: ApiState) -> Any:
    if api.console is None:
        raise ProblemError(404, "the console is switched off ([api.console] enabled)")
    return api.console


def _refused(exc: UserError) -> ProblemError:
    reason = str(exc)
    if reason.startswith("no user"):
        return ProblemError(404, reason, kind="not-found")
    if "exists already" in reason:
        return ProblemError(409, reason, kind="conflict")
    return ProblemError(422, reason, kind="invalid")


def _known(api: ApiState) -> list[str]:
    return list(load_region(api.hub.config.hub.region).municipalities)


@get(
    "/api/v1/users",
    opt={"scope": "admin"},
    summary="Console accounts",
    responses=documented(403, 404),
    tags=["accounts"],
)
async def list_accounts(api: NamedDependency[ApiState]) -> list[Account]:
    users = await _console(api).users.list()
    return [_account(u) for u in sorted(users, key=lambda u: u.login)]


@post(
    "/api/v1/users",
    opt={"scope": "admin"},
    status_code=201,
    summary="Create a console account",
    description="`operator` (their `municipalities`), `supervisor` or `admin` (the whole "
    "region). The password: at least 10 characters; it is never shown or logged.",
    responses=documented(403, 404, 409, 422),
    tags=["accounts"],
)
async def create_account(
    request: Request[TokenInfo, Any, Any], api: NamedDependency[ApiState], data: NewAccount
) -> Account:
    request.scope["nabat.audit"] = {  # type: ignore[typeddict-unknown-key]
        "login": data.login,
        "role": data.role,
        "municipalities": list(data.municipalities),
    }
    try:
        user = await _console(api).users.create(
            data.login,
            data.password,
            role=data.role,
            name=data.name,
            municipalities=data.municipalities,
            known_municipalities=_known(api),
            language=data.language,
        )
    except UserError as exc:
        raise _refused(exc) from None
    return _account(user)


def _self(request: Request[TokenInfo, Any, Any], login: str) -> bool:
    return request.user.id == f"user:{login.strip().lower()}"


@post(
    "/api/v1/users/{login:str}",
    opt={"scope": "admin"},
    status_code=200,
    summary="Change a console account",
    description="Its `name`, `role`, `municipalities`, `language`; `disabled` true ends its "
    "sessions. Not one's own role or account.",
    responses=documented(403, 404, 409, 422),
    tags=["accounts"],
)
async def change_account(
    request: Request[TokenInfo, Any, Any],
    api: NamedDependency[ApiState],
    login: Login,
    data: AccountChange,
) -> Account:
    console = _console(api)
    if _self(request, login) and (data.disabled or (data.role not in (None, "admin"))):
        raise ProblemError(409, "you cannot disable or demote your own account", kind="conflict")
    request.scope["nabat.audit"] = {  # type: ignore[typeddict-unknown-key]
        "login": login,
        **{k: v for k, v in msgspec.to_builtins(data).items() if v is not None},
    }
    try:
        user = await console.users.update(
            login,
            name=data.name,
            role=data.role,
            municipalities=data.municipalities,
            language=data.language,
            disabled=data.disabled,
            known_municipalities=_known(api),
        )
    except UserError as exc:
        raise _refused(exc) from None
    if data.disabled:
        await console.sessions.end_all(user.login)
    return _account(user)


@post(
    "/api/v1/users/{login:str}/password",
    opt={"scope": "admin"},
    status_code=200,
    summary="Reset a console account's password",
    description="Sets the new password, clears the failure count and lock, and ends the "
    "account's sessions.",
    responses=documented(403, 404, 422),
    tags=["accounts"],
)
async def reset_password(
    request: Request[TokenInfo, Any, Any],
    api: NamedDependency[ApiState],
    login: Login,
    data: NewPassword,
) -> Account:
    console = _console(api)
    request.scope["nabat.audit"] = {"login": login}  # type: ignore[typeddict-unknown-key]
    try:
        user = await console.users.update(login, password=data.password)
    except UserError as exc:
        raise _refused(exc) from None
    await console.sessions.end_all(user.login)
    return _account(user)


@post(
    "/api/v1/users/{login:str}/unlock",
    opt={"scope": "admin"},
    status_code=200,
    summary="Unlock a console account locked after failed sign-ins",
    responses=documented(403, 404),
    tags=["accounts"],
)
async def unlock_account(
    request: Request[TokenInfo, Any, Any], api: NamedDependency[ApiState], login: Login
) -> Account:
    request.scope["nabat.audit"] = {"login": login}  # type: ignore[typeddict-unknown-key]
    try:
        user = await _console(api).users.update(login, unlock=True)
    except UserError as exc:
        raise _refused(exc) from None
    return _account(user)


HANDLERS = [list_accounts, create_account, change_account, reset_password, unlock_account]
