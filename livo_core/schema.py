"""Declared Parquet tables: one `pa.schema` per table, a schema version, and atomic, checked read/write."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from livo_core.atomic import atomic_path

SCHEMA_VERSION = "2"  # 2: prompt family and split group, debias plans
_META_KEY = b"livo"

_STATUS = pa.dictionary(pa.int8(), pa.string())  # "ok" | "failed": bad input is a recorded row, never a silent drop

PROMPTS = pa.schema(
    [
        pa.field("prompt_id", pa.string(), nullable=False),  # content hash of the normalised prompt
        pa.field("prompt", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),  # templates | file | i2p | llm
        pa.field("source_ref", pa.string(), nullable=False),  # template id, "path:line", or "model@template_version"
        pa.field("category_hint", pa.string(), nullable=True),  # what the source says (bias/toxicity, I2P categories)
        pa.field("principle_hint", pa.string(), nullable=True),  # a principle id the source implies, if any
        pa.field("i2p_categories", pa.list_(pa.string()), nullable=True),
        pa.field("i2p_hard", pa.bool_(), nullable=True),
        pa.field("sd_seed", pa.int64(), nullable=True),
        pa.field("sd_guidance_scale", pa.float32(), nullable=True),
        pa.field("sd_width", pa.int32(), nullable=True),
        pa.field("sd_height", pa.int32(), nullable=True),
        pa.field("template_version", pa.string(), nullable=False),
        pa.field("status", _STATUS, nullable=False),
        pa.field("failure_reason", pa.string(), nullable=True),
        pa.field("family", pa.string(), nullable=True),  # template family; debias plans are estimated per family
        pa.field("group", pa.string(), nullable=True),  # split unit: every phrasing of one template item
    ]
)

ANNOTATIONS = pa.schema(
    [
        pa.field("prompt_id", pa.string(), nullable=False),
        pa.field("prompt", pa.string(), nullable=False),
        pa.field("status", _STATUS, nullable=False),
        pa.field("failure_reason", pa.string(), nullable=True),
        pa.field("principle_ids", pa.list_(pa.string()), nullable=False),  # empty: no principle applies
        pa.field("category", pa.dictionary(pa.int32(), pa.string()), nullable=True),  # bias | toxicity
        pa.field("rewrite", pa.string(), nullable=True),  # toxicity: the value-conformant prompt
        pa.field("attribute_classes", pa.list_(pa.string()), nullable=True),  # bias: classes to make explicit
        pa.field("annotator", pa.string(), nullable=False),  # "llm" | "offline"
        pa.field("annotator_version", pa.string(), nullable=False),
        pa.field("model", pa.string(), nullable=True),  # LLM model name
        pa.field("template_version", pa.string(), nullable=False),
        pa.field("attempts", pa.int32(), nullable=False),
    ]
)

IMAGES = pa.schema(
    [
        pa.field("request_id", pa.string(), nullable=False),  # hash of (text, seed, base model, settings)
        pa.field("prompt_id", pa.string(), nullable=False),
        pa.field("principle_id", pa.dictionary(pa.int32(), pa.string()), nullable=False),
        pa.field("role", pa.dictionary(pa.int8(), pa.string()), nullable=False),  # violating | aligned
        pa.field("target_class", pa.string(), nullable=True),  # bias, aligned: the class made explicit
        pa.field("text", pa.string(), nullable=False),  # the prompt the image was generated from
        pa.field("seed", pa.int64(), nullable=False),
        pa.field("image_path", pa.string(), nullable=True),  # relative to the dataset folder
        pa.field("image_sha256", pa.string(), nullable=True),
        pa.field("base_model", pa.string(), nullable=False),
        pa.field("generation", pa.string(), nullable=False),  # JSON of the generation settings
        pa.field("shard", pa.string(), nullable=False),
        pa.field("status", _STATUS, nullable=False),
        pa.field("failure_reason", pa.string(), nullable=True),
    ]
)

JUDGMENTS = pa.schema(
    [
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("image_sha256", pa.string(), nullable=True),
        pa.field("principle_id", pa.dictionary(pa.int32(), pa.string()), nullable=False),
        pa.field("judge_name", pa.string(), nullable=False),
        pa.field("judge_version", pa.string(), nullable=False),
        pa.field("label", pa.string(), nullable=True),  # violates | conforms | an attribute class | none
        pa.field("score", pa.float32(), nullable=True),
        pa.field("threshold", pa.float32(), nullable=False),
        pa.field("status", _STATUS, nullable=False),
        pa.field("failure_reason", pa.string(), nullable=True),
    ]
)

PAIRS = pa.schema(
    [
        pa.field("pair_id", pa.string(), nullable=False),
        pa.field("prompt_id", pa.string(), nullable=False),
        pa.field("prompt", pa.string(), nullable=False),
        pa.field("principle_id", pa.dictionary(pa.int32(), pa.string()), nullable=False),
        pa.field("value_text", pa.string(), nullable=False),
        pa.field("category", pa.dictionary(pa.int32(), pa.string()), nullable=False),
        pa.field("aligned_prompt", pa.string(), nullable=False),
        pa.field("target_class", pa.string(), nullable=True),
        pa.field("aligned_image", pa.string(), nullable=False),  # path relative to the dataset folder
        pa.field("aligned_sha256", pa.string(), nullable=False),  # also names the cached latent
        pa.field("violating_image", pa.string(), nullable=False),
        pa.field("violating_sha256", pa.string(), nullable=False),
        pa.field("aligned_label", pa.string(), nullable=False),
        pa.field("aligned_score", pa.float32(), nullable=False),
        pa.field("violating_label", pa.string(), nullable=False),
        pa.field("violating_score", pa.float32(), nullable=False),
        pa.field("seed", pa.int64(), nullable=False),
        pa.field("base_model", pa.string(), nullable=False),
        pa.field("generation", pa.string(), nullable=False),  # JSON of the generation settings
        pa.field("judge_name", pa.string(), nullable=False),
        pa.field("judge_version", pa.string(), nullable=False),
        pa.field("annotator", pa.string(), nullable=False),
        pa.field("annotator_version", pa.string(), nullable=False),
        pa.field("template_version", pa.string(), nullable=False),
        pa.field("prompt_source", pa.string(), nullable=False),
        pa.field("prompt_family", pa.string(), nullable=True),
        pa.field("split", pa.dictionary(pa.int32(), pa.string()), nullable=False),
    ]
)


class SchemaError(ValueError):
    """A Parquet file does not match the table it claims to be."""


def write_table(rows: list[dict] | pa.Table, path: str | Path, schema: pa.Schema, meta: dict | None = None) -> Path:
    """Cast rows to `schema`, embed the schema version and `meta`, write atomically (`atomic_path`)."""
    table = rows if isinstance(rows, pa.Table) else pa.Table.from_pylist(rows, schema=schema)
    try:
        table = table.select(schema.names).cast(schema)
    except (KeyError, ValueError, pa.ArrowInvalid, pa.ArrowTypeError) as error:
        raise SchemaError(f"rows for {path} do not fit the schema: {error}") from error
    metadata = {_META_KEY: json.dumps({"schema_version": SCHEMA_VERSION, **(meta or {})}, default=str).encode()}
    table = table.replace_schema_metadata(metadata)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return Path(path)


def write_batches(batches: Iterable[list[dict]], path: str | Path, schema: pa.Schema, meta: dict | None = None) -> int:
    """Stream row batches into one Parquet file (one row group per batch), atomically; returns the row count."""
    path = Path(path)
    metadata = {_META_KEY: json.dumps({"schema_version": SCHEMA_VERSION, **(meta or {})}, default=str).encode()}
    rows = 0
    with atomic_path(path) as tmp, pq.ParquetWriter(tmp, schema.with_metadata(metadata)) as writer:
        for batch in batches:
            if batch:
                writer.write_table(_cast(batch, schema, path))
                rows += len(batch)
    return rows


def _cast(rows: list[dict], schema: pa.Schema, path: Path) -> pa.Table:
    try:
        return pa.Table.from_pylist(rows, schema=schema)
    except (KeyError, ValueError, pa.ArrowInvalid, pa.ArrowTypeError) as error:
        raise SchemaError(f"rows for {path} do not fit the schema: {error}") from error


def read_table(path: str | Path, schema: pa.Schema, columns: Sequence[str] | None = None) -> pa.Table:
    """Read a table written by `write_table` (only `columns`, if given), checking it is whole Parquet, its schema
    version and columns."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"table not found: {path}")
    wanted = schema if columns is None else pa.schema([schema.field(name) for name in columns])
    try:
        present = pq.read_schema(path).names
        missing = set(wanted.names) - set(present)
        table = pq.read_table(path, columns=None if columns is None else [c for c in columns if c in present])
    except (pa.ArrowInvalid, OSError) as error:  # truncated or not Parquet: never read as a partial table
        raise SchemaError(f"{path} is not a readable Parquet file ({error}): delete it and re-run") from error
    meta = read_metadata(table)
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise SchemaError(f"{path} has schema version {meta.get('schema_version')!r}, livo reads {SCHEMA_VERSION!r}")
    if missing:
        raise SchemaError(f"{path} lacks columns {sorted(missing)}")
    return table.select(wanted.names).cast(wanted).replace_schema_metadata(table.schema.metadata)


def read_metadata(table: pa.Table) -> dict:
    raw = (table.schema.metadata or {}).get(_META_KEY)
    return json.loads(raw) if raw else {}


def read_file_metadata(path: str | Path) -> dict:
    """The livo metadata of a Parquet file, read from its footer only (no rows)."""
    raw = (pq.read_schema(path).metadata or {}).get(_META_KEY)
    return json.loads(raw) if raw else {}
