"""Build hook: compile the hot path (codec, broker, per-read server glue) with mypyc.

Everything else about the package is in pyproject.toml. The compiled modules are the same
source as the pure-Python ones (mypyc compiles the type-annotated code as written), and
the pure-Python package is always complete: the build falls back to it when
``GEARSHIFT_PURE_PYTHON=1`` is set, for editable installs (``pip install -e .``), when
mypyc is missing, or when no C compiler works (the extensions are marked optional).
See docs/architecture.md ("The hot path") for why these modules and what it measured.
"""

from __future__ import annotations

import os
import sys

from setuptools import setup

#: The modules on the per-packet path: the codec and the broker (no I/O), and the
#: server's per-read glue (socket callbacks, output flushing).
COMPILED_MODULES = [
    "src/gearshift/protocol/_spec.py",
    "src/gearshift/protocol/_codec.py",
    "src/gearshift/protocol/_admin.py",
    "src/gearshift/broker/_numbers.py",
    "src/gearshift/broker/_listing.py",
    "src/gearshift/broker/_timing.py",
    "src/gearshift/broker/_model.py",
    "src/gearshift/broker/_jobs.py",
    "src/gearshift/broker/_packets.py",
    "src/gearshift/broker/_outcomes.py",
    "src/gearshift/broker/_config.py",
    "src/gearshift/broker/_core.py",
    "src/gearshift/broker/_lifecycle.py",
    "src/gearshift/broker/_spill.py",
    "src/gearshift/broker/_deep.py",
    "src/gearshift/broker/_workers.py",
    "src/gearshift/broker/_broker.py",
    "src/gearshift/broker/_admin.py",
    "src/gearshift/server/_wire.py",
]


def compiled_extensions() -> list[object]:
    if os.environ.get("GEARSHIFT_PURE_PYTHON", "") not in ("", "0"):
        return []
    if "editable_wheel" in sys.argv:
        # `pip install -e .` would build the extensions in place, next to the sources,
        # where they shadow every later edit of the .py files: a working copy stays pure.
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        print("gearshift: mypyc not available; installing the pure-Python build",
              file=sys.stderr)
        return []
    # The compiled modules import others that are not compiled (the server package pulls
    # in the optional HTTP listener, whose aiohttp may not be installed in pip's isolated
    # build environment): type-check those silently, so only errors in the compiled
    # modules themselves (which `mypy --strict` in CI checks anyway) can stop the build.
    extensions = mypycify(["--follow-imports=silent", *COMPILED_MODULES], opt_level="3",
                          debug_level="0")
    for ext in extensions:
        ext.optional = True  # no working compiler: keep the pure-Python modules
    return list(extensions)


setup(ext_modules=compiled_extensions())
