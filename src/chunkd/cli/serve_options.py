"""``chunkd serve``'s options, made from the Settings model: one option per setting, each with its ``CHUNKD_*``
variable and default in its help, so that no setting exists only as a variable and the help cannot drift.

Every option defaults to None ("not given"): only the options on the command line become ``CHUNKD_*``
variables, so a variable or the config file still counts when its flag is absent (flag > env > file > default).
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic.fields import FieldInfo

from chunkd.settings import Settings

# Flag names that differ from ``--<field-name>`` / ``--<name>/--no-<name>``
FLAGS: dict[str, tuple[str, ...]] = {
    "no_auth": ("--no-auth",),
    "force_no_auth": ("--force", "--force-no-auth"),
}
# Defaults worth saying in words (the model's value is exact but unreadable)
SHOWN_DEFAULTS = {"data_dir": "./chunkd-data", "max_size": "1099511627776 (1 TiB)", "tus_max_size": "max_size",
                  "public_url": "none (the request's host)", "tombstone_ttl": "86400 (1 day)",
                  "industry_session_ttl": "21600 (6 h)", "industry_container_ttl": "172800 (48 h)"}


def env_name(field: str) -> str:
    return "CHUNKD_" + field.upper()


def flags(field: str) -> tuple[str, ...]:
    """The option names of a setting: ``--x`` for values, ``--x/--no-x`` for switches."""
    if field in FLAGS:
        return FLAGS[field]
    name = field.replace("_", "-")
    return (f"--{name}/--no-{name}",) if _value_type(Settings.model_fields[field]) is bool else (f"--{name}",)


def flag(field: str) -> str:
    """The first option name alone (for messages)."""
    return flags(field)[0].split("/")[0]


def shown_default(field: str, info: FieldInfo) -> str:
    if field in SHOWN_DEFAULTS:
        return SHOWN_DEFAULTS[field]
    value = info.default
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if value == "":
        return '""'
    return str(value)


def _value_type(info: FieldInfo) -> type:
    """``int`` for ``int``, ``Path`` for ``Path | None``: the option's type."""
    annotation = info.annotation
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    if typing.get_origin(annotation) is typing.Literal:  # one of some words: the model checks which
        return str
    assert isinstance(annotation, type)
    return annotation


def option_help(field: str, info: FieldInfo) -> str:
    return f"{info.description} [env: {env_name(field)}; default: {shown_default(field, info)}]"


def with_setting_options(run: Callable[[dict[str, Any]], None]) -> Callable[..., None]:
    """A command function whose parameters are the settings' options; it calls ``run`` with the options given
    (name -> value, absent ones left out)."""

    @functools.wraps(run)
    def command(**values: Any) -> None:
        run({k: v for k, v in values.items() if v is not None})

    params = []
    for field, info in Settings.model_fields.items():
        kind = _value_type(info)
        option = typer.Option(*flags(field), help=option_help(field, info), show_default=False)
        params.append(inspect.Parameter(field, inspect.Parameter.KEYWORD_ONLY, default=None,
                                        annotation=Annotated[kind | None, option]))
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params} | {"return": None}
    del command.__wrapped__  # typer must read the signature above, not run's
    return command


def as_env(values: dict[str, Any]) -> dict[str, str]:
    """The ``CHUNKD_*`` variables of the options given (paths made absolute: workers may start elsewhere)."""
    env = {}
    for field, value in values.items():
        if isinstance(value, bool):
            text = "1" if value else "0"
        elif isinstance(value, Path):
            text = str(value.resolve())
        else:
            text = str(value)
        env[env_name(field)] = text
    return env


def all_fields() -> list[str]:
    return list(Settings.model_fields)


__all__ = ["all_fields", "as_env", "env_name", "flag", "flags", "option_help", "shown_default",
           "with_setting_options"]
