"""The client side of TLS: the ``ssl=`` option of Client, Worker and AdminClient.

``ssl=True`` builds the context the way libgearman does for ``gearman -S``: the CA from
``GEARMAND_CA_CERTIFICATE``, the client certificate and key from ``GEARMAN_CLIENT_PEM``
and ``GEARMAN_CLIENT_KEY``, each falling back to libgearman's default file under
/etc/ssl/certs/ when that exists. Unlike libgearman, whose client does not check the
server at all, the server's certificate is verified (against that CA, else the system's
trust store) and must name the host connected to; pass your own ``ssl.SSLContext`` for
anything else (``check_hostname = False``, a different trust store, ...).
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterable, Mapping
from typing import Final

from gearshift.client._servers import Address

#: libgearman's compiled-in defaults (``$sysconfdir/ssl/certs/``; /etc on Debian).
LIBGEARMAN_CA_FILE: Final = "/etc/ssl/certs/gearmand-ca.pem"
LIBGEARMAN_CLIENT_PEM: Final = "/etc/ssl/certs/gearman.pem"
LIBGEARMAN_CLIENT_KEY: Final = "/etc/ssl/certs/gearman.key"


def _pick(given: str | None, env: Mapping[str, str], name: str, default: str) -> str | None:
    if given:
        return given
    if env.get(name):
        return env[name]
    return default if os.path.exists(default) else None


def tls_context(ca_file: str | None = None, certificate: str | None = None,
                key: str | None = None,
                environ: Mapping[str, str] | None = None) -> ssl.SSLContext:
    """A TLS client context; arguments override libgearman's environment variables.

    Args:
        ca_file: PEM CA(s) to verify the server with (else ``$GEARMAND_CA_CERTIFICATE``,
            else /etc/ssl/certs/gearmand-ca.pem if present, else the system trust store).
        certificate / key: client certificate and key, for servers that ask for one
            (else ``$GEARMAN_CLIENT_PEM`` / ``$GEARMAN_CLIENT_KEY``, else libgearman's
            default files if present, else none). A certificate without its key uses
            the certificate file for both (a combined PEM).

    Raises:
        ValueError: a file cannot be read or holds no certificate/key; the message
            names the file.
    """
    env = os.environ if environ is None else environ
    ca = _pick(ca_file, env, "GEARMAND_CA_CERTIFICATE", LIBGEARMAN_CA_FILE)
    cert = _pick(certificate, env, "GEARMAN_CLIENT_PEM", LIBGEARMAN_CLIENT_PEM)
    pem_key = _pick(key, env, "GEARMAN_CLIENT_KEY", LIBGEARMAN_CLIENT_KEY) if cert else None
    if ca is None:
        context = ssl.create_default_context()  # the system's trust store
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # this CA only
        try:
            context.load_verify_locations(cafile=ca)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"TLS CA file {ca}: {_why(exc)}") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert is not None:
        try:
            context.load_cert_chain(cert, pem_key, password=_no_password)
        except _EncryptedKey:
            raise ValueError(f"TLS client key {pem_key or cert} is encrypted; give an "
                             "unencrypted key") from None
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"TLS client certificate {cert} / key {pem_key or cert}: "
                             f"{_why(exc)}") from None
    return context


class _EncryptedKey(Exception):
    """The key asked for a password (a prompt would hang a worker or a script)."""


def _no_password() -> str:
    raise _EncryptedKey


class TlsChoice:
    """Which connections use TLS, and with which context.

    With ``ssl=`` (a context or True), every server; without it, only servers written
    ``tls://host:port`` (in the server list or ``GEARMAN_SERVERS``), with the context
    ``ssl=True`` would build. Contexts are built here, at construction, so a bad file is
    reported at once rather than at the first connection.
    """

    def __init__(self, option: ssl.SSLContext | bool | None, addresses: Iterable[Address]):
        self.context: ssl.SSLContext | None = None
        if option is True:
            self.context = tls_context()
        elif isinstance(option, ssl.SSLContext):
            self.context = option
        elif option is not None and option is not False:
            raise TypeError("ssl must be an ssl.SSLContext, True or None, not "
                            f"{type(option).__name__}")
        self._for_tls_addresses = self.context
        if self.context is None and any(a.tls for a in addresses):
            self._for_tls_addresses = tls_context()

    def __call__(self, address: Address) -> ssl.SSLContext | None:
        """The context for a connection to ``address``; None: plaintext."""
        return self.context or (self._for_tls_addresses if address.tls else None)


def _why(exc: OSError | ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLError):
        return str(exc.reason or exc)
    return str(exc.strerror or exc)
