"""Typed rows out of APSW: each column checked once, where it leaves the database.

APSW types a fetched row as `tuple[int | float | bytes | str | None, ...]` (`fetchone` and
`Cursor.get` as Any), so `User(*row)` type-checks whatever the row holds, and a column out of
order or a schema drift would travel on as a wrong value typed as anything. Repositories read
rows through here instead: `row_as(User, row)` builds the frozen dataclass by its fields' types
(an enum field from its value, a bool from 0/1, a dict or list from JSON text, `X | None` from
NULL or X), and a column that does not fit is a StoreError naming the class and the field.
The single values (`COUNT(*)`, `RETURNING id`, a PRAGMA) go through `one_int` and `one_text`.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
import types
import typing
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import apsw

from .db import StoreError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

D = TypeVar("D", bound="DataclassInstance")
Row = Sequence[object]
Reader = Callable[[object], object]


def integer(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):  # SQLite has no bool type
        raise StoreError(f"expected an integer column, got {_shown(value)}")
    return value


def text(value: object) -> str:
    if not isinstance(value, str):
        raise StoreError(f"expected a text column, got {_shown(value)}")
    return value


def optional_integer(value: object) -> int | None:
    return None if value is None else integer(value)


def optional_text(value: object) -> str | None:
    return None if value is None else text(value)


def boolean(value: object) -> bool:
    """SQLite has no booleans: the schema stores them as 0 or 1."""
    if integer(value) not in (0, 1):
        raise StoreError(f"expected 0 or 1, got {_shown(value)}")
    return value == 1


def number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise StoreError(f"expected a numeric column, got {_shown(value)}")
    return float(value)


def json_text(value: object) -> Any:
    """A column holding JSON text (the schema's `counts`, `params`, `result`)."""
    try:
        return json.loads(text(value))
    except ValueError as exc:
        raise StoreError(f"expected JSON text, got {_shown(value)}") from exc


def one_int(conn: apsw.Connection, sql: str, bindings: apsw.Bindings | None = None) -> int:
    """The integer a one-row, one-column statement answers: COUNT(*), RETURNING id, a PRAGMA."""
    return integer(conn.execute(sql, bindings).get)


def one_text(conn: apsw.Connection, sql: str, bindings: apsw.Bindings | None = None) -> str:
    return text(conn.execute(sql, bindings).get)


def row_as(cls: type[D], row: Row) -> D:
    """The dataclass `cls` from `row`, its columns in the order of `cls`'s fields."""
    readers = _readers(cls)
    if len(row) != len(readers):
        raise StoreError(f"{cls.__name__}: expected {len(readers)} columns, got {len(row)}")
    values = []
    for (name, read), value in zip(readers, row, strict=True):
        try:
            values.append(read(value))
        except StoreError as exc:
            raise StoreError(f"{cls.__name__}.{name}: {exc}") from None
    return cls(*values)


def rows_as(cls: type[D], rows: Iterable[Row]) -> list[D]:
    return [row_as(cls, row) for row in rows]


def fetch_one(
    conn: apsw.Connection, cls: type[D], sql: str, bindings: apsw.Bindings | None = None
) -> D | None:
    """The first row `sql` answers as a `cls`, or None when it answers none."""
    row = conn.execute(sql, bindings).fetchone()
    return None if row is None else row_as(cls, row)


def fetch_single(
    conn: apsw.Connection, cls: type[D], sql: str, bindings: apsw.Bindings | None = None
) -> D:
    """The one row a statement always answers (an aggregate, INSERT ... RETURNING) as a `cls`."""
    row = conn.execute(sql, bindings).fetchone()
    if row is None:
        raise StoreError(f"{cls.__name__}: the statement answered no row")
    return row_as(cls, row)


def fetch_all(
    conn: apsw.Connection, cls: type[D], sql: str, bindings: apsw.Bindings | None = None
) -> list[D]:
    return rows_as(cls, conn.execute(sql, bindings))


@functools.cache
def _readers(cls: type[DataclassInstance]) -> tuple[tuple[str, Reader], ...]:
    """Each field's column reader, worked out once per class from its type hints."""
    hints = typing.get_type_hints(cls)
    return tuple(
        (f.name, _reader(hints[f.name], f"{cls.__name__}.{f.name}"))
        for f in dataclasses.fields(cls)
    )


def _reader(hint: object, where: str) -> Reader:
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        present = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(present) != 1 or len(typing.get_args(hint)) != 2:
            raise TypeError(f"{where}: a column is one type, or that type or NULL: {hint}")
        inner = _reader(present[0], where)
        return lambda value: None if value is None else inner(value)
    if typing.get_origin(hint) in (dict, list) or hint in (dict, list):
        return json_text
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return lambda value: _member(hint, value)
    simple: dict[object, Reader] = {bool: boolean, int: integer, str: text, float: number}
    if hint in simple:
        return simple[hint]
    raise TypeError(f"{where}: no column reading for {hint}")


def _member(kind: type[enum.Enum], value: object) -> enum.Enum:
    try:
        return kind(value)
    except ValueError:
        raise StoreError(f"{_shown(value)} is no {kind.__name__}") from None


def _shown(value: object) -> str:
    return f"{type(value).__name__} {str(value)[:40]!r}"
