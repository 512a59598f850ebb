"""The build under test is the one CI meant to test.

scripts/test.sh runs the suite twice: against the installed package, whose codec and
broker ``pip install .`` compiles with mypyc, and (the core and server tests) against the
pure-Python sources in src/. It names the build it expects in GEARSHIFT_EXPECT_BUILD, so
a silent fallback (no compiler, a missing extension) fails here instead of passing as
the wrong build.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from gearshift._build import HOT_PATH_MODULES, build_name, compiled_modules

EXPECTED = os.environ.get("GEARSHIFT_EXPECT_BUILD")


@pytest.mark.skipif(not EXPECTED, reason="GEARSHIFT_EXPECT_BUILD not set (scripts/test.sh sets it)")
def test_running_the_expected_build() -> None:
    assert build_name() == EXPECTED, compiled_modules()


def test_build_name_matches_the_loaded_modules() -> None:
    compiled = compiled_modules()
    assert set(compiled) <= set(HOT_PATH_MODULES)
    name = build_name()
    if name == "mypyc":
        assert len(compiled) == len(HOT_PATH_MODULES)
        import gearshift.broker._broker as broker_module

        assert not broker_module.__file__.endswith(".py")
    else:
        assert name == "pure Python", compiled  # "partly compiled" is a broken install


def test_server_processes_run_the_same_build() -> None:
    """`gearshift --version` (what test servers run as) reports this process's build."""
    out = subprocess.run([sys.executable, "-m", "gearshift", "--version"],
                         capture_output=True, text=True, check=True).stdout
    assert f"({build_name()} dispatch)" in out


def test_setup_compiles_exactly_the_hot_path_modules() -> None:
    """setup.py's COMPILED_MODULES (paths) and _build.HOT_PATH_MODULES (names) are one list
    written twice (setup.py cannot import the package it builds); they must agree."""
    import ast
    from pathlib import Path

    setup = Path(__file__).resolve().parent.parent / "setup.py"
    tree = ast.parse(setup.read_text())
    paths = next(
        ast.literal_eval(node.value) for node in tree.body
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "COMPILED_MODULES" for t in node.targets)
    )
    names = [p.removeprefix("src/").removesuffix(".py").replace("/", ".") for p in paths]
    assert names == list(HOT_PATH_MODULES)
