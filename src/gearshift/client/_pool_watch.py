"""What a worker supervisor looks at once a second, besides its children: the backlog
on its servers (autoscaling), files that should trigger a reload, and the status file
it writes. Each is small and has one job; :mod:`gearshift.client._processes` calls them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from gearshift.client._errors import GearmanError
from gearshift.client._servers import Address
from gearshift.client._sync._admin import AdminClient

log = logging.getLogger("gearshift.client.supervisor")


class BacklogProbe:
    """Queued (not running) jobs of some functions, summed over servers, read with the
    admin ``status`` command -- what the servers know, not a guess from our children.

    A server that cannot be asked is skipped (and asked again next time); None when no
    server answered.
    """

    def __init__(self, servers: Sequence[Address], functions: Iterable[str],
                 timeout: float = 2.0) -> None:
        self.servers = list(servers)
        self.functions = set(functions)
        self.timeout = timeout
        self._admins: dict[Address, AdminClient] = {}

    def backlog(self) -> int | None:
        total, answered = 0, False
        for address in self.servers:
            try:
                admin = self._admins.get(address)
                if admin is None:
                    admin = self._admins[address] = AdminClient(address, timeout=self.timeout)
                statuses = admin.status()
            except (GearmanError, OSError) as exc:
                log.debug("backlog: %s did not answer (%s)", address, exc)
                self._forget(address)
                continue
            answered = True
            total += sum(max(0, s.total - s.running) for s in statuses
                         if s.function in self.functions)
        return total if answered else None

    def _forget(self, address: Address) -> None:
        admin = self._admins.pop(address, None)
        if admin is not None:
            with contextlib.suppress(Exception):
                admin.close()

    def close(self) -> None:
        for address in list(self._admins):
            self._forget(address)


class ChangeWatch:
    """Tells when files under some paths changed (``--reload-on-change``).

    Polls modification times once a look: no dependency, and a reload is a rare,
    seconds-scale event, so inotify's immediacy buys nothing here.
    """

    def __init__(self, paths: Sequence[str | Path], ignore: str | Path | None = None) -> None:
        self.paths = [Path(p) for p in paths]
        # The supervisor's own status file (and its temporary twin) may sit under a
        # watched directory: rewritten every second, it must not reload the pool.
        self._ignored = Path(ignore).resolve() if ignore is not None else None
        self._seen = self._snapshot()

    def _skip(self, path: Path) -> bool:
        ignored = self._ignored
        if ignored is None:
            return False
        resolved = path.resolve()
        return resolved == ignored or (resolved.parent == ignored.parent
                                       and resolved.name.startswith(f".{ignored.name}."))

    def _snapshot(self) -> dict[Path, float]:
        seen: dict[Path, float] = {}
        for root in self.paths:
            files = [root] if not root.is_dir() else [p for p in root.rglob("*") if p.is_file()]
            for path in files:
                if self._skip(path):
                    continue
                with contextlib.suppress(OSError):
                    seen[path] = path.stat().st_mtime
        return seen

    def changed(self) -> list[Path]:
        """Files added, removed or modified since the last look."""
        now = self._snapshot()
        differ = [p for p in now.keys() | self._seen.keys() if now.get(p) != self._seen.get(p)]
        self._seen = now
        return sorted(differ)


def write_status(path: str | os.PathLike[str], status: dict[str, Any]) -> None:
    """Write ``status`` as JSON, atomically: a reader never sees half a file."""
    target = Path(path)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(json.dumps(status, indent=2) + "\n")
        os.replace(temporary, target)
    except OSError as exc:
        log.warning("cannot write the status file %s: %s", target, exc)
