"""The Temporal payload converter: the SDK's default, with its dataclasses built faster.

Payloads are JSON exactly as the SDK's default converter writes them (so any client, a platform
team's own worker included, reads and writes ours). Only decoding into a dataclass differs: the
SDK calls `typing.get_type_hints` on the dataclass every time it builds one, which evaluates
every field's annotation again (`from __future__ import annotations` makes them strings):
65-127 µs for a run's input or a model round's result, about 2 % of a loaded `dev` process's
CPU (py-spy). `DataclassConverter` resolves a class's field types once and otherwise builds the
instance as the SDK does: the fields present are converted with the SDK's `value_to_type`,
`init=False` fields are set after construction, unknown keys are ignored, and a missing
required field fails the constructor.
"""

from __future__ import annotations

import dataclasses
import typing
import weakref
from typing import Any

from temporalio.converter import (
    BinaryNullPayloadConverter,
    BinaryPlainPayloadConverter,
    BinaryProtoPayloadConverter,
    CompositePayloadConverter,
    JSONPlainPayloadConverter,
    JSONProtoPayloadConverter,
    JSONTypeConverter,
    value_to_type,
)

# A dataclass → its fields as (name, passed to __init__, resolved type). Weak keys: the test
# suite's workflow sandbox re-imports the workflow modules, and with them their dataclasses.
_FIELDS: weakref.WeakKeyDictionary[type, tuple[tuple[str, bool, Any], ...]] = (
    weakref.WeakKeyDictionary()
)


def _fields(cls: type) -> tuple[tuple[str, bool, Any], ...]:
    fields = _FIELDS.get(cls)
    if fields is None:
        hints = typing.get_type_hints(cls)
        fields = tuple((f.name, f.init, hints[f.name]) for f in dataclasses.fields(cls))
        _FIELDS[cls] = fields
    return fields


class DataclassConverter(JSONTypeConverter):
    def to_typed_value(self, hint: type, value: Any) -> Any:
        if not (isinstance(hint, type) and dataclasses.is_dataclass(hint)):
            return JSONTypeConverter.Unhandled
        if not isinstance(value, dict):
            raise TypeError(f"Cannot convert to dataclass {hint}, value is {type(value)} not dict")
        passed: dict[str, Any] = {}
        later: dict[str, Any] = {}
        for name, init, field_hint in _fields(hint):
            if name not in value:
                continue  # a missing required field fails the constructor below
            try:
                converted = value_to_type(field_hint, value[name], CONVERTERS)
            except Exception as err:
                raise TypeError(f"Failed converting field {name} on dataclass {hint}") from err
            (passed if init else later)[name] = converted
        obj = hint(**passed)
        for name, converted in later.items():
            object.__setattr__(obj, name, converted)  # works on frozen dataclasses too
        return obj


CONVERTERS: list[JSONTypeConverter] = [DataclassConverter()]


class PayloadConverter(CompositePayloadConverter):
    """The SDK's `DefaultPayloadConverter`, its JSON converter given `DataclassConverter`."""

    def __init__(self) -> None:
        super().__init__(
            BinaryNullPayloadConverter(),
            BinaryPlainPayloadConverter(),
            JSONProtoPayloadConverter(),
            BinaryProtoPayloadConverter(),
            # JSON plain last: it accepts anything and fails on what it cannot encode.
            JSONPlainPayloadConverter(custom_type_converters=CONVERTERS),
        )
