"""A task's typed options: a frozen dataclass with defaults, read strictly from its config map.

Supported field types: ``str``, ``int``, ``float`` (an int is accepted), ``bool``, ``list[T]`` and
``tuple[T, ...]`` of those, ``dict`` (a table of plain values), and ``T | None`` of any of them.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from tasks.errors import OptionsError, TaskDefinitionError

OptionsT = TypeVar("OptionsT", bound="TaskOptions")
Convert = Callable[[str, object], object]
_CONVERTERS: dict[type[TaskOptions], dict[str, Convert]] = {}  # read once per class


@dataclass(frozen=True)
class TaskOptions:
    """Base of every task's ``Options``; subclass it as a frozen dataclass whose fields all
    have defaults. Range checks go in ``__post_init__``, raising ``OptionsError`` (see
    ``require_option``).
    """


def require_option(condition: bool, name: str, expected: str) -> None:
    """For ``__post_init__`` range checks: OptionsError naming ``options.<name>``."""
    if not condition:
        raise OptionsError(f"options.{name}", f"expected {expected}")


def read_options(
    options_cls: type[OptionsT], config: Mapping[str, object], *, task: str
) -> OptionsT:
    """``options_cls`` built from ``config``; OptionsError on an unknown key or a wrong type."""
    converters = option_converters(options_cls)
    if not isinstance(config, Mapping):
        raise OptionsError("options", f"expected a table, not {type(config).__name__}", task=task)
    values: dict[str, object] = {}
    for name, value in config.items():
        if not isinstance(name, str) or name not in converters:
            known = ", ".join(sorted(converters)) or "none: this task takes no options"
            raise OptionsError(f"options.{name}", f"unknown option; known: {known}", task=task)
        try:
            values[name] = converters[name](f"options.{name}", value)
        except OptionsError as error:
            raise OptionsError(error.key, error.problem, task=task) from None
    try:
        return options_cls(**values)
    except OptionsError as error:
        raise OptionsError(error.key, error.problem, task=task) from None


def option_converters(options_cls: type[TaskOptions]) -> dict[str, Convert]:
    """One converter per field; TaskDefinitionError if the class cannot be an ``Options``."""
    converters = _CONVERTERS.get(options_cls)
    if converters is None:
        converters = _CONVERTERS[options_cls] = _converters(options_cls)
    return converters


def _converters(options_cls: type[TaskOptions]) -> dict[str, Convert]:
    name = options_cls.__qualname__
    if not isinstance(options_cls, type) or not issubclass(options_cls, TaskOptions):
        raise TaskDefinitionError(f"Options {options_cls!r} is not a subclass of TaskOptions")
    if not dataclasses.is_dataclass(options_cls) or "__dataclass_fields__" not in vars(options_cls):
        raise TaskDefinitionError(f"Options {name} is not a dataclass (decorate it)")
    # Frozen follows: dataclasses refuse a non-frozen subclass of the frozen TaskOptions.
    try:
        hints = typing.get_type_hints(options_cls)
    except Exception as error:
        raise TaskDefinitionError(
            f"Options {name}: cannot resolve its annotations: {error}"
        ) from None
    converters: dict[str, Convert] = {}
    for field in dataclasses.fields(options_cls):
        key = f"Options {name}.{field.name}"
        if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise TaskDefinitionError(f"{key} has no default: every option needs one")
        convert = _converter(key, hints[field.name])
        default = (
            field.default
            if field.default_factory is dataclasses.MISSING
            else field.default_factory()
        )
        try:
            convert(f"options.{field.name}", default)
        except OptionsError as error:
            raise TaskDefinitionError(f"{key} default {default!r}: {error.problem}") from None
        converters[field.name] = convert
    return converters


def _converter(key: str, annotation: object) -> Convert:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (types.UnionType, typing.Union) and type(None) in args:
        rest = [arg for arg in args if arg is not type(None)]
        if len(rest) == 1:
            return _optional(_converter(key, rest[0]))
    if annotation in _SCALARS:
        return _SCALARS[annotation]
    if annotation is dict or origin in (dict, Mapping):
        return _table
    if origin is list and len(args) == 1 and args[0] in _SCALARS:
        return _sequence(_SCALARS[args[0]], list, _NAMES[args[0]])
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis and args[0] in _SCALARS:
        return _sequence(_SCALARS[args[0]], tuple, _NAMES[args[0]])
    raise TaskDefinitionError(
        f"{key}: type {annotation!r} is not supported; use str, int, float, bool, "
        "list[T] or tuple[T, ...] of those, dict, or T | None"
    )


def _problem(key: str, expected: str, value: object) -> OptionsError:
    return OptionsError(key, f"expected {expected}, not {type(value).__name__}")


def _str(key: str, value: object) -> object:
    if not isinstance(value, str):
        raise _problem(key, "a string", value)
    return value


def _bool(key: str, value: object) -> object:
    if not isinstance(value, bool):
        raise _problem(key, "true or false", value)
    return value


def _int(key: str, value: object) -> object:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _problem(key, "an integer", value)
    return value


def _float(key: str, value: object) -> object:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise _problem(key, "a number", value)
    return float(value)


_SCALARS: dict[object, Convert] = {str: _str, bool: _bool, int: _int, float: _float}
_NAMES = {str: "strings", bool: "booleans", int: "integers", float: "numbers"}


def _optional(convert: Convert) -> Convert:
    def optional(key: str, value: object) -> object:
        return None if value is None else convert(key, value)

    return optional


def _sequence(
    convert: Convert, kind: type[list[Any]] | type[tuple[Any, ...]], what: str
) -> Convert:
    def sequence(key: str, value: object) -> object:
        if not isinstance(value, list | tuple):
            raise _problem(key, f"a list of {what}", value)
        return kind(convert(f"{key}[{index}]", item) for index, item in enumerate(value))

    return sequence


def _table(key: str, value: object) -> object:
    if not isinstance(value, Mapping):
        raise _problem(key, "a table", value)
    return _plain(key, value)


def _plain(key: str, value: object) -> object:
    """Tables as dicts, arrays as lists (TOML overrides arrive as mapping proxies and tuples)."""
    if isinstance(value, Mapping):
        plain: dict[str, object] = {}
        for name, item in value.items():
            if not isinstance(name, str):
                raise OptionsError(key, f"table keys are strings, not {type(name).__name__}")
            plain[name] = _plain(f"{key}.{name}", item)
        return plain
    if isinstance(value, list | tuple):
        return [_plain(f"{key}[{index}]", item) for index, item in enumerate(value)]
    return value


# ------------------------------------------------------------------ the schema, as text


def option_schema(options_cls: type[TaskOptions]) -> dict[str, dict[str, object]]:
    """Each option's type as text (``int``, ``list[str]``, ``float | None``...) and its default,
    as plain values: what an executor announces of its classes (``check_option`` reads the type
    back). TaskDefinitionError if the class cannot be an ``Options``."""
    option_converters(options_cls)  # the class is checked first
    hints = typing.get_type_hints(options_cls)
    schema: dict[str, dict[str, object]] = {}
    for field in dataclasses.fields(options_cls):
        default = (
            field.default
            if field.default_factory is dataclasses.MISSING
            else field.default_factory()
        )
        schema[field.name] = {
            "type": _type_text(hints[field.name]),
            "default": _plain(field.name, default),
        }
    return schema


def check_option(type_text: str, key: str, value: object) -> None:
    """Whether ``value`` is of the option type ``type_text`` (as ``option_schema`` writes it):
    OptionsError naming ``key`` if not; a type text not understood here checks nothing (an
    executor newer than this process)."""
    convert = _converter_of(type_text)
    if convert is not None:
        convert(key, value)


def _type_text(annotation: object) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (types.UnionType, typing.Union) and type(None) in args:
        rest = [arg for arg in args if arg is not type(None)]
        return f"{_type_text(rest[0])} | None"
    if annotation is dict or origin in (dict, Mapping):
        return "dict"
    if origin is list:
        return f"list[{_type_text(args[0])}]"
    if origin is tuple:
        return f"tuple[{_type_text(args[0])}, ...]"
    return str(getattr(annotation, "__name__", annotation))


_SCALAR_NAMES: dict[str, type] = {"str": str, "int": int, "float": float, "bool": bool}


def _converter_of(text: str) -> Convert | None:
    text = text.strip()
    if text.endswith("| None"):
        inner = _converter_of(text.removesuffix("| None"))
        return None if inner is None else _optional(inner)
    if text in _SCALAR_NAMES:
        return _SCALARS[_SCALAR_NAMES[text]]
    if text == "dict":
        return _table
    for kind, opening, closing in ((list, "list[", "]"), (tuple, "tuple[", ", ...]")):
        item = text.removeprefix(opening).removesuffix(closing)
        if text.startswith(opening) and text.endswith(closing) and item in _SCALAR_NAMES:
            scalar = _SCALAR_NAMES[item]
            return _sequence(_SCALARS[scalar], kind, _NAMES[scalar])
    return None
