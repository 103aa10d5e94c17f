"""dajax's single entry point: `python -m dajax.main --config=configs/<stage>.py[:args]`.

    python -m dajax.main --config=configs/teacher.py:demo --workdir=runs/teacher
    python -m dajax.main --config=configs/student.py:demo --workdir=runs/demo
    python -m dajax.main --config=configs/student.py --config.total_steps=1000 --workdir=W

A data source is set on the command line in its `KIND:FIELD=VALUE,...` form (repeat the flag
to mix several; `dajax.data.registry.parse_source`):

    python -m dajax.main --config=configs/teacher.py --workdir=W \
        --config.data.labeled=paired_folders:images=rgb/,depths=depth/,depth_format=png16

`config.stage` picks the function from `_stages()`; each is `run(config, workdir)`. Mistakes a
user can fix (a missing file, a mistyped config path, argument or field, a locked workdir)
end with one `error:` line and exit status 2; `--debug` (or `DAJAX_DEBUG=1`) shows the
traceback instead.
"""

from __future__ import annotations

import ast
import os
import re
import sys
import textwrap
from pathlib import Path

from absl import flags
from ml_collections import config_flags

import configs
from dajax import runtime
from dajax.training.workdir_lock import WorkdirLockedError

# The `configs` package installed beside `dajax`: the shipped config files.
SHIPPED_CONFIGS = Path(configs.__file__).resolve().parent
# Modules of that package that are not a stage's config.
NOT_CONFIGS = ("__init__", "common")

# Stage -> the config file (and `:args`) that runs it, for `--help`.
STAGE_CONFIGS = {
    "pretrain": "configs/pretrain.py",
    "teacher": "configs/teacher.py",
    "pseudo_label": "configs/pseudo_label.py",
    "student": "configs/student.py",
    "demo": "configs/student.py:demo",
    "metric": "configs/metric.py",
    "eval": "configs/eval.py",
    "classify": "configs/classify.py",
}

# Errors that mean bad input (files, paths, values), not a bug: one line without --debug.
USER_ERRORS = (OSError, ValueError, FloatingPointError, WorkdirLockedError)

USAGE = "usage: python -m dajax.main --config=configs/<stage>.py[:args] --workdir=DIR"
SOURCE_EXAMPLE = "paired_folders:images=DIR,depths=DIR,depth_format=png16,depth_scale=1000"


class UsageError(ValueError):
    """A command-line mistake (flags, config path, config field)."""


def _stages():
    from dajax.eval import evaluate
    from dajax.projects.classify import study
    from dajax.training import demo, metric, pretrain, pseudo_label, student, teacher

    return {
        "eval": evaluate.run,
        "classify": study.run,
        "pretrain": pretrain.run,
        "teacher": teacher.run,
        "metric": metric.run,
        "pseudo_label": pseudo_label.run,
        "student": student.run,
        "demo": demo.run,
    }


def _config_arg(argv: list[str]) -> str | None:
    """The value of `--config=...` (or `--config ...`) in `argv`, if any."""
    for i, arg in enumerate(argv):
        if arg.startswith(("--config=", "-config=")):
            return arg.split("=", 1)[1]
        if arg in ("--config", "-config") and i + 1 < len(argv):
            return argv[i + 1]
    return None


def config_file(name: str) -> Path:
    """The config file `name` means: a file at that path (from the working directory), else
    the shipped config of that repository-relative path (`configs/student.py`) or name
    (`student`, `student.py`), whatever the working directory.

    Raises:
      UsageError: one line naming `name` and the shipped configs.
    """
    path = Path(name)
    if path.is_file():
        return path
    candidates = []
    if not path.is_absolute() and path.parent == Path(SHIPPED_CONFIGS.name):
        candidates.append(SHIPPED_CONFIGS / path.name)
    if len(path.parts) == 1:
        candidates.append(SHIPPED_CONFIGS / (name if name.endswith(".py") else f"{name}.py"))
    for candidate in candidates:
        if candidate.is_file() and candidate.stem not in NOT_CONFIGS:
            return candidate
    names = sorted(p.stem for p in SHIPPED_CONFIGS.glob("*.py") if p.stem not in NOT_CONFIGS)
    raise UsageError(
        f"--config: {name}: no such config file (the shipped configs, by name from any folder: "
        f"{', '.join(names)})"
    )


def resolve_config_arg(argv: list[str]) -> list[str]:
    """`argv` with the file of `--config=FILE[:ARGS]` replaced by `config_file(FILE)`."""
    out = list(argv)
    for i, arg in enumerate(out):
        flag, value = None, None
        if arg.startswith(("--config=", "-config=")):
            flag, value = arg.split("=", 1)
            out[i] = None
        elif arg in ("--config", "-config") and i + 1 < len(out):
            flag, value = arg, out[i + 1]
            out[i], out[i + 1] = None, None
        if flag is None:
            continue
        name, colon, args = value.partition(":")
        out[i] = f"--config={config_file(name)}{colon}{args}"
        return [a for a in out if a is not None]
    return out


