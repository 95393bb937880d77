"""How each method of a protocol travels, read from its type hints.

Adding a method to ``HostAgent`` or ``ControlPlane`` needs no new route: its parameters become one
dataclass (validated and serialised by a pydantic ``TypeAdapter``) and its return annotation picks the
call's kind:

- ``unary``: a JSON request, a JSON answer;
- ``stream``: the method returns ``AsyncIterator[T]``; the answer is NDJSON, one item a line;
- ``exec``: the method returns an ``ExecProcess``; the call is a websocket (stdin, output, resize).

A parameter typed ``AsyncIterator[bytes]`` (an image archive) is sent as the request body, and the other
arguments travel in a header.
"""

from __future__ import annotations

import collections.abc
import functools
import inspect
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, make_dataclass
from typing import Any, Literal

from pydantic import ConfigDict, TypeAdapter

from atoll.model.ports import ExecProcess

Kind = Literal["unary", "stream", "exec"]

WIRE_CONFIG = ConfigDict(ser_json_bytes="base64", val_json_bytes="base64")
"""Log lines and exec output are bytes, not always UTF-8: base64 keeps them whole."""


@dataclass(frozen=True)
class MethodShape:
    name: str
    kind: Kind
    params: tuple[str, ...]
    """Parameter names, in order, without ``self`` and without the body parameter."""
    args: TypeAdapter[Any]
    """Of a dataclass with one field per parameter in ``params``."""
    result: TypeAdapter[Any]
    """Of a dataclass whose one field ``value`` holds the return value (``unary``) or one item
    (``stream``); unused for ``exec``. The wrapper carries the wire config, which pydantic only takes
    from the outermost dataclass."""
    body: str | None = None
    """The parameter streamed as the request body, if any."""
    all_params: tuple[str, ...] = ()
    """Every parameter name in declaration order, the body parameter included (for positional calls)."""
    is_async: bool = True
    raw_bytes: bool = False
    """A stream of ``bytes``: sent as binary frames (``frames.py``), not JSON lines."""
    """Whether the protocol declares ``async def`` (a coroutine) or ``def`` (returns an iterator)."""

    def encode_args(self, kwargs: dict[str, Any]) -> bytes:
        return self.args.dump_json(self.args.validate_python(kwargs, from_attributes=False))

    def decode_args(self, data: bytes) -> dict[str, Any]:
        value = self.args.validate_json(data or b"{}")
        return {name: getattr(value, name) for name in self.params}


def _is_async_iterator(tp: Any) -> bool:
    return typing.get_origin(tp) in (collections.abc.AsyncIterator, collections.abc.AsyncGenerator)


@functools.cache
def method_shapes(protocol: type) -> Mapping[str, MethodShape]:
    """Every public method of ``protocol`` (properties are local state, not calls).

    Cached, read-only: building a shape makes a dataclass and a pydantic adapter per method, and the
    controller makes a proxy for every host that connects (at 1,000 hosts joining, rebuilding them was
    half of the controller's time)."""
    shapes: dict[str, MethodShape] = {}
    for name, member in vars(protocol).items():
        if name.startswith("_") or not inspect.isfunction(member):
            continue
        shapes[name] = _shape(name, member)
    return types.MappingProxyType(shapes)


def _shape(name: str, fn: Any) -> MethodShape:
    hints = typing.get_type_hints(fn)
    returns = hints.pop("return", None)
    params = [p for p in inspect.signature(fn).parameters if p != "self"]
    body = None
    fields: list[tuple[str, Any, Any]] = []
    for param_name in params:
        tp = hints[param_name]
        if _is_async_iterator(tp) and typing.get_args(tp) == (bytes,):
            body = param_name
            continue
        default = inspect.signature(fn).parameters[param_name].default
        if default is inspect.Parameter.empty:
            fields.append((param_name, tp, None))
        else:
            fields.append((param_name, tp, default))
    args_cls = _wire_dataclass(
        f"{name}_args", [(n, tp) if not _has_default(fn, n) else (n, tp, d) for n, tp, d in fields]
    )
    kind: Kind
    if returns is not None and _is_async_iterator(returns):
        kind, result_tp = "stream", typing.get_args(returns)[0]
    elif returns is ExecProcess:
        kind, result_tp = "exec", type(None)
    else:
        kind, result_tp = "unary", returns if returns is not None else type(None)
    return MethodShape(
        name=name,
        kind=kind,
        params=tuple(n for n, _, _ in fields),
        args=TypeAdapter(args_cls),
        result=TypeAdapter(_wire_dataclass(f"{name}_result", [("value", result_tp)])),
        body=body,
        all_params=tuple(params),
        is_async=inspect.iscoroutinefunction(fn),
        raw_bytes=kind == "stream" and result_tp is bytes,
    )


def _wire_dataclass(name: str, fields: list[tuple[Any, ...]]) -> type:
    cls = make_dataclass(name, fields, frozen=True)
    cls.__pydantic_config__ = WIRE_CONFIG  # type: ignore[attr-defined]
    return cls


def encode_result(shape: MethodShape, value: Any) -> bytes:
    return shape.result.dump_json(shape.result.validate_python({"value": value}))


def decode_result(shape: MethodShape, data: bytes | str) -> Any:
    return shape.result.validate_json(data).value


def _has_default(fn: Any, param: str) -> bool:
    return inspect.signature(fn).parameters[param].default is not inspect.Parameter.empty
