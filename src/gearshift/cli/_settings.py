"""gearshift's own configuration for ``serve``: a TOML file and ``GEARSHIFT_*`` variables.

Every long option of ``gearshift serve`` is also a key of the ``--config`` TOML file (named
as the option, without the dashes: ``max-queue``, ``keep-results``, ``store``...) and an
environment variable (``GEARSHIFT_`` + the key in capitals, ``-`` as ``_``:
``GEARSHIFT_PORT``, ``GEARSHIFT_DATA_DIR``). The keys are read off the argparse parser,
so an option added to ``serve`` is configurable in both places without touching this
module. Precedence, highest first: the command line, gearmand's ``--config-file`` (which
gearmand treats as more command line), the environment, the TOML file, the defaults.

Values go through the option's own argparse ``type`` and ``choices``, so a file accepts
exactly what the command line does (``keep-results = "1h"`` or ``3600``), and a bad
value fails at startup naming the key and the file's line. Parsed values that are not
plain TOML types (``--retry``'s, ``--max-queue``'s records) are printed back by
``--print-config`` through their ``spec`` property: their command-line form.
"""

from __future__ import annotations

import argparse
import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gearshift.cli._gearmand_options import ConfigError, read_config_file
from gearshift.store._open import redact

#: Options that steer the configuration itself, or exit at once: not settings.
META_KEYS = frozenset({"help", "version", "config", "print-config", "config-file"})
#: Older variables read for a key when its GEARSHIFT_* one is unset (gearmand's names).
ENV_ALIASES: dict[str, tuple[str, ...]] = {"port": ("GEARMAND_PORT",)}
#: The variable naming the TOML file when ``--config`` is not given.
CONFIG_ENV = "GEARSHIFT_CONFIG"
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})
#: Shown instead of secrets by --print-config.
HIDDEN = "***"  # as store URLs are redacted in logs

_UNSET: Any = object()


def add_config_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("configuration (see docs/operations.md, Configuration)")
    g.add_argument("--config", default=None, metavar="FILE",
                   help="read settings from this TOML file (keys are the long options "
                        f"without '--'; default ${CONFIG_ENV}); GEARSHIFT_<KEY> variables "
                        "override it, the command line overrides both")
    g.add_argument("--print-config", action="store_true",
                   help="print the effective settings as TOML, each with where it came "
                        "from (flag, env, file:line, default), and exit")


