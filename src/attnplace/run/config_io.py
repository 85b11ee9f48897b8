"""Reading configs, whatever their schema: YAML files, `key=value` overrides, and typed dataclasses built from
nested dicts, with every mistake reported as one line naming the dotted key."""

import dataclasses
import json
import types
import typing
from pathlib import Path

import yaml

from ..errors import InvalidOption, UserError


def from_dict(cls, data, prefix: str = ""):
    """Build dataclass `cls` from a nested dict, checking keys and types; errors name the dotted key."""
    if not isinstance(data, dict):
        raise UserError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            raise UserError(f"unknown key {prefix + str(key)!r}; valid: {', '.join(prefix + n for n in names)}")
    values = {k: _convert(hints[k], v, prefix + k) for k, v in data.items()}
    try:
        return cls(**values)
    except InvalidOption as err:  # checked where the option is defined: said here of the dotted key
        raise UserError(err.in_config(prefix)) from None
    except UserError as err:  # a message that begins with the key it names
        raise UserError(f"{prefix}{err}") from None


def _convert(tp, value, key: str):
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value if value is not None else {}, key + ".")
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(inner, value, key)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise UserError(f"{key}: expected a list, got {value!r}")
        return tuple(_convert(args[0], v, key) for v in value)
    if tp is float and isinstance(value, str):
        value = _yaml11_float(value)
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
        dict: isinstance(value, dict),
    }[tp]
    if not ok:
        raise UserError(f"{key}: expected {tp.__name__}, got {value!r}")
    return float(value) if tp is float else value


def _yaml11_float(text: str):
    """YAML 1.1 (PyYAML) reads `1e-3` as a string: accept such exponent forms for float fields."""
    try:
        return float(text)
    except ValueError:
        return text


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file {str(path)!r} not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise UserError(f"{path}{where}: not valid YAML ({getattr(err, 'problem', err)})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of config keys at the top level")
    return data


def parse_override(text: str) -> tuple[str, object]:
    """`optim.lr=0.05` -> ("optim.lr", 0.05); values are YAML scalars or lists (`model.stages=[2,3]`)."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise UserError(f"override {text!r} is not key=value (e.g. model.pattern=p4)")
    try:
        return key.strip(), yaml.safe_load(raw)
    except yaml.YAMLError:
        raise UserError(f"override {key}: value {raw!r} is not valid YAML") from None


def set_dotted(data: dict, key: str, value) -> None:
    *parents, leaf = key.split(".")
    node = data
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise UserError(f"override {key}: {part!r} is not a section")
        node = child
    node[leaf] = value


def merge(base: dict, overrides: dict[str, object]) -> dict:
    data = json.loads(json.dumps(base))  # deep copy of plain data
    for key, value in overrides.items():
        set_dotted(data, key, value)
    return data
