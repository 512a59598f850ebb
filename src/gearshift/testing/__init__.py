"""Start real Gearman servers on free loopback ports, for tests and benchmarks.

Both helpers start a *separate process* (so crash and restart tests are real) and wait
until the port answers the admin ``version`` command before returning -- readiness is
checked, never slept for.

Example::

    with GearshiftServer() as server:
        client = Client([server.address])
        ...

    with GearmandServer() as reference:   # needs apt-get install gearman-job-server
        ...
"""

from gearshift.testing._servers import (
    GearmandServer,
    GearshiftServer,
    ServerProcess,
    free_port,
    gearmand_path,
)
from gearshift.testing._tls import TlsFiles, make_tls_files
from gearshift.testing._waiting import wait_until

__all__ = [
    "GearmandServer",
    "GearshiftServer",
    "ServerProcess",
    "TlsFiles",
    "free_port",
    "gearmand_path",
    "make_tls_files",
    "wait_until",
]
