"""Client TLS files as Kafka and Redis take them: the checks and the loading they share.

Both clients verify the server against a CA file (the system's CAs without one), may
present a PEM client certificate with its key, and check the server's name unless told
not to. `TlsFiles` names the settings by their prefix (RETENTION_KAFKA, RETENTION_REDIS),
so every message says which variable to change.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path


class TlsSettingError(ValueError):
    """A TLS file cannot be used; the message names the setting."""


@dataclass(frozen=True)
class TlsFiles:
    """One client's TLS settings; `prefix` is the start of their variables' names."""

    prefix: str
    cafile: Path | None
    certfile: Path | None
    keyfile: Path | None
    key_password: str | None = field(default=None, repr=False)
    check_hostname: bool = True

    def given(self) -> dict[str, object]:
        """The variables set, by name (in the order a message should name them)."""
        values = {
            "SSL_CAFILE": self.cafile,
            "SSL_CERTFILE": self.certfile,
            "SSL_KEYFILE": self.keyfile,
            "SSL_KEY_PASSWORD": self.key_password,
        }
        return {f"{self.prefix}_{name}": v for name, v in values.items() if v is not None}


def files_problem(files: TlsFiles, enabled: bool, enable_hint: str) -> str | None:
    """What is wrong with the combination: files that TLS switched off would silently
    ignore (`enable_hint` says how to switch it on), a certificate without its key or
    the reverse, a key password without a key. None when consistent."""
    if not enabled:
        named = list(files.given())
        return f"{named[0]} is ignored {enable_hint}" if named else None
    if (files.certfile is None) != (files.keyfile is None):
        missing = "KEYFILE" if files.keyfile is None else "CERTFILE"
        return f"{files.prefix}_SSL_{missing} is required with a client certificate"
    if files.key_password is not None and files.keyfile is None:
        return f"{files.prefix}_SSL_KEY_PASSWORD is set without {files.prefix}_SSL_KEYFILE"
    return None


def client_context(files: TlsFiles) -> ssl.SSLContext:
    """A client context that verifies the server against the CA file (the system's CAs
    without one), presents the client certificate if one is set, and checks the
    server's name unless `check_hostname` is false. TlsSettingError names the file."""
    try:
        context = ssl.create_default_context(cafile=files.cafile)
    except (OSError, ssl.SSLError) as exc:
        raise TlsSettingError(
            f"{files.prefix}_SSL_CAFILE: cannot load CA certificates from {files.cafile} ({exc})"
        ) from None
    if files.certfile is not None:
        try:
            context.load_cert_chain(files.certfile, files.keyfile, files.key_password)
        except (OSError, ssl.SSLError) as exc:
            raise TlsSettingError(
                f"{files.prefix}_SSL_CERTFILE / {files.prefix}_SSL_KEYFILE: cannot load the "
                f"client certificate {files.certfile} with its key {files.keyfile} ({exc}; "
                f"a PEM certificate and the matching key, and {files.prefix}_SSL_KEY_PASSWORD "
                "if the key is encrypted)"
            ) from None
    context.check_hostname = files.check_hostname
    if not files.check_hostname:
        context.verify_mode = ssl.CERT_REQUIRED  # still verify the chain, not the name
    return context
