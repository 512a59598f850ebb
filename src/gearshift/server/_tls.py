"""TLS on the Gearman port: gearmand's ``--ssl`` flags turned into an ``ssl.SSLContext``.

The event loop (uvloop or asyncio) does the TLS work: ``create_server(ssl=...)`` runs each
handshake on its own, bounded by ``handshake_timeout``, and the Gearman connection is
created only once the handshake is done. So a peer that stalls or fails its handshake
costs one socket until the deadline and touches neither the broker nor any other
connection, and the plaintext path is the same code as without TLS (no per-read check).

Files are checked here, at startup, one by one, so a bad path or a key that does not
match the certificate stops the server with a message naming the file, rather than
failing every connection later (gearmand aborted or logged and went on, see #503).
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from typing import Final

from gearshift.server._config import StartupError

#: Where gearmand looks when the flag and its environment variable are absent
#: (``$sysconfdir/ssl/certs/``; Debian's build has sysconfdir /etc).
GEARMAND_SERVER_PEM: Final = "/etc/ssl/certs/gearmand.pem"
GEARMAND_SERVER_KEY: Final = "/etc/ssl/certs/gearmand.key"

#: Seconds a connection may take to finish its TLS handshake before it is closed.
DEFAULT_HANDSHAKE_TIMEOUT: Final = 10.0


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """The server side of TLS (``gearshift serve --ssl``).

    Attributes:
        certificate / key: PEM files of the server's certificate (chain) and private key.
        ca_file: PEM file of the CA(s) that sign client certificates; when given, every
            client must present a certificate that verifies against it (CERT_REQUIRED).
            None: clients are not asked for one (gearmand's behaviour).
        handshake_timeout: seconds a new connection gets to complete its handshake.
    """

    certificate: str = GEARMAND_SERVER_PEM
    key: str = GEARMAND_SERVER_KEY
    ca_file: str | None = None
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT


def resolve_files(certificate: str | None, key: str | None, ca_file: str | None,
                  environ: dict[str, str] | None = None) -> tuple[str, str, str | None]:
    """The files to use: the flag, else gearmand's environment variable, else its default.

    gearmand reads ``GEARMAND_SERVER_PEM``, ``GEARMAND_SERVER_KEY`` and
    ``GEARMAND_CA_CERTIFICATE`` too, but lets them override the flags; here a flag given on
    the command line (or in the config file) wins, which is what an operator reading the
    command line expects. There is no default CA file: a CA is what turns on client
    certificate checks, so it must be asked for.
    """
    env = os.environ if environ is None else environ
    return (certificate or env.get("GEARMAND_SERVER_PEM") or GEARMAND_SERVER_PEM,
            key or env.get("GEARMAND_SERVER_KEY") or GEARMAND_SERVER_KEY,
            ca_file or env.get("GEARMAND_CA_CERTIFICATE") or None)


class _EncryptedKey(Exception):
    """The key file asked for a password (a prompt would hang a daemon)."""


def _no_password() -> str:
    raise _EncryptedKey


def _readable(option: str, path: str) -> None:
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise StartupError(f"{option} {path}: cannot read it: {exc.strerror or exc}") from None


def server_context(tls: TlsConfig) -> ssl.SSLContext:
    """An SSLContext for the listener; StartupError naming the file that is wrong."""
    _readable("--ssl-certificate", tls.certificate)
    _readable("--ssl-key", tls.key)
    if tls.ca_file is not None:
        _readable("--ssl-ca-file", tls.ca_file)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        # Parsed alone first so that a broken certificate is not blamed on the key.
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=tls.certificate)
    except ssl.SSLError as exc:
        raise StartupError(f"--ssl-certificate {tls.certificate}: not a PEM certificate "
                           f"({exc.reason or exc})") from None
    try:
        context.load_cert_chain(tls.certificate, tls.key, password=_no_password)
    except _EncryptedKey:
        raise StartupError(f"--ssl-key {tls.key}: the key is encrypted; give an unencrypted "
                           "key (openssl pkey -in KEY -out PLAIN.key)") from None
    except ssl.SSLError as exc:
        reason = exc.reason or "no PEM private key in it"
        raise StartupError(f"--ssl-key {tls.key}: not the private key of --ssl-certificate "
                           f"{tls.certificate} ({reason})") from None
    if tls.ca_file is not None:
        try:
            context.load_verify_locations(cafile=tls.ca_file)
        except ssl.SSLError as exc:
            raise StartupError(f"--ssl-ca-file {tls.ca_file}: no PEM CA certificate in it "
                               f"({exc.reason or exc})") from None
        context.verify_mode = ssl.CERT_REQUIRED
    return context