def _first_docstring_line(path: Path) -> str:
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    return doc.split("\n\n")[0].replace("\n", " ")


def help_text() -> str:
    """`--help`: usage, the stages with their configs, and every option with its default."""
    lines = [USAGE, "", "Stages (config.stage; the config file's docstring documents its :args):"]
    for stage, config in STAGE_CONFIGS.items():
        path = config_file(config.split(":")[0])
        summary = _first_docstring_line(path) if path.is_file() else ""
        lines.append(f"  {stage:<13}--config={config}")
        lines.append(
            textwrap.fill(summary, 98, initial_indent=" " * 15, subsequent_indent=" " * 15)
        )
    lines += [
        "",
        "Options:",
        "  --config=FILE[:ARGS]    the experiment config (required; no default). ARGS are the",
        "                          file's `get_config` arguments, e.g. `:demo` or",
        "                          `:variant=vitl,steps=1000`; FILE may lie anywhere.",
        "  --config.FIELD=VALUE    override one config field (default: the config's value).",
        "  --config.FIELD=KIND:F=V,...  a data source field, e.g. --config.data.labeled=",
        "                          paired_folders:images=DIR,depths=DIR,depth_format=png16;",
        "                          repeat to mix sources (weight=W each); docs/data.md.",
        "  --workdir=DIR           where checkpoints, logs and exports go (required; no default).",
        "  --debug                 full tracebacks instead of one-line errors (default: off;",
        "                          DAJAX_DEBUG=1 does the same).",
        "  -h, --help              this text; with --config=FILE, the config's docstring and",
        "                          every field with its default value.",
        "",
        f"The shipped config files live in {SHIPPED_CONFIGS}.",
    ]
    return "\n".join(lines)


def config_help(config_arg: str, config) -> str:
    """`--config=FILE --help`: the config file's docstring, then each field and its value."""
    path = Path(config_arg.split(":", 1)[0])
    doc = ast.get_docstring(ast.parse(path.read_text())) or "(no docstring)"
    fields = [f"  {name} = {value!r}" for name, value in _flatten(config.to_dict())]
    return f"{path}\n\n{doc}\n\nFields (override with --config.FIELD=VALUE):\n" + "\n".join(fields)


def _flatten(tree: dict, prefix: str = "") -> list[tuple[str, object]]:
    out = []
    for key, value in tree.items():
        if isinstance(value, dict):
            out += _flatten(value, f"{prefix}{key}.")
        else:
            out.append((f"{prefix}{key}", _plain(value)))
    return out


