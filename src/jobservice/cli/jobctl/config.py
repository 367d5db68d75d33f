"""Connection settings: flags, then JOBCTL_* environment variables, then a profile in config.toml.

The config file is `$XDG_CONFIG_HOME/jobctl/config.toml` (default `~/.config/jobctl/config.toml`):

    [profiles.default]              # used when no --profile / JOBCTL_PROFILE is given
    server = "127.0.0.1:50051"
    ca = "~/pki/ca.pem"             # relative paths are relative to the config file
    cert = "~/pki/alice.pem"
    key = "~/pki/alice.key"
    user = "alice"                  # optional; checked against the certificate's CN

The key and user go with the certificate: a key or user from a lower level than the
certificate is not used with it. Fallbacks: the key is the certificate's path with `.key` for its
suffix, and the CA is `ca.pem` beside the certificate (the layout `jobd pki init` writes).
"""

# Heavy modules (grpclib, protobuf, cryptography) are imported inside functions, so that
# `jobctl --help` and usage errors stay instant: see docs/cli.md "Cold start".
# ruff: noqa: PLC0415

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobservice.cli.jobctl.exitcodes import CliError, ExitCode

if TYPE_CHECKING:
    import click

__all__ = [
    "DEFAULT_PORT",
    "DEFAULT_PROFILE",
    "DEFAULT_SERVER",
    "ENV_VARS",
    "Globals",
    "Settings",
    "config_path",
    "parse_server",
    "resolve",
    "settings_from",
    "settings_of",
]

DEFAULT_SERVER = "127.0.0.1:50051"
DEFAULT_PORT = 50051
DEFAULT_PROFILE = "default"
# Setting name -> environment variable.
ENV_VARS = {
    "server": "JOBCTL_SERVER",
    "cert": "JOBCTL_CERT",
    "key": "JOBCTL_KEY",
    "ca": "JOBCTL_CA",
    "user": "JOBCTL_USER",
}
PROFILE_ENV = "JOBCTL_PROFILE"
_FIELDS = ("server", "cert", "key", "ca", "user")


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything needed to reach the server as one user."""

    server: str
    host: str
    port: int
    ca: Path
    cert: Path
    key: Path
    user: str | None


def config_path(env: Mapping[str, str]) -> Path:
    """Where the config file lives, honouring XDG_CONFIG_HOME."""
    base = env.get("XDG_CONFIG_HOME") or ""
    if os.path.isabs(base):  # the XDG spec says to ignore relative values
        return Path(base) / "jobctl" / "config.toml"
    root = Path(env.get("HOME", "~")).expanduser() / ".config"
    return root / "jobctl" / "config.toml"


def parse_server(text: str) -> tuple[str, int]:
    """`host:port`, `host` (default port), `[v6addr]:port` or `[v6addr]` -> (host, port)."""
    from jobservice.address import parse_address

    try:
        return parse_address(text.strip(), default_port=DEFAULT_PORT)
    except ValueError as exc:
        raise CliError(f"Invalid server address {text!r}: {exc}.", ExitCode.USAGE) from None


def _load_profile(path: Path, name: str, *, explicit: bool) -> dict[str, str]:
    """The named profile's settings, paths made absolute; {} when there is nothing to load."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        if explicit:
            raise CliError(
                f"Profile '{name}' requested but there is no config file at {path}.", ExitCode.USAGE
            ) from None
        return {}
    except OSError as exc:
        raise CliError(f"Cannot read {path}: {exc.strerror}.", ExitCode.USAGE) from None
    import tomllib  # only when a profile is needed

    try:
        data: dict[str, Any] = tomllib.loads(raw.decode("utf-8", "replace"))
    except tomllib.TOMLDecodeError as exc:
        raise CliError(f"{path} is not valid TOML: {exc}.", ExitCode.USAGE) from None
    _check_tables(path, data)
    profiles = data.get("profiles", {})
    if not isinstance(profiles, dict) or name not in profiles:
        if not explicit:
            return {}
        known = ", ".join(sorted(profiles)) if isinstance(profiles, dict) else ""
        raise CliError(
            f"No profile '{name}' in {path} (profiles: {known or 'none'}).", ExitCode.USAGE
        )
    return _check_profile(path, name, profiles[name])


def _check_tables(path: Path, data: dict[str, Any]) -> None:
    """Only `[profiles.NAME]` tables: a `[default]` is a mistake worth naming, not ignoring."""
    for key in data:
        if key != "profiles":
            raise CliError(
                f"Unknown table or key {key!r} in {path}: settings go in a profile table, "
                f"as [profiles.{key}] (see `jobctl --help`).",
                ExitCode.USAGE,
            )


def _check_profile(path: Path, name: str, profile: object) -> dict[str, str]:
    where = f"profile '{name}' in {path}"
    if not isinstance(profile, dict):
        raise CliError(f"{where} must be a table of settings.", ExitCode.USAGE)
    unknown = sorted(set(profile) - set(_FIELDS))
    if unknown:
        raise CliError(
            f"Unknown setting {unknown[0]!r} in {where} (known: {', '.join(_FIELDS)}).",
            ExitCode.USAGE,
        )
    result: dict[str, str] = {}
    for field, value in profile.items():
        if not isinstance(value, str):
            raise CliError(f"Setting {field!r} in {where} must be a string.", ExitCode.USAGE)
        is_path = field in ("cert", "key", "ca")
        result[field] = str(path.parent / Path(value).expanduser()) if is_path else value
    return result


