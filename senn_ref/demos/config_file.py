"""``--config FILE``: overrides of SENNConfig fields from a JSON or TOML file.

A file holds one table / object of ``field = value``; unknown fields and bad values are
refused naming the file and the field, before anything is trained.  TOML needs Python 3.11+
(``tomllib``); on older Pythons a .toml file is refused with a one-line message.
"""
from __future__ import annotations

import json
import os

from ..trainer import SENNConfig


class ConfigFileError(ValueError):
    """A config file that cannot be used (message: one line naming the file)."""


def read_overrides(path) -> dict:
    """The dict of SENNConfig overrides in ``path`` (.json or .toml), checked against the fields."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ConfigFileError(f"{path}: no such file")
    if path.endswith(".toml"):
        try:
            import tomllib
        except ImportError:
            raise ConfigFileError(f"{path}: TOML needs Python 3.11+ (tomllib); use a .json file") from None
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigFileError(f"{path}: invalid TOML ({exc})") from None
    else:
        try:
            with open(path) as fh:
                data = json.load(fh)
        except json.JSONDecodeError as exc:
            raise ConfigFileError(f"{path}: invalid JSON ({exc}); .toml files are read as TOML") from None
    if not isinstance(data, dict):
        raise ConfigFileError(f"{path}: expected an object of SENNConfig fields, got {type(data).__name__}")
    try:
        SENNConfig.from_dict(data)
    except (TypeError, ValueError) as exc:
        raise ConfigFileError(f"{path}: {exc}") from None
    return data