def _plain(value):
    """ConfigDicts inside tuples (e.g. `data.labeled`) as plain dicts, for printing."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, tuple | list):
        return type(value)(_plain(v) for v in value)
    return value


def parse_flags(argv: list[str]):
    """Parses `argv` (program name first); returns (config or None, workdir or None).

    Raises UsageError with one line for a missing or failing config file, an unknown flag or
    config field, or a value of the wrong type.
    """
    argv = resolve_config_arg(argv)
    config_arg = _config_arg(argv)
    _refuse_indexed_fields(argv)
    argv, sources = _split_source_overrides(argv)
    values = flags.FlagValues()  # fresh per call: main() may run more than once in a process
    config = config_flags.DEFINE_config_file(
        "config", None, "experiment config file[:args]", values, lock_config=True, sys_argv=argv
    )
    workdir = flags.DEFINE_string("workdir", None, "output folder", flag_values=values)
    flags.DEFINE_bool("debug", False, "full tracebacks", flag_values=values)
    try:
        extra = values(argv)[1:]
        if config_arg is not None:
            config.value.get("stage")  # a config that failed to load raises here
    except (AttributeError, KeyError) as err:
        raise UsageError(_unknown_field(argv, err)) from err
    except flags.Error as err:  # config_flags embeds a config's traceback in the message
        if "Traceback" in str(err):
            raise UsageError(f"--config={config_arg}: {_last_line(err)}") from err
        raise UsageError(_one_line(err)) from err
    except Exception as err:  # a config file may raise anything while it is built
        raise UsageError(f"--config={config_arg}: {_last_line(err)}") from err
    if extra:
        raise UsageError(f"unexpected arguments {extra}; {USAGE}")
    if sources and config.value is not None:
        apply_source_overrides(config.value, sources)
    return config.value, workdir.value


def _override(arg: str) -> tuple[str, str] | None:
    """(field path, value) of a `--config.FIELD=VALUE` argument, else None."""
    if not (arg.startswith(("--config.", "-config.")) and "=" in arg):
        return None
    name, value = arg.split("=", 1)
    return name.split("config.", 1)[1], value


def _refuse_indexed_fields(argv: list[str]) -> None:
    """Refuses `--config.data.labeled.0.0.FIELD=...` (a path through a tuple, which
    ml_collections cannot override) in one line naming the tuple and the way to set it."""
    for field, _ in filter(None, map(_override, argv)):
        parts = field.split(".")
        index = next((i for i, p in enumerate(parts) if p.isdigit()), None)
        if index is not None:
            outer = ".".join(parts[:index])
            example = (
                f", e.g. --config.{outer}={SOURCE_EXAMPLE} (docs/data.md)"
                if outer.endswith("labeled")
                else ""
            )
            raise UsageError(
                f"--config.{field}: config.{outer} is a tuple and cannot be indexed; set it "
                f"whole{example}"
            )


def _split_source_overrides(argv: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """`argv` without its data-source overrides (`--config.FIELD=KIND` or `KIND:...` with a
    registered KIND), and those as (FIELD, value) in order."""
    from dajax.data.registry import source_kind

    rest, sources = [], []
    for arg in argv:
        found = _override(arg)
        if found is not None and source_kind(found[1]):
            sources.append(found)
        else:
            rest.append(arg)
    return rest, sources


def apply_source_overrides(config, sources: list[tuple[str, str]]) -> None:
    """Sets each data-source field of `config` from its command-line forms (`sources`,
    (field path, `KIND:FIELD=VALUE,...`)): a mixture ((spec, weight), ...) takes every form
    given for it, in order; a single spec (a ConfigDict with `kind`) takes one; a text field
    whose value merely reads like a source (e.g. a dataset named `kitti`) takes the text.

    Raises:
      UsageError: one line naming the flag: no such field, not a source field, or a bad
        source (`registry.parse_source`).
    """
    from dajax.data.registry import parse_source

    by_field: dict[str, list[str]] = {}
    for field, value in sources:
        by_field.setdefault(field, []).append(value)
    for field, values in by_field.items():
        where = f"--config.{field}"
        *outer, last = field.split(".")
        node = config
        for name in outer:
            node = node.get(name) if hasattr(node, "get") else None
        if not hasattr(node, "get") or last not in node:
            raise UsageError(f"{where}: no such config field")
        current = node[last]
        try:
            if isinstance(current, tuple) and all(
                isinstance(e, tuple) and len(e) == 2 for e in current
            ):
                node[last] = tuple(parse_source(v, where, weighted=True) for v in values)
            elif hasattr(current, "get") and "kind" in current:
                if len(values) > 1:
                    raise ValueError(f"{where}: takes one source, got {len(values)}")
                node[last] = parse_source(values[0], where, weighted=False)[0]
            elif isinstance(current, str) and len(values) == 1:
                node[last] = values[0]
            else:
                raise ValueError(f"{where}: not a data source field")
        except ValueError as err:
            raise UsageError(str(err)) from None


def _unknown_field(argv: list[str], err: BaseException) -> str:
    """'--config.a.bx: no such config field (did you mean "b"?)' from ml_collections' error."""
    text = str(err.args[0] if err.args else err)
    key = re.search(r"'(\w+)'", text)
    hint = re.search(r'Did you mean "(\w+)"', text)
    overrides = [a.split("=", 1)[0] for a in argv if a.startswith(("--config.", "-config."))]
    culprit = next(
        (o for o in overrides if key and key.group(1) in o.split(".")[1:]),
        " ".join(overrides) or "--config",
    )
    suggestion = f' (did you mean "{hint.group(1)}"?)' if hint else ""
    return f"{culprit}: no such config field{suggestion}"


def _last_line(err: BaseException) -> str:
    """One line for an error raised while a config loaded: its innermost message's last line
    (config_flags embeds the config's traceback in its message)."""
    while err.__cause__ is not None:
        err = err.__cause__
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[-1] if lines else type(err).__name__


def _one_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def main(argv: list[str] | None = None) -> int:
    """Runs the stage the config names; returns the exit status (2 for a user error)."""
    argv = [sys.argv[0], *(sys.argv[1:] if argv is None else argv)]
    debug = os.environ.get("DAJAX_DEBUG") == "1" or any(
        a in ("--debug", "-debug", "--debug=true") for a in argv
    )
    wants_help = any(a in ("-h", "--help", "-help", "--helpfull") for a in argv)
    argv = [a for a in argv if a not in ("-h", "--help", "-help", "--helpfull")]
    try:
        argv = resolve_config_arg(argv)
        config, workdir = parse_flags(argv)
        if wants_help:
            config_arg = _config_arg(argv)
            print(config_help(config_arg, config) if config_arg else help_text())
            return 0
        if config is None or workdir is None:
            raise UsageError(USAGE)
        stages = _stages()
        if config.stage not in stages:
            raise UsageError(f"unknown stage {config.stage!r}; expected one of {sorted(stages)}")
        runtime.initialize()
        with runtime.compile_report(f"stage {config.stage}, all in all"):
            stages[config.stage](config, workdir)
    except USER_ERRORS as err:
        if debug:
            raise
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
