"""Polyn's configuration: :class:`Config`, built from arguments or loaded with :meth:`Config.load`.

A ``Config`` is a frozen value: the App puts it in its tree's context and every actor reads it
from there, through one function, :func:`config_for`. A tree started without one (a plain
``trio.run(Supervisor([...]).main)``, as the seed builds services) gets ``Config.load()`` — the
same sources as the command line — loaded once and cached in the tree (:meth:`Tree.cached
<polyn.actors.Tree.cached>`). Build one explicitly::

    config = polyn.Config(domain="com.acme", source_root="orders.payments")

or load it (what the command line does) from ``[tool.polyn]`` in ``pyproject.toml``, then
``POLYN_*`` / ``NATS_*`` environment variables, then keyword overrides; **later wins**::

    config = polyn.Config.load(servers=args.servers)   # a flag left as None overrides nothing

Settings (``[tool.polyn]`` key / environment variable):

=================== ========================================== =================================
field               environment                                default
=================== ========================================== =================================
domain              ``POLYN_DOMAIN``                           required, e.g. ``com.acme``
source_root         ``POLYN_SOURCE_ROOT``                      required, e.g. ``orders.payments``
servers             ``POLYN_SERVERS``, ``NATS_SERVERS``,       ``("nats://127.0.0.1:4222",)``
                    ``NATS_URL`` (comma separated)
schema_store        ``POLYN_SCHEMA_STORE``                     ``"POLYN_SCHEMAS"``
migrations_bucket   ``POLYN_MIGRATIONS_BUCKET``                ``"POLYN_MIGRATIONS"``
max_replicas        ``POLYN_MAX_REPLICAS``                     ``None`` (no cap)
migrations_dir      ``POLYN_MIGRATIONS_DIR``                   ``"migrations"``
schemas_dir         ``POLYN_SCHEMAS_DIR``                      ``"schemas"``
kv_replicas         ``POLYN_KV_REPLICAS``                      ``1``, capped by ``max_replicas``
credentials         ``POLYN_CREDENTIALS``, ``NATS_CREDENTIALS`` ``None`` (a ``.creds`` file)
nkeys_seed          ``POLYN_NKEYS_SEED``                       ``None`` (a seed file)
user / password     ``POLYN_USER`` / ``POLYN_PASSWORD``        ``None``
token               ``POLYN_TOKEN``                            ``None``
tls_ca_file         ``POLYN_TLS_CA_FILE``, ``NATS_CA_FILE``    ``None``
tls_cert_file       ``POLYN_TLS_CERT_FILE``                    ``None``
tls_key_file        ``POLYN_TLS_KEY_FILE``                     ``None``
=================== ========================================== =================================

Decisions:

- ``servers`` is a tuple (the class is frozen); a list or a comma-separated string is accepted.
- Where several variables name one field, the ``POLYN_`` one wins, then ``NATS_SERVERS``, then
  ``NATS_URL``. Empty variables count as unset; other ``POLYN_*`` variables (``POLYN_ENV``,
  ``POLYN_NATS_SERVER``) are not settings and are ignored.
- Without an explicit ``pyproject``, the nearest ``pyproject.toml`` from ``cwd`` upwards is read,
  as ruff and pytest do; relative paths written there (folders, credential and TLS files) are
  relative to that file's folder. Paths from variables and overrides are used as given.
  ``[tool.polyn]`` keys may use ``-`` for ``_``; an unknown key is an error (a typo would
  otherwise be silently ignored).
- ``kv_replicas`` above ``max_replicas`` is capped when the config is built.
- ``password``, ``token`` and ``nkeys_seed`` never appear in ``repr`` or in errors (shown as
  ``'***'``), nor does a password or token written inside a server URL.
- ``domain`` and ``source_root`` must follow the source rule (lowercase alphanumeric tokens
  separated by dots or colons); the error texts are those of the Ruby client's configuration.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Final

import attrs

from polyn.actors import Key, Tree
from polyn.errors import ConfigError
from polyn.naming import is_valid_source_name

__all__ = ["Config", "config_for", "redact_url"]

_DEFAULT_SERVERS = ("nats://127.0.0.1:4222",)
# NATS key-value bucket names (nats-server's rule for KV buckets).
_BUCKET_NAME = re.compile(r"[A-Za-z0-9_-]+")
_SECRETS = frozenset({"password", "token", "nkeys_seed"})
_INT_FIELDS = frozenset({"max_replicas", "kv_replicas"})
_PATH_FIELDS = frozenset(
    {
        "migrations_dir",
        "schemas_dir",
        "credentials",
        "nkeys_seed",
        "tls_ca_file",
        "tls_cert_file",
        "tls_key_file",
    }
)
# Lower precedence first: each later variable overrides the earlier ones for the same field.
_NATS_VARIABLES = (
    ("NATS_URL", "servers"),
    ("NATS_SERVERS", "servers"),
    ("NATS_CREDENTIALS", "credentials"),
    ("NATS_CA_FILE", "tls_ca_file"),
)


_PLAIN_USER = re.compile(r"[A-Za-z0-9._~-]+")


_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S*@\S*")


def redact_urls_in(text: str) -> str:
    """``text`` with every URL in it passed through :func:`redact_url` (error texts that quote
    one: dead letters' and error replies' one-line reasons). A URL ends at whitespace.

    Example::

        redact_urls_in("cannot reach nats://alice:p@ss@db:4222 now")
        # 'cannot reach nats://alice:***@db:4222 now'
    """
    return _URL_IN_TEXT.sub(lambda found: redact_url(found.group(0)), text)


def redact_url(url: str) -> str:
    """``url`` with the secret part of its userinfo replaced by ``***``, whatever it contains.

    ``nats://alice:pw@host`` becomes ``nats://alice:***@host`` and ``nats://token@host``
    becomes ``nats://***@host``. A password may contain ``@``, ``/``, ``#``, ``?`` or ``:``
    (nats-py connects with them), so the userinfo is taken to end at the **last** ``@`` of the
    URL, not at the first ``/``: a URL is never shown with part of its password. A user name is
    kept only when it is plain (letters, digits, ``._~-``); otherwise the whole userinfo is
    hidden. Every place that shows a server URL (reprs, connection errors, logs, the command
    line, AsyncAPI documents) uses this one function.

    Example::

        redact_url("nats://alice:p@ss/w#rd@127.0.0.1:4222")  # 'nats://alice:***@127.0.0.1:4222'
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    at = rest.rfind("@")
    if at < 0:
        return url
    userinfo, host = rest[:at], rest[at + 1 :]
    user, colon, _secret = userinfo.partition(":")
    hidden = f"{user}:***" if colon and _PLAIN_USER.fullmatch(user) else "***"
    return f"{scheme}{sep}{hidden}@{host}"


