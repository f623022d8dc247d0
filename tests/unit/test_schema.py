import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from livo_core.schema import PAIRS, SCHEMA_VERSION, SchemaError, read_metadata, read_table, write_table


def pair_row(**overrides):
    row = {name: "x" for name in PAIRS.names}
    row.update(
        principle_id="gender_equality", category="bias", split="train", seed=3, aligned_score=1.0, violating_score=0.0
    )
    row.update(overrides)
    return row


def test_round_trip_keeps_schema_and_metadata(tmp_path):
    path = write_table([pair_row(), pair_row(pair_id="y")], tmp_path / "pairs.parquet", PAIRS, meta={"run": "r1"})
    table = read_table(path, PAIRS)
    assert table.schema.equals(PAIRS)
    assert table.column("pair_id").to_pylist() == ["x", "y"]
    assert pa.types.is_dictionary(table.schema.field("principle_id").type)
    assert read_metadata(table) == {"schema_version": SCHEMA_VERSION, "run": "r1"}
    assert not list(tmp_path.glob(".*.tmp"))


def test_rows_missing_a_column_are_refused_and_nothing_is_written(tmp_path):
    row = pair_row()
    del row["seed"]
    with pytest.raises(SchemaError, match="seed"):
        write_table([row], tmp_path / "pairs.parquet", PAIRS)
    assert not (tmp_path / "pairs.parquet").exists()


def test_wrong_schema_version_is_refused(tmp_path):
    table = pa.Table.from_pylist([pair_row()], schema=PAIRS).replace_schema_metadata(
        {b"livo": b'{"schema_version": "0"}'}
    )
    pq.write_table(table, tmp_path / "old.parquet")
    with pytest.raises(SchemaError, match="schema version"):
        read_table(tmp_path / "old.parquet", PAIRS)


def test_some_columns_are_read_alone_and_a_missing_one_is_named(tmp_path):
    path = write_table([pair_row(pair_id="y")], tmp_path / "pairs.parquet", PAIRS, meta={"run": "r1"})
    table = read_table(path, PAIRS, ["pair_id", "principle_id"])
    assert table.column_names == ["pair_id", "principle_id"] and table.column("pair_id").to_pylist() == ["y"]
    assert pa.types.is_dictionary(table.schema.field("principle_id").type)
    assert read_metadata(table)["run"] == "r1"
    slim = pa.Table.from_pylist([{"pair_id": "z"}]).replace_schema_metadata(table.schema.metadata)
    pq.write_table(slim, tmp_path / "slim.parquet")
    with pytest.raises(SchemaError, match=r"lacks columns \['principle_id'\]"):
        read_table(tmp_path / "slim.parquet", PAIRS, ["pair_id", "principle_id"])
