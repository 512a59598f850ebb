"""``gearshift serve --server-id / --lease``: defaults, bounds, bad input."""

from __future__ import annotations

import pytest

from gearshift.cli import build_parser
from gearshift.cli._serve import config_from_args
from gearshift.server._config import DEFAULT_LEASE


def test_defaults_and_values_reach_the_config() -> None:
    config = config_from_args(build_parser().parse_args(["serve"]))
    assert config.server_id == ""  # -> <host name>:<port> when the store is opened
    assert config.lease == DEFAULT_LEASE == 5.0
    config = config_from_args(build_parser().parse_args(
        ["serve", "--server-id", "db-a", "--lease", "1500ms"]))
    assert config.server_id == "db-a"
    assert config.lease == 1.5


@pytest.mark.parametrize("bad", ["0.5s", "0", "2h", "-3s", "soon"])
def test_lease_outside_its_bounds_is_refused(bad: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["serve", "--lease", bad])
    assert exit_info.value.code == 2
    assert "--lease" in capsys.readouterr().err
