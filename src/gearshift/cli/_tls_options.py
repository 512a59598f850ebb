"""TLS command-line options: gearmand's ``--ssl*`` for ``serve``, libgearman's ``-S`` for
the client commands (``submit``, ``work``, ``admin``, ``result``, ``schedule``).

The server flags keep gearmand's names and meaning (``--ssl`` makes the port TLS-only);
the client flags read the same environment variables as ``gearman -S`` / ``gearadmin -S``
(see client/_tls.py), with ``--ssl-ca-file``/``--ssl-certificate``/``--ssl-key`` to
name the files on the command line instead.
"""

from __future__ import annotations

import argparse
import ssl
import sys

from gearshift.cli._gearmand_options import ConfigError
from gearshift.client._tls import tls_context
from gearshift.server._tls import DEFAULT_HANDSHAKE_TIMEOUT, TlsConfig, resolve_files


def add_serve_tls_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("TLS (gearmand's flags; see docs/operations.md, Securing)")
    g.add_argument("--ssl", action="store_true",
                   help="the port speaks TLS only (plaintext clients are disconnected)")
    g.add_argument("--ssl-certificate", default=None, metavar="FILE",
                   help="server certificate, PEM (default $GEARMAND_SERVER_PEM, else "
                        "/etc/ssl/certs/gearmand.pem)")
    g.add_argument("--ssl-key", default=None, metavar="FILE",
                   help="its private key, PEM, unencrypted (default $GEARMAND_SERVER_KEY, "
                        "else /etc/ssl/certs/gearmand.key)")
    g.add_argument("--ssl-ca-file", default=None, metavar="FILE",
                   help="CA that signs client certificates: when given (or "
                        "$GEARMAND_CA_CERTIFICATE is set), every client must present one "
                        "it signed; without it, clients are not asked for one")
    g.add_argument("--ssl-handshake-timeout", type=float, default=DEFAULT_HANDSHAKE_TIMEOUT,
                   metavar="SECONDS",
                   help="close a connection that has not finished its TLS handshake "
                        f"after this long (default {DEFAULT_HANDSHAKE_TIMEOUT:g})")


def tls_config_from_args(args: argparse.Namespace) -> TlsConfig | None:
    """The TlsConfig for ``--ssl``, else None.

    As in gearmand, the file options do nothing without ``--ssl``; since an operator
    who gave them probably meant TLS, that is said on stderr.
    """
    if not args.ssl:
        given = [name for name, value in (("--ssl-certificate", args.ssl_certificate),
                                          ("--ssl-key", args.ssl_key),
                                          ("--ssl-ca-file", args.ssl_ca_file)) if value]
        if given:
            print(f"gearshift: warning: {', '.join(given)} without --ssl: ignored, the port "
                  "speaks plaintext (as gearmand)", file=sys.stderr)
        return None
    if args.ssl_handshake_timeout <= 0:
        raise ConfigError(f"--ssl-handshake-timeout {args.ssl_handshake_timeout:g}: must be "
                         "more than 0")
    certificate, key, ca_file = resolve_files(args.ssl_certificate, args.ssl_key,
                                              args.ssl_ca_file)
    return TlsConfig(certificate=certificate, key=key, ca_file=ca_file,
                     handshake_timeout=args.ssl_handshake_timeout)


def add_client_tls_options(parser: argparse.ArgumentParser) -> None:
    """``-S/--ssl`` as libgearman's tools spell it, plus the files it would read."""
    parser.add_argument("-S", "--ssl", action="store_true",
                        help="connect with TLS (CA, certificate and key from "
                             "$GEARMAND_CA_CERTIFICATE, $GEARMAN_CLIENT_PEM, "
                             "$GEARMAN_CLIENT_KEY, as gearman -S)")
    parser.add_argument("--ssl-ca-file", default=None, metavar="FILE",
                        help="CA that signed the server's certificate (implies -S)")
    parser.add_argument("--ssl-certificate", default=None, metavar="FILE",
                        help="client certificate, for servers that require one (implies -S)")
    parser.add_argument("--ssl-key", default=None, metavar="FILE",
                        help="the client certificate's key (implies -S)")


def client_ssl_from_args(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The context for ``-S`` or any of its file options (ValueError naming a bad
    file), else None."""
    if not (getattr(args, "ssl", False) or args.ssl_ca_file or args.ssl_certificate
            or args.ssl_key):
        return None
    return tls_context(args.ssl_ca_file, args.ssl_certificate, args.ssl_key)
