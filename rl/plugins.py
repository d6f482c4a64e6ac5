"""The one plug-in resolver: a built-in name from a table, or an import string (a leaf module).

    resolve("math", BUILTIN_REWARDS, "reward")          # the built-in's import string, imported
    resolve("my_pkg.rewards:score", table, "reward")    # a module attribute
    resolve("path/to/file.py:score", table, "reward")   # a file, relative to the working directory

Rewards (rewards/registry.py), envs (envs/base.py) and tasks (envs/tasks.py) are all found this way.
Actors run in other working directories, so `absolute_import_string` pins a relative file path where
the config was loaded; the task loader applies it to every reward and env it hands to the actors.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

ACCEPTED_FORMS = "a built-in name, 'package.module:{attr}', 'path/to/file.py:{attr}'"


def load_object(spec: str, kind: str = "object") -> Any:
    """Import `package.module:attr` or `path/to/file.py:attr`; errors say which form failed and why."""
    module_name, sep, attr = spec.rpartition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"cannot load {kind} {spec!r}: expected 'package.module:attr' or 'path/to/file.py:attr'")
    if module_name.endswith(".py"):
        path = Path(module_name).expanduser().resolve()
        if not path.is_file():
            raise FileNotFoundError(f"cannot load {kind} {spec!r}: file {path} does not exist")
        unique = f"_user_{path.stem}_{abs(hash(str(path)))}"
        module = sys.modules.get(unique)
        if module is None:
            file_spec = importlib.util.spec_from_file_location(unique, path)
            module = importlib.util.module_from_spec(file_spec)
            sys.modules[unique] = module
            file_spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            raise ValueError(f"cannot load {kind} {spec!r}: module {module_name!r} not importable ({exc}); "
                             "is its package installed or on PYTHONPATH?") from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ValueError(f"cannot load {kind} {spec!r}: module {module_name!r} has no attribute {attr!r}") from None


def resolve(name: str, table: dict[str, str], kind: str, attr: str = "function") -> Any:
    """The one discovery mechanism for rewards, envs and tasks: a built-in name in `table`, or an
    import string. An unknown name lists the built-ins and the accepted forms."""
    if name in table:
        return load_object(table[name], kind)
    if ":" in name:
        return load_object(name, kind)
    raise ValueError(f"unknown {kind} {name!r}. Built-ins: {sorted(table)}; accepted forms: "
                     + ACCEPTED_FORMS.format(attr=attr))


def absolute_import_string(name: str) -> str:
    """`path/file.py:attr` with the file made absolute (resolved from the working directory now);
    any other name is returned as it is."""
    module, sep, attr = name.rpartition(":")
    if sep and module.endswith(".py"):
        return f"{Path(module).expanduser().resolve()}:{attr}"
    return name
