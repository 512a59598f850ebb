"""The README's Python example runs as printed (against a real server on a free port)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

from gearshift.testing import GearshiftServer

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert blocks, "README has no python example"
    with GearshiftServer() as server:
        code = blocks[0].replace("127.0.0.1:4730", server.address)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    lines = out.getvalue().splitlines()
    assert lines[0] == "b'HELLO'"
    assert lines[1] == "[b'RESIZE', b'THESE', b'IMAGES']"
    assert lines[2].startswith("b'H:")
