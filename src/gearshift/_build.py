"""Which build of the hot path is running: mypyc-compiled or pure Python.

``pip install .`` compiles the codec, the broker and the server's per-read glue with
mypyc (setup.py); the same modules run as plain Python from a source checkout, with
``GEARSHIFT_PURE_PYTHON=1``, or where no C compiler was found. Behaviour is identical;
the compiled build spends about a third of the pure build's CPU in the codec and
dispatcher (docs/architecture.md, "The hot path"). ``gearshift --version``
and the server's startup log say which.
"""

from __future__ import annotations

import importlib

#: The modules setup.py compiles (keep the two lists together).
HOT_PATH_MODULES = (
    "gearshift.protocol._spec",
    "gearshift.protocol._codec",
    "gearshift.protocol._admin",
    "gearshift.broker._numbers",
    "gearshift.broker._listing",
    "gearshift.broker._timing",
    "gearshift.broker._model",
    "gearshift.broker._jobs",
    "gearshift.broker._packets",
    "gearshift.broker._outcomes",
    "gearshift.broker._config",
    "gearshift.broker._core",
    "gearshift.broker._lifecycle",
    "gearshift.broker._spill",
    "gearshift.broker._deep",
    "gearshift.broker._workers",
    "gearshift.broker._broker",
    "gearshift.broker._admin",
    "gearshift.server._wire",
)


def compiled_modules() -> list[str]:
    """The hot-path modules that were loaded from compiled extensions."""
    compiled = []
    for name in HOT_PATH_MODULES:
        path = getattr(importlib.import_module(name), "__file__", "") or ""
        if not path.endswith(".py"):
            compiled.append(name)
    return compiled


def build_name() -> str:
    """``"mypyc"`` when every hot-path module is compiled, ``"pure Python"`` when none is,
    else ``"partly compiled"`` (a broken install: some extensions failed to build)."""
    count = len(compiled_modules())
    if count == len(HOT_PATH_MODULES):
        return "mypyc"
    return "pure Python" if count == 0 else "partly compiled"
