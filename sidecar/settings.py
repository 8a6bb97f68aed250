"""Settings machinery shared by the two servers, the sidecar (`config.py`) and the HTTP proxy
(`connectors/proxy/config.py`).

Each server describes its settings once, as a frozen pydantic model whose fields carry their type,
default and description. From that model come the YAML file keys, the environment variables and
the argparse flags (`add_flags`), merged as defaults < file < environment < flags, and the check
that the docs name every setting (`undocumented`). Imports neither torch nor pydantic-settings,
so the proxy (and a client-only install with the `proxy` extra) can use it.
"""
from __future__ import annotations

import argparse
import pathlib
from typing import Any, Callable, Iterable, Mapping

import yaml
from pydantic import BaseModel, ValidationError

__all__ = ["read_yaml", "env_values", "add_flags", "describe_errors", "undocumented"]


def read_yaml(path: str | pathlib.Path) -> dict[str, Any]:
    """The mapping of settings in a YAML file; ValueError naming the file if it cannot be had."""
    path = pathlib.Path(path)
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise ValueError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"cannot read config file {path}: not valid YAML: {exc}") from None
    if not isinstance(loaded, dict):
        raise ValueError(f"config file {path} must hold a mapping of settings, not {type(loaded).__name__}")
    return loaded


def env_values(model: type[BaseModel], environ: Mapping[str, str],
               env_name: Callable[[str], str]) -> dict[str, str]:
    """Raw values of the model's fields found in `environ` under `env_name(field)`."""
    return {name: environ[env_name(name)] for name in model.model_fields if env_name(name) in environ}


def add_flags(parser: argparse.ArgumentParser, model: type[BaseModel], *,
              flag_name: Callable[[str], str] = lambda name: name, skip: Iterable[str] = (),
              bool_switches: bool = True) -> None:
    """One flag `--flag-name` per field (dest = the field's name), help from its description.

    Values stay raw strings: the model converts and checks them, as it does for the file and the
    environment. `bool_switches`: booleans as `--x/--no-x` (else they take a value, `--x true`).
    Give the parser `argument_default=argparse.SUPPRESS` so that only flags given reach the merge.
    """
    skipped = set(skip)
    for name, field in model.model_fields.items():
        if name in skipped:
            continue
        flag = "--" + flag_name(name).replace("_", "-")
        if field.annotation is bool and bool_switches:
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, help=field.description)
            continue
        default = field.default if field.default_factory is None else field.default_factory()
        shown = "" if field.repr is False else f" (default: {default!r})"
        parser.add_argument(flag, dest=name, metavar=flag_name(name).upper(),
                            help=f"{field.description or ''}{shown}".strip())


def describe_errors(exc: ValidationError) -> str:
    """`setting: problem` per error, one per line (the message a user acts on)."""
    lines = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        lines.append(f"{where}: {message}" if where else message)
    return "\n".join(lines)


def undocumented(model: type[BaseModel], doc: str, spellings: Callable[[str], Iterable[str]]) -> list[str]:
    """Fields of the model for which `doc` lacks one of `spellings(field)` (flag, variable, ...)."""
    return [name for name in model.model_fields if not all(text in doc for text in spellings(name))]