def _servers_repr(servers: tuple[str, ...]) -> str:
    return repr(tuple(redact_url(url) for url in servers))


def _secret_repr(value: object) -> str:
    return "None" if value is None else "'***'"


def _to_servers(value: str | Iterable[str]) -> tuple[str, ...]:
    items: list[object]
    try:
        items = list(value.split(",") if isinstance(value, str) else value)
    except TypeError:
        items = [value]
    urls = [item.strip() for item in items if isinstance(item, str)]
    if len(urls) != len(items):
        raise ConfigError(
            f"servers must be NATS URLs (strings), got {[_shown(i) for i in items]!r}; "
            'write servers = ["nats://host:4222", ...]'
        )
    return tuple(url for url in urls if url)


def _shown(value: object) -> object:
    return redact_url(value) if isinstance(value, str) else value


def _to_path(value: str | os.PathLike[str]) -> str:
    return os.fspath(value)


def _to_optional_path(value: str | os.PathLike[str] | None) -> str | None:
    return None if value is None else os.fspath(value)


def _check_domain(_: object, attribute: attrs.Attribute[str], value: object) -> None:
    if not is_valid_source_name(value):
        raise ConfigError(
            "You must configure the `domain` for Polyn. It must be lowercase, alphanumeric and "
            f"dot/colon separated, got {value}"
        )


def _check_source_root(_: object, attribute: attrs.Attribute[str], value: object) -> None:
    if not is_valid_source_name(value):
        raise ConfigError(
            "You must configure the `source_root` for Polyn. Event source must be lowercase, "
            f"alphanumeric and dot/colon separated, got {value}"
        )


def _check_servers(_: object, attribute: attrs.Attribute[tuple[str, ...]], value: object) -> None:
    if not value:
        raise ConfigError(
            'servers must name at least one NATS server, e.g. ("nats://127.0.0.1:4222",)'
        )


