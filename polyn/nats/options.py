"""Connection options: nats-py's defaults as Polyn sets them, TLS files, and seed files.

Everything here runs before the connection is attempted, in the caller's thread, so a wrong
file is a :class:`~polyn.errors.ConfigError` naming the file (never its content) instead of
an error from deep inside nats-py's connect (``ErrInvalidSeed()`` for a malformed nkeys seed,
with no file name).
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any

from polyn.errors import ConfigError

__all__ = ["SECRET_OPTIONS", "build_tls_context", "check_nkeys_seed", "connect_options"]

SECRET_OPTIONS = frozenset({"password", "token", "nkeys_seed", "signature_cb", "user_jwt_cb"})
"""Options whose values are shown as ``'***'`` wherever options are shown."""


def connect_options(options: Mapping[str, Any]) -> tuple[dict[str, Any], int]:
    """nats-py's ``connect`` keywords for a first connection, and the reconnect attempts after.

    Defaults: ``name="polyn-python"``, ``reconnect_time_wait=0.5``, ``connect_timeout=2``. Once
    connected, the connection reconnects forever by default (``health()`` shows the outage);
    but the first connection is tried only ``connect_attempts`` times (2), so a wrong URL or
    credentials fail the start with a clear error instead of hanging.
    """
    out = dict(options)
    out.setdefault("name", "polyn-python")
    out.setdefault("reconnect_time_wait", 0.5)
    out.setdefault("connect_timeout", 2)
    reconnect_attempts = int(out.pop("max_reconnect_attempts", -1))
    out["max_reconnect_attempts"] = out.pop("connect_attempts", 2)
    check_nkeys_seed(out)
    return out, reconnect_attempts


def check_nkeys_seed(options: Mapping[str, Any]) -> None:
    """Raise :class:`~polyn.errors.ConfigError` when ``nkeys_seed`` (a file) or
    ``nkeys_seed_str`` does not hold a valid nkeys seed. The message names the file, never the
    seed."""
    path = options.get("nkeys_seed")
    text = options.get("nkeys_seed_str")
    if not path and not text:
        return
    import nkeys  # type: ignore[import-untyped]  # nats-py's own dependency, used only for seeds

    where = f"the nkeys seed file {str(path)!r}" if path else "the nkeys seed given as a string"
    try:
        if path:
            with open(path, "rb") as file:
                seed = bytearray(file.read().strip())
        else:
            seed = bytearray(str(text).strip().encode())
    except OSError as exc:
        raise ConfigError(f"cannot read {where}: {reason(exc)}") from None
    try:
        nkeys.from_seed(seed).wipe()
    except Exception:
        raise ConfigError(
            f"{where} does not hold a valid nkeys seed (one line starting with 'SU', as "
            "`nsc` or `nk -gen user` write it)"
        ) from None
    finally:
        seed[:] = bytes(len(seed))


def build_tls_context(
    ca_file: str | None, cert_file: str | None, key_file: str | None
) -> ssl.SSLContext | None:
    """An SSL context for nats-py from file paths, or ``None`` when no TLS file is given.

    Raises :class:`~polyn.errors.ConfigError` naming the file when one cannot be read or is not
    a PEM certificate or key.
    """
    if not (ca_file or cert_file):
        return None
    try:
        context = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot use the TLS CA file {ca_file!r}: {reason(exc)}") from None
    if cert_file:
        try:
            context.load_cert_chain(cert_file, key_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"cannot use the TLS client certificate {cert_file!r} with key {key_file!r}: "
                f"{reason(exc)}"
            ) from None
    return context


def reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