def settings(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Key (the first long option without ``--``) -> its argparse action, in help order."""
    found: dict[str, argparse.Action] = {}
    for action in parser._actions:
        longs = [s for s in action.option_strings if s.startswith("--")]
        if not longs or action.dest == argparse.SUPPRESS:
            continue
        key = longs[0][2:]
        if key not in META_KEYS:
            found[key] = action
    return found


def env_names(key: str) -> tuple[str, ...]:
    """The variables that set ``key``, the first one set wins."""
    return ("GEARSHIFT_" + key.upper().replace("-", "_"), *ENV_ALIASES.get(key, ()))


@dataclass(frozen=True)
class Raw:
    """A setting's text before conversion: a flag's bool, an option's text, or a
    repeatable option's list of texts; ``where`` names its origin for messages."""

    value: bool | str | list[str]
    where: str


def _is_flag(action: argparse.Action) -> bool:
    return action.nargs == 0


def _is_list(action: argparse.Action) -> bool:
    return isinstance(action, argparse._AppendAction)


def _scalar_text(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    return str(value)


def _toml_raw(key: str, action: argparse.Action, value: object, where: str) -> Raw:
    """A TOML value checked for shape (types are checked by conversion)."""
    if _is_flag(action):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {key}: expected true or false, not {value!r}")
        return Raw(value, where)
    if _is_list(action):
        items = value if isinstance(value, list) else [value]
        texts = [_scalar_text(item) for item in items]
        if any(t is None for t in texts):
            raise ConfigError(f"{where}: {key}: expected a string or a list of strings, "
                              f"not {value!r}")
        return Raw([t for t in texts if t is not None], where)
    text = _scalar_text(value)
    if text is None:
        raise ConfigError(f"{where}: {key}: expected a string or a number, not {value!r}")
    return Raw(text, where)


def _key_lines(text: str) -> dict[str, int]:
    """Top-level ``key = ...`` lines of a TOML text (first occurrence; for messages)."""
    lines: dict[str, int] = {}
    pattern = re.compile(r"""\s*(?:"([^"]+)"|'([^']+)'|([A-Za-z0-9_-]+))\s*=""")
    for number, line in enumerate(text.splitlines(), 1):
        match = pattern.match(line)
        if match:
            lines.setdefault(next(g for g in match.groups() if g), number)
    return lines


def read_toml(path: str, known: Mapping[str, argparse.Action]) -> dict[str, Raw]:
    """The settings of a TOML file; ConfigError naming the file (and line) otherwise."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--config {path}: cannot read it: {exc}") from None
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:  # its message ends "(at line L, column C)"
        found = re.search(r"line (\d+)", str(exc))
        line = found.group(1) if found else text.count("\n") + 1  # "at end of document"
        raise ConfigError(f"{path}:{line}: not valid TOML: {exc}") from None
    lines = _key_lines(text)
    raw: dict[str, Raw] = {}
    for key, value in table.items():
        where = f"{path}:{lines.get(key, '?')}"
        if key not in known:
            hint = " (a setting of its own, not a file key)" if key in META_KEYS else ""
            raise ConfigError(f"{where}: unknown key {key!r}{hint}; the keys are serve's "
                              "long options without '--' (gearshift serve --help)")
        raw[key] = _toml_raw(key, known[key], value, where)
    return raw


def read_env(environ: Mapping[str, str], known: Mapping[str, argparse.Action]) -> dict[str, Raw]:
    """The settings given as ``GEARSHIFT_*`` (or alias) variables."""
    raw: dict[str, Raw] = {}
    for key, action in known.items():
        # An empty variable counts as unset (as GEARMAND_PORT always did).
        name = next((n for n in env_names(key) if environ.get(n)), None)
        if name is None:
            continue
        text, where = environ[name], f"env {name}"
        if _is_flag(action):
            word = text.strip().lower()
            if word not in TRUE_WORDS | FALSE_WORDS:
                raise ConfigError(f"{where}: expected 1/0, true/false, yes/no or on/off, "
                                  f"not {text!r}")
            raw[key] = Raw(word in TRUE_WORDS, where)
        else:
            raw[key] = Raw(text.split() if _is_list(action) else text, where)
    return raw


def _convert_one(key: str, action: argparse.Action, text: str, where: str) -> Any:
    value: Any = text
    if action.type is not None:
        convert: Any = action.type
        try:
            value = convert(text)
        except argparse.ArgumentTypeError as exc:
            raise ConfigError(f"{where}: {key}: {exc}") from None
        except (TypeError, ValueError):
            name = getattr(convert, "__name__", "value")
            raise ConfigError(f"{where}: {key}: {text!r} is not a valid {name}") from None
    if action.choices is not None and value not in action.choices:
        choices = ", ".join(map(str, action.choices))
        raise ConfigError(f"{where}: {key}: {text!r} is not one of {choices}")
    return value


def convert(key: str, action: argparse.Action, raw: Raw) -> Any:
    """The value argparse would have stored for ``raw``."""
    if _is_flag(action):
        return action.const if raw.value else action.default
    if isinstance(raw.value, list):
        return [_convert_one(key, action, t, raw.where) for t in raw.value]
    return _convert_one(key, action, str(raw.value), raw.where)


def _given(parser: argparse.ArgumentParser, fill: Any) -> argparse.Namespace:
    """A namespace in which every setting holds a marker, so parsing into it shows which
    ones were given (repeatable options start as None: argparse appends to them)."""
    namespace = argparse.Namespace()
    for action in parser._actions:
        if action.dest != argparse.SUPPRESS:
            setattr(namespace, action.dest, None if _is_list(action) else fill)
    return namespace


def _explicit(namespace: argparse.Namespace, known: Mapping[str, argparse.Action]) -> set[str]:
    return {key for key, action in known.items()
            if getattr(namespace, action.dest) not in (_UNSET, None)}


def resolve(parser: argparse.ArgumentParser, args: argparse.Namespace, argv: list[str],
            environ: Mapping[str, str]) -> tuple[argparse.Namespace, dict[str, str]]:
    """``args`` with every setting taken from its highest source; and key -> source.

    ``argv`` is the command line after ``serve`` (parsed again to see which options it
    actually gave, as argparse fills in defaults). Raises ConfigError for bad files,
    variables or values.
    """
    known = settings(parser)
    cli = parser.parse_args(argv, _given(parser, _UNSET))
    from_cli = _explicit(cli, known)
    gearmand_where: dict[str, str] = {}
    from_gearmand: set[str] = set()
    gearmand_ns = argparse.Namespace()
    if args.config_file:
        gearmand_ns = read_config_file(parser, args.config_file, _given(parser, _UNSET),
                                       where=gearmand_where)
        from_gearmand = _explicit(gearmand_ns, known)
    config_path = args.config or environ.get(CONFIG_ENV)
    from_toml = read_toml(config_path, known) if config_path else {}
    from_env = read_env(environ, known)
    merged = argparse.Namespace(**vars(args))
    sources: dict[str, str] = {}
    for key, action in known.items():
        if key in from_cli:
            value, source = getattr(args, action.dest), "flag"
        elif key in from_gearmand:
            value = getattr(gearmand_ns, action.dest)
            source = gearmand_where.get(action.dest, args.config_file)
        elif key in from_env or key in from_toml:
            raw = from_env.get(key) or from_toml[key]
            value, source = convert(key, action, raw), raw.where
        else:
            default = action.default
            value, source = (list(default) if isinstance(default, list) else default,
                             "default")
        setattr(merged, action.dest, value)
        sources[key] = source
    merged.config = config_path
    return merged, sources


# ------------------------------------------------------------------ --print-config

def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    text = getattr(value, "spec", value)
    return json.dumps(str(text), ensure_ascii=False)  # a JSON string is a TOML string


def _shown(key: str, value: Any) -> Any:
    """``value`` with passwords replaced (in password options and in URLs)."""
    if "password" in key and value:
        return HIDDEN
    if isinstance(value, str):
        return redact(value)
    return value


def render(parser: argparse.ArgumentParser, args: argparse.Namespace,
           sources: Mapping[str, str], computed: Mapping[str, Any]) -> str:
    """The effective settings as a TOML file, each line commented with its source.

    A setting that is unset (None) is printed as a comment, with the value the server
    derives from it when there is one (``computed``: e.g. the default data directory),
    so the output can be saved and used as a config file as it stands.
    """
    out = ["# gearshift serve --print-config: effective settings, highest source first:",
           "# command line (flag) > gearmand --config-file > environment > --config file "
           "> default"]
    for key, action in settings(parser).items():
        value = _shown(key, getattr(args, action.dest))
        source = sources.get(key, "default")
        if value is None:
            derived = computed.get(action.dest)
            line = f"# {key} = {_toml_value(_shown(key, derived))}" if derived is not None \
                else f"# {key} = (not set)"
            source += ", derived" if derived is not None else ""
        else:
            line = f"{key} = {_toml_value(value)}"
        out.append(f"{line:<44} # {source}")
    return "\n".join(out) + "\n"