def _check_bucket(_: object, attribute: attrs.Attribute[str], value: object) -> None:
    if not isinstance(value, str) or _BUCKET_NAME.fullmatch(value) is None:
        raise ConfigError(
            f"{attribute.name} must be a NATS key-value bucket name (letters, digits, '-' and "
            f"'_'), got {value!r}"
        )


def _check_replicas(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None and attribute.name == "max_replicas":
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{attribute.name} must be a whole number >= 1, got {value!r}")


def _check_text(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not isinstance(value, str):
        shown = "a value" if attribute.name in _SECRETS else repr(value)
        raise ConfigError(f"{attribute.name} must be a string or None, got {shown}")


def _secret() -> Any:
    return attrs.field(default=None, repr=_secret_repr, validator=_check_text)


def _text() -> Any:
    return attrs.field(default=None, validator=_check_text)


def _file() -> Any:
    return attrs.field(default=None, converter=_to_optional_path, validator=_check_text)


@attrs.frozen(kw_only=True)
class Config:
    """How a Polyn service names its events and reaches NATS (see the module doc for each field).

    Example::

        config = polyn.Config(domain="com.acme", source_root="orders.payments",
                              servers=["nats://nats-1:4222", "nats://nats-2:4222"])
        config.kv_replicas                       # 1

    Invalid values raise :class:`~polyn.ConfigError` naming the field and the value.
    """

    domain: str = attrs.field(validator=_check_domain)
    source_root: str = attrs.field(validator=_check_source_root)
    servers: tuple[str, ...] = attrs.field(
        default=_DEFAULT_SERVERS,
        converter=_to_servers,
        validator=_check_servers,
        repr=_servers_repr,
    )
    schema_store: str = attrs.field(default="POLYN_SCHEMAS", validator=_check_bucket)
    migrations_bucket: str = attrs.field(default="POLYN_MIGRATIONS", validator=_check_bucket)
    max_replicas: int | None = attrs.field(default=None, validator=_check_replicas)
    migrations_dir: str = attrs.field(default="migrations", converter=_to_path)
    schemas_dir: str = attrs.field(default="schemas", converter=_to_path)
    kv_replicas: int = attrs.field(default=1, validator=_check_replicas)
    credentials: str | None = _file()
    nkeys_seed: str | None = attrs.field(
        default=None, converter=_to_optional_path, repr=_secret_repr, validator=_check_text
    )
    user: str | None = _text()
    password: str | None = _secret()
    token: str | None = _secret()
    tls_ca_file: str | None = _file()
    tls_cert_file: str | None = _file()
    tls_key_file: str | None = _file()

    def __attrs_post_init__(self) -> None:
        if self.max_replicas is not None and self.kv_replicas > self.max_replicas:
            # Frozen: the cap is part of building the value, not a later mutation.
            object.__setattr__(self, "kv_replicas", self.max_replicas)

    @classmethod
    def load(
        cls,
        *,
        pyproject: str | os.PathLike[str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        environ: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> Config:
        """Build a config from ``pyproject.toml``, then the environment, then ``overrides``.

        ``pyproject`` names the file to read (it must exist); by default the nearest
        ``pyproject.toml`` from ``cwd`` (default: the working directory) upwards is read, if any.
        ``environ`` defaults to :data:`os.environ`. Overrides whose value is ``None`` are
        ignored, so unset command-line flags can be passed straight through.

        Example::

            config = Config.load(environ={"POLYN_DOMAIN": "com.acme",
                                          "POLYN_SOURCE_ROOT": "orders",
                                          "NATS_URL": "nats://10.0.0.5:4222"})
            config.servers                     # ('nats://10.0.0.5:4222',)
        """
        fields = attrs.fields_dict(cls)
        values: dict[str, Any] = {}
        values.update(_read_pyproject(pyproject, cwd, fields))
        values.update(_read_environ(os.environ if environ is None else environ, fields))
        for name, value in overrides.items():
            if name not in fields:
                raise ConfigError(
                    f"Config.load got an unknown setting {name!r}; known settings: "
                    f"{', '.join(fields)}"
                )
            if value is not None:
                values[name] = value
        for required in ("domain", "source_root"):
            if required not in values:
                raise ConfigError(
                    f"You must configure the `{required}` for Polyn: set {required} in "
                    f"[tool.polyn] of pyproject.toml, the POLYN_{required.upper()} environment "
                    f"variable, or pass {required}=..."
                )
        return cls(**values)


def _read_pyproject(
    pyproject: str | os.PathLike[str] | None,
    cwd: str | os.PathLike[str] | None,
    fields: Mapping[str, attrs.Attribute[Any]],
) -> dict[str, Any]:
    if pyproject is not None:
        path = Path(pyproject)
        if not path.is_file():
            raise ConfigError(f"pyproject file {str(path)!r} does not exist")
    else:
        found = _find_pyproject(Path.cwd() if cwd is None else Path(cwd))
        if found is None:
            return {}
        path = found
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"Could not read {str(path)!r}: {exc}") from exc
    table = document.get("tool", {}).get("polyn", {})
    if not isinstance(table, dict):
        raise ConfigError(f"[tool.polyn] in {str(path)!r} must be a table, got {table!r}")
    values: dict[str, Any] = {}
    for key, raw in table.items():
        name = key.replace("-", "_")
        origin = f"[tool.polyn] {key} in {str(path)!r}"
        if name not in fields:
            raise ConfigError(
                f"Unknown key {key!r} in [tool.polyn] of {str(path)!r}; known keys: "
                f"{', '.join(fields)}"
            )
        value = _coerce(name, raw, origin)
        if name in _PATH_FIELDS and isinstance(value, str):
            value = str(path.parent / value)  # an absolute value stays as it is
        values[name] = value
    return values


def _find_pyproject(start: Path) -> Path | None:
    for folder in (start, *start.resolve().parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def _read_environ(
    environ: Mapping[str, str], fields: Mapping[str, attrs.Attribute[Any]]
) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for variable, name in _NATS_VARIABLES:
        if environ.get(variable):
            values[name] = _coerce(name, environ[variable], variable)
    for name in fields:
        variable = f"POLYN_{name.upper()}"
        if environ.get(variable):
            values[name] = _coerce(name, environ[variable], variable)
    return values


def _coerce(name: str, value: object, origin: str) -> object:
    """Turn a value read from TOML or the environment into the field's type."""
    shown: Callable[[object], object] = (
        (lambda _: "a value") if name in _SECRETS else (lambda v: repr(_shown(v)))
    )
    if name in _INT_FIELDS:
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{origin} must be a whole number >= 1, got {shown(value)}")
    if name == "servers":
        if isinstance(value, str) or (
            isinstance(value, list) and all(isinstance(v, str) for v in value)
        ):
            return value
        raise ConfigError(
            f"{origin} must be a list of NATS URLs or a comma-separated string, got {shown(value)}"
        )
    if not isinstance(value, str):
        raise ConfigError(f"{origin} must be a string, got {shown(value)}")
    return value


_LOADED: Final = Key("polyn.Config.load()", Config)
"""The tree-wide cache of the config a tree without one in its context loaded."""


def config_for(tree: Tree) -> Config:
    """The :class:`Config` of ``tree``: the one in its context (``polyn.App`` puts it there, as
    does ``Supervisor.run(context={"config": config})``), else :meth:`Config.load` — the
    ``[tool.polyn]`` table of ``pyproject.toml`` and the ``POLYN_*`` / ``NATS_*`` variables, as
    the command line reads them — loaded once per tree and cached in it.

    The one place Polyn reads a tree's config. Raises :class:`~polyn.errors.ConfigError` when
    the context holds something else under ``"config"``, or when there is none and
    ``Config.load()`` fails (its text says which setting is missing).

    Example::

        config = config_for(self.tree)       # inside an actor
        config = config_for(running.tree)    # outside, from the App's handle
    """
    found = tree.context.get("config")
    if found is not None:
        if not isinstance(found, Config):
            raise ConfigError(f"the tree's context holds {found!r} as 'config', not a polyn.Config")
        return found
    try:
        return tree.cached(_LOADED, Config.load)
    except ConfigError as exc:
        raise ConfigError(
            f"this tree has no polyn.Config in its context, and Config.load() (pyproject.toml's "
            f"[tool.polyn], POLYN_* variables) failed: {exc}. Configure it there, or run the "
            "tree with polyn.App(config, ...) or Supervisor.run(context={'config': config})"
        ) from exc
