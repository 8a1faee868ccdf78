"""The optional TOML configuration file (``--config FILE`` / ``CHUNKD_CONFIG``) and the checks of ``CHUNKD_*`` names.

The file holds top-level keys named like the settings (``data_dir`` or ``data-dir``), e.g.::

    host = "0.0.0.0"
    data_dir = "/var/lib/chunkd"
    access_log = true
    cors_origins = ["https://app.example.com"]   # a list for the comma-separated settings

It is the lowest-priority source above the defaults: a flag beats a ``CHUNKD_*`` variable, which beats the file.
A key that is not a setting is an error naming it (a typo must not be silently ignored); relative paths are taken
from the working directory, as a flag's are.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

ENV_PREFIX = "CHUNKD_"
# CHUNKD_* names that are not server settings: the client's and the test harness's
OTHER_ENV = frozenset({"CHUNKD_TOKEN", "CHUNKD_URL", "CHUNKD_STATE_DIR", "CHUNKD_FAULTS", "CHUNKD_TEST_WORKERS"})


class ConfigFileError(Exception):
    """The configuration file cannot be read, is not TOML, or has a key that is not a setting."""


def suggest(name: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest known name, or nothing."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def read_config_file(path: Path, fields: Mapping[str, FieldInfo]) -> dict[str, Any]:
    """The file's settings by field name; ConfigFileError for an unreadable file, bad TOML or an unknown key."""
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except OSError as exc:
        raise ConfigFileError(f"config file {path}: cannot read it: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError(f"config file {path}: not valid TOML: {exc}") from exc
    values: dict[str, Any] = {}
    for key, value in doc.items():
        name = key.replace("-", "_")
        if name not in fields or name == "config":
            hint = " (the file cannot name another file)" if name == "config" else suggest(name, fields)
            raise ConfigFileError(f"config file {path}: unknown setting '{key}'{hint}")
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            value = ",".join(value)  # the comma-separated settings (cors_origins, webhook_urls, ...)
        values[name] = value
    return values


class ConfigFileSource(PydanticBaseSettingsSource):
    """The settings source of the file named by the ``config`` setting (an argument or ``CHUNKD_CONFIG``)."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads the whole file at once

    def __call__(self) -> dict[str, Any]:
        named = self.current_state.get("config") or os.environ.get(ENV_PREFIX + "CONFIG")
        if not named:
            return {}
        return read_config_file(Path(named), self.settings_cls.model_fields)


def unknown_env(environ: Mapping[str, str], fields: Iterable[str]) -> list[str]:
    """One warning per ``CHUNKD_*`` variable that names no setting, with the closest setting's variable."""
    known = {ENV_PREFIX + f.upper() for f in fields}
    return [f"warning: {name} is not a chunkd setting; it is ignored{suggest(name, known)}"
            for name in sorted(environ) if name.startswith(ENV_PREFIX) and name not in known | OTHER_ENV]
