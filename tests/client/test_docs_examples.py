"""Every ```python block in docs/client.md runs, as written, against a real server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gearshift.testing import GearshiftServer

DOC = Path(__file__).resolve().parents[2] / "docs" / "client.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


def test_doc_has_the_three_seed_examples() -> None:
    text = DOC.read_text()
    for title in ("Upper-case a string synchronously", "Send mail in the background",
                  "Resize images in parallel"):
        assert title in text
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_example_runs(index: int) -> None:
    with GearshiftServer() as server:
        done = subprocess.run([sys.executable, "-c", BLOCKS[index]], capture_output=True,
                              text=True, timeout=60,
                              env={**os.environ, "GEARMAN_SERVERS": server.address})
    assert done.returncode == 0, done.stderr
