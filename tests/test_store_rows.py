"""store/rows.py: a row becomes a typed dataclass, or a StoreError naming the field."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import apsw
import pytest

from hero_onboarding.store import StoreError
from hero_onboarding.store.rows import fetch_all, fetch_one, fetch_single, one_int, row_as


class Colour(StrEnum):
    RED = "red"
    BLUE = "blue"


@dataclass(frozen=True, slots=True)
class Thing:
    id: int
    name: str
    colour: Colour
    live: bool
    note: str | None
    counts: dict[str, int] | None
    weight: float


@pytest.fixture
def conn() -> apsw.Connection:
    conn = apsw.Connection(":memory:")
    # No declared types: no column affinity converts a wrong value into a right one.
    conn.execute("CREATE TABLE things (id, name, colour, live, note, counts, weight)")
    conn.execute(
        "INSERT INTO things VALUES (1, 'one', 'red', 1, NULL, '{\"a\": 2}', 1.5),"
        " (2, 'two', 'blue', 0, 'n', NULL, 3)"
    )
    return conn


def test_rows_become_typed_dataclasses(conn: apsw.Connection) -> None:
    things = fetch_all(conn, Thing, "SELECT * FROM things ORDER BY id")
    assert things == [
        Thing(1, "one", Colour.RED, True, None, {"a": 2}, 1.5),
        Thing(2, "two", Colour.BLUE, False, "n", None, 3.0),
    ]
    assert type(things[0].colour) is Colour
    assert type(things[1].weight) is float
    assert fetch_one(conn, Thing, "SELECT * FROM things WHERE id = ?", (3,)) is None
    assert one_int(conn, "SELECT COUNT(*) FROM things") == 2


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("id", "'1'", "Thing.id: expected an integer column, got str '1'"),
        ("name", "NULL", "Thing.name: expected a text column, got NoneType 'None'"),
        ("colour", "'green'", "Thing.colour: str 'green' is no Colour"),
        ("live", "2", "Thing.live: expected 0 or 1, got int '2'"),
        ("counts", "'{'", "Thing.counts: expected JSON text, got str '{'"),
        ("weight", "'heavy'", "Thing.weight: expected a numeric column, got str 'heavy'"),
    ],
)
def test_a_column_that_does_not_fit_names_the_field(
    conn: apsw.Connection, column: str, value: str, message: str
) -> None:
    conn.execute(f"UPDATE things SET {column} = {value} WHERE rowid = 1")
    with pytest.raises(StoreError) as caught:
        fetch_one(conn, Thing, "SELECT * FROM things WHERE rowid = 1")
    assert str(caught.value) == message


def test_a_row_of_the_wrong_width_or_none_is_refused(conn: apsw.Connection) -> None:
    with pytest.raises(StoreError, match="expected 7 columns, got 2"):
        row_as(Thing, (1, "one"))
    with pytest.raises(StoreError, match="answered no row"):
        fetch_single(conn, Thing, "SELECT * FROM things WHERE id = 9")
    with pytest.raises(StoreError, match="expected an integer column"):
        one_int(conn, "SELECT name FROM things WHERE id = 1")


def test_a_field_type_without_a_column_reading_is_a_programming_error() -> None:
    @dataclass
    class Odd:
        parts: tuple[int, ...]

    with pytest.raises(TypeError, match=r"Odd\.parts"):
        row_as(Odd, ((1,),))