def _existing_file(option: str, picked: tuple[str, str, int] | None) -> Path:
    what = _WHAT[option]
    if picked is None:
        raise CliError(
            f"No {what} given: pass {_FLAG[option]}, set {ENV_VARS[option]}, or add "
            f"'{option}' to a profile in the config file (see `jobctl --help`).",
            ExitCode.USAGE,
        )
    value, source, _ = picked
    path = Path(value).expanduser()
    if not path.is_file() or not os.access(path, os.R_OK):
        raise CliError(f"Cannot read {what} file {path} (from {source}).", ExitCode.USAGE)
    return path


def _private_key_file(path: Path) -> Path:
    """`path`, unless others may read or write it: refused, as ssh refuses such a key."""
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise CliError(
            f"Client key {path} is accessible by others (mode {mode:04o}); a private key must "
            f"be yours alone: chmod 600 {path}",
            ExitCode.USAGE,
        )
    return path


_FLAG = {"cert": "-c/--cert", "key": "-k/--key", "ca": "--ca"}
_WHAT = {"cert": "client certificate", "key": "client key", "ca": "CA certificate"}


# One source of settings: where it is (for messages) and what it sets.
_Layer = tuple[str, dict[str, str]]


def _layers(
    flags: Mapping[str, str | None], env: Mapping[str, str], profile: str | None
) -> list[_Layer]:
    """The sources in precedence order: flags, environment, then the profile (if needed).

    A profile named on the command line (`--profile`) is part of the command line: it beats
    the environment, as every other flag does (`JOBCTL_CERT` exported, `--profile charlie` still
    means charlie). A profile from JOBCTL_PROFILE or the default one comes after it.
    """
    given = {field: str(flags[field]) for field in _FIELDS if flags.get(field)}
    from_env = {field: env[ENV_VARS[field]] for field in _FIELDS if env.get(ENV_VARS[field])}
    layers: list[_Layer] = [("the command line", given), ("the environment", from_env)]
    explicit = profile is not None or bool(env.get(PROFILE_ENV))
    if explicit or len(given.keys() | from_env.keys()) < len(_FIELDS):
        name = profile or env.get(PROFILE_ENV) or DEFAULT_PROFILE
        path = config_path(env)
        loaded = (f"profile '{name}' in {path}", _load_profile(path, name, explicit=explicit))
        layers.insert(1 if profile is not None else 2, loaded)
    return layers


def _pick(layers: list[_Layer], field: str, upto: int | None = None) -> tuple[str, str, int] | None:
    """The first layer (up to index `upto`) that sets `field`: value, source, layer index."""
    for level, (where, values) in enumerate(layers):
        if upto is not None and level > upto:
            break
        if field in values:
            source = ENV_VARS[field] if where == "the environment" else where
            return values[field], source, level
    return None


def resolve(
    flags: Mapping[str, str | None], env: Mapping[str, str], profile: str | None
) -> Settings:
    """Merge flags > environment > config profile > fallbacks into checked Settings.

    The key and --user go with the certificate: one set at a lower precedence than the
    certificate is ignored (a JOBCTL_CERT does not get paired with the profile's key), and
    the key then defaults to the certificate's path with `.key`.
    """
    layers = _layers(flags, env, profile)
    cert = _pick(layers, "cert")
    cert_level = cert[2] if cert else None
    beside = _beside(cert[0]) if cert else {}
    key = _pick(layers, "key", cert_level) or beside.get("key") or _pick(layers, "key")
    ca = _pick(layers, "ca") or beside.get("ca")
    user = _pick(layers, "user", cert_level)
    server = _pick(layers, "server")
    server_text = server[0] if server else DEFAULT_SERVER
    host, port = parse_server(server_text)
    return Settings(
        server=server_text,
        host=host,
        port=port,
        cert=_existing_file("cert", cert),
        key=_private_key_file(_existing_file("key", key)),
        ca=_existing_file("ca", ca),
        user=user[0] if user else None,
    )


def _beside(cert: str) -> dict[str, tuple[str, str, int]]:
    """Key and CA files next to the certificate, as `jobd pki init` lays them out."""
    cert_path = Path(cert).expanduser()
    found = {}
    for field, candidate in (
        ("key", cert_path.with_suffix(".key")),
        ("ca", cert_path.parent / "ca.pem"),
    ):
        if candidate.is_file():
            found[field] = (str(candidate), f"the file beside {cert_path}", len(_FIELDS))
    return found


@dataclass(frozen=True, slots=True)
class Globals:
    """The global options as given; resolved into Settings only by commands that connect."""

    server: str | None
    user: str | None
    cert: str | None
    key: str | None
    ca: str | None
    profile: str | None


def settings_of(ctx: click.Context) -> Settings:
    """Resolve the connection settings for the running command (flags > env > profile)."""
    given = ctx.find_object(Globals)
    if given is None:  # a verb invoked without the group (only in tests of the verb alone)
        given = Globals(None, None, None, None, None, None)
    return settings_from(given)


def settings_from(given: Globals) -> Settings:
    """Resolve the connection settings from the global options as given (flags > env > profile)."""
    flags = {
        "server": given.server,
        "user": given.user,
        "cert": given.cert,
        "key": given.key,
        "ca": given.ca,
    }
    return resolve(flags, os.environ, given.profile)
