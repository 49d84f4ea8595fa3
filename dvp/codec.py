"""Avro, the wire format: the `.avsc` files are the single source of every type.

`message` binds a frozen dataclass to `schemas/<ClassName>.avsc` and checks at
import time that both agree (same fields, same order, matching types), so a
schema change that the code does not follow fails loudly. `Codec` encodes the
messages of one topic: MAGIC + schemaless Avro of the topic's union."""
from __future__ import annotations

import dataclasses
import functools
import io
import json
import typing
from collections.abc import Callable
from dataclasses import dataclass

import fastavro

from dvp.errors import MalformedRecord
from dvp.schemas import SCHEMA_DIR

MAGIC = b"DVP\x01"
_PY_TYPES = {"string": str, "bytes": bytes, "long": int, "int": int, "float": float,
             "double": float, "boolean": bool}
_REGISTRY: dict[str, type] = {}


def load_schema(name: str) -> dict:
    """The schema of a message type, by its class name or full Avro name."""
    return json.loads(SCHEMA_DIR.joinpath(f"{name.split('.')[-1]}.avsc").read_text())


def _inline(schema: typing.Any, defined: set) -> typing.Any:
    """Replace references to named types by their definition, first use only,
    so that every topic's schema is self-contained."""
    if isinstance(schema, str) and schema.startswith("dvp."):
        if schema in defined:
            return schema
        defined.add(schema)
        return _inline(load_schema(schema), defined)
    if isinstance(schema, list):
        return [_inline(s, defined) for s in schema]
    if isinstance(schema, dict):
        if schema.get("type") == "record":
            defined.add(f"{schema['namespace']}.{schema['name']}")
            return {**schema, "fields": [{**f, "type": _inline(f["type"], defined)}
                                         for f in schema["fields"]]}
        if schema.get("type") == "array":
            return {**schema, "items": _inline(schema["items"], defined)}
    return schema


def check_matches(cls: type, schema: dict) -> None:
    """Raise TypeError unless the dataclass has the schema's fields, in order, with its types."""
    hints = typing.get_type_hints(cls)
    ours = [f.name for f in dataclasses.fields(cls)]
    theirs = [f["name"] for f in schema["fields"]]
    if ours != theirs:
        raise TypeError(f"{cls.__name__} fields {ours} differ from schema {theirs}")
    for f in schema["fields"]:
        hint, avro = hints[f["name"]], f["type"]
        if isinstance(avro, list):  # ["null", T]
            avro = next(t for t in avro if t != "null")
            hint = next(a for a in typing.get_args(hint) if a is not type(None))
        if isinstance(avro, dict) and avro.get("type") == "array":
            avro, hint = avro["items"], typing.get_args(hint)[0]
        elif isinstance(avro, dict) and avro.get("type") == "map":  # string keys, as Avro's always are
            avro, hint = avro["values"], typing.get_args(hint)[1]
        expected = _PY_TYPES.get(avro) if isinstance(avro, str) else None
        if expected is None:  # a named record
            expected = _REGISTRY[avro.split(".")[-1]] if isinstance(avro, str) else None
        if hint is not expected:
            raise TypeError(f"{cls.__name__}.{f['name']}: {hint} does not match Avro {f['type']}")


_T = typing.TypeVar("_T")


@typing.dataclass_transform(frozen_default=True)
def message(cls: type[_T]) -> type[_T]:
    """Freeze a dataclass and bind it to `schemas/<ClassName>.avsc`."""
    frozen = dataclass(frozen=True, slots=True)(cls)
    _REGISTRY[frozen.__name__] = frozen
    schema = load_schema(frozen.__name__)
    check_matches(frozen, schema)
    frozen.AVRO_NAME = f"{schema['namespace']}.{schema['name']}"  # type: ignore[attr-defined]
    return frozen


def _to_avro(msg: typing.Any) -> dict:
    return {f.name: _plain(getattr(msg, f.name)) for f in dataclasses.fields(msg)}


def _plain(value: typing.Any) -> typing.Any:
    if dataclasses.is_dataclass(value):
        return _to_avro(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


@functools.cache  # the annotations are strings: evaluated once per class, not per message
def _hints(cls: type) -> dict[str, typing.Any]:
    return typing.get_type_hints(cls)


def _from_avro(cls: type, record: dict) -> typing.Any:
    hints = _hints(cls)
    values = {}
    for name, value in record.items():
        hint = hints[name]
        if typing.get_origin(hint) is list and typing.get_args(hint)[0] in _REGISTRY.values():
            value = [_from_avro(typing.get_args(hint)[0], v) for v in value]
        elif hint in _REGISTRY.values():
            value = _from_avro(hint, value)
        values[name] = value
    return cls(**values)


class Codec:
    """Encodes and decodes the messages of one topic (an Avro union of them).
    `validate` checks a decoded message's content; it raises MalformedRecord."""

    def __init__(self, *types: type, validate: Callable[[typing.Any], None] = lambda _msg: None):
        self.types = {t.AVRO_NAME: t for t in types}  # type: ignore[attr-defined]
        self.schema = fastavro.parse_schema(_inline(list(self.types), set()))
        self._validate = validate

    def encode(self, msg: typing.Any) -> bytes:
        if type(msg).AVRO_NAME not in self.types:
            raise TypeError(f"{type(msg).__name__} does not belong on this topic")
        buf = io.BytesIO()
        buf.write(MAGIC)
        fastavro.schemaless_writer(buf, self.schema, (msg.AVRO_NAME, _to_avro(msg)))
        return buf.getvalue()

    def decode(self, data: bytes | None) -> typing.Any:
        if not data or not data.startswith(MAGIC):
            raise MalformedRecord("not a dvp record (bad magic bytes)")
        buf = io.BytesIO(data)
        buf.seek(len(MAGIC))
        try:
            decoded: typing.Any = fastavro.schemaless_reader(buf, self.schema, return_record_name=True)
            name, record = decoded
            if buf.read(1):
                raise ValueError("trailing bytes after the record")
            message = _from_avro(self.types[name], record)
        except Exception as exc:  # fastavro raises many types on garbage
            raise MalformedRecord(f"undecodable record: {exc}") from exc
        self._validate(message)
        return message
