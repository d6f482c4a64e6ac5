"""Config I/O: YAML + dotted overrides -> typed dataclasses, strictly checked (a leaf module).

    cfg = load(TrainConfig, "configs/tiny.yaml", ["rollout.group_size=8", "grpo.kl_coef=0.01"])

Unknown or ill-typed fields fail with the dotted field name, the file, and what to set instead. A
dataclass may list field names it no longer has in a `RETIRED` class attribute ({name: what to set
instead}), so a renamed field names its new name. rl/config.py declares the dataclasses.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override is wrong; the message names the field and what to do."""


def load(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    """Read a YAML config (or the defaults when `path` is None), apply `key.sub=value` overrides, and
    build `cls` from it."""
    raw = read_yaml(path) if path is not None else {}
    for item in overrides or []:
        apply_override(raw, item)
    try:
        return from_dict(cls, raw, "")
    except ConfigError as exc:
        raise ConfigError(f"{path if path is not None else 'defaults'}: {exc}") from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The top-level mapping of a YAML file; every failure names the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist (see configs/ for examples)")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); save the file as UTF-8") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(raw).__name__}")
    return raw


def preset_overrides(path: str | Path, sections: tuple[str, ...]) -> list[str]:
    """A preset file's values as `section.field=value` overrides; it may only hold `sections` (a preset
    changes one part of an experiment, and the experiment's own YAML says the rest)."""
    raw = read_yaml(path)
    extra = sorted(set(raw) - set(sections))
    if extra:
        raise ConfigError(f"{path}: a preset sets only {list(sections)}, not {extra}")
    return [f"{section}.{key}={json.dumps(value)}" for section in raw for key, value in (raw[section] or {}).items()]


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Apply one `a.b.c=value` (value parsed as YAML, so 3, 1e-6, true, [1,2] work)."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {item!r} must look like section.field=value")
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        if isinstance(node, list):
            node = node[_list_index(part, key)]
            continue
        node = node.setdefault(part, {})
        if not isinstance(node, (dict, list)):
            raise ConfigError(f"override {item!r}: {part} is a value, not a section")
    parsed = yaml.safe_load(value) if value != "" else ""
    if isinstance(node, list):
        node[_list_index(parts[-1], key)] = parsed
    else:
        node[parts[-1]] = parsed


def _list_index(part: str, key: str) -> int:
    if not part.isdigit():
        raise ConfigError(f"override {key!r}: {part!r} indexes a list; use a number, e.g. data.tasks.0.weight=2")
    return int(part)


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain dict of a config (for config.yaml in the run folder and for wandb); tuples become lists."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def from_dict(cls: type, data: Any, where: str) -> Any:
    """Build dataclass `cls` from `data`, checking every field name and type."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'} must be a mapping, got {type(data).__name__} {data!r:.60}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in data if k not in fields]
    if unknown:
        key = unknown[0]
        retired = getattr(cls, "RETIRED", {})
        if key in retired:
            raise ConfigError(f"{_join(where, key)}: {retired[key]}")
        close = difflib.get_close_matches(str(key), fields, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown field {_join(where, key)!r}{hint} Valid fields: {sorted(fields)}")
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], _join(where, name))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"missing required field {_join(where, name)!r}")
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where or 'config'}: {exc}") from None


def _join(where: str, key: Any) -> str:
    return f"{where}.{key}" if where else str(key)


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(arg, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} fits none of {tp}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}={value!r} is not allowed; choose one of {list(args)}")
        return value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be a list, got {value!r:.60}")
        return [_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"{where} must be a list of {len(args)} values, got {value!r:.60}")
        return tuple(_convert(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {value!r:.60}")
        return {k: _convert(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):
        try:  # YAML reads 1e-6 as a string (YAML 1.1 wants 1.0e-6); accept it
            return float(value)
        except ValueError:
            pass
    if isinstance(tp, type) and isinstance(value, tp) and not (tp is int and isinstance(value, bool)):
        return value
    raise ConfigError(f"{where} must be {getattr(tp, '__name__', tp)}, got {type(value).__name__} {value!r:.60}")


def save_config(cfg: Any, path: Path) -> None:
    path.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
