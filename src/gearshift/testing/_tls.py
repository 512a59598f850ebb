"""Throw-away TLS files for tests: a CA, a server certificate for localhost/127.0.0.1/::1,
a client certificate signed by the same CA, and a second, unrelated CA.

Made with trustme (the ``test`` extra), which exists for exactly this: no openssl command
lines to get subtly wrong, and nothing is ever committed.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TlsFiles:
    """Paths of the PEM files :func:`make_tls_files` wrote.

    Attributes:
        ca: the CA that signed ``server_cert`` and ``client_cert``.
        server_cert / server_key: for ``gearshift serve --ssl``.
        client_cert / client_key: a client certificate ``ca`` signed.
        other_ca: a CA that signed nothing here (a "wrong CA").
        other_client_cert / other_client_key: a client certificate ``other_ca`` signed.
    """

    ca: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str
    other_ca: str
    other_client_cert: str
    other_client_key: str

    def serve_args(self, with_ca: bool = False) -> list[str]:
        """``gearshift serve`` (or gearmand) options for a TLS-only port."""
        args = ["--ssl", "--ssl-certificate", self.server_cert, "--ssl-key", self.server_key]
        return args + (["--ssl-ca-file", self.ca] if with_ca else [])

    def client_context(self, with_cert: bool = True) -> ssl.SSLContext:
        """A client context trusting ``ca``, presenting ``client_cert`` when asked."""
        context = ssl.create_default_context(cafile=self.ca)
        if with_cert:
            context.load_cert_chain(self.client_cert, self.client_key)
        return context


def make_tls_files(directory: str | Path) -> TlsFiles:
    """Write a fresh CA and certificates into ``directory`` (needs ``trustme``)."""
    import trustme

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    ca, other = trustme.CA(), trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1", "::1")
    client = ca.issue_cert("client.gearshift.test", common_name="gearshift-test-client")
    stranger = other.issue_cert("client.gearshift.test", common_name="stranger")
    paths = {name: str(out / f"{name}.pem") for name in TlsFiles.__dataclass_fields__}
    ca.cert_pem.write_to_path(paths["ca"])
    other.cert_pem.write_to_path(paths["other_ca"])
    for prefix, leaf in (("server", server), ("client", client), ("other_client", stranger)):
        leaf.cert_chain_pems[0].write_to_path(paths[f"{prefix}_cert"])
        leaf.private_key_pem.write_to_path(paths[f"{prefix}_key"])
    return TlsFiles(**paths)
