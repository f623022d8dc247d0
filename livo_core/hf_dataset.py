"""The dataset in the Hugging Face layout: per-split Parquet shards with the images embedded (what
`datasets.load_dataset(folder)` and the Hub read), the card's front matter, and the upload."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from livo_core.atomic import fsync_tree, temporary_path
from livo_core.schema import PAIRS, SCHEMA_VERSION, read_table

DATA_DIR = "data"
IMAGE_COLUMNS = ("aligned_image", "violating_image")
IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])  # the `datasets.Image` storage
# The images' licence follows the model that made them; livo's own code and the tables are MIT.
LICENCES = {"shapes": "mit", "sd15": "creativeml-openrail-m"}
SIZE_CATEGORIES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"))


def _value_dtype(type_: pa.DataType) -> str:
    """The `datasets.Value` dtype of a PAIRS column type."""
    if pa.types.is_dictionary(type_) or pa.types.is_string(type_):
        return "string"
    if pa.types.is_floating(type_):
        return "float32" if type_.bit_width == 32 else "float64"
    if pa.types.is_integer(type_):
        return str(type_)
    if pa.types.is_boolean(type_):
        return "bool"
    raise TypeError(f"no datasets dtype for {type_}")


def hf_schema() -> pa.Schema:
    """The shards' Arrow schema: PAIRS with the image paths as embedded images and categories as plain strings,
    with the `huggingface` features metadata that makes `datasets` decode the images."""
    fields = [
        pa.field(
            f.name,
            IMAGE if f.name in IMAGE_COLUMNS else f.type.value_type if pa.types.is_dictionary(f.type) else f.type,
            nullable=f.nullable,
        )  # fmt: skip
        for f in PAIRS
    ]
    features = {
        f.name: {"_type": "Image"} if f.name in IMAGE_COLUMNS else {"dtype": _value_dtype(f.type), "_type": "Value"}
        for f in PAIRS
    }
    return pa.schema(fields, metadata={"huggingface": json.dumps({"info": {"features": features}})})


def card_features() -> list[dict]:
    """The card's `dataset_info.features`, from the same schema as the shards."""
    return [{"name": f.name, "dtype": "image" if f.name in IMAGE_COLUMNS else _value_dtype(f.type)} for f in PAIRS]


def write_hf_splits(root: Path, pairs_per_shard: int = 1_000) -> dict[str, int]:
    """`root/data/<split>-<i>-of-<n>.parquet` from pairs.parquet, the PNGs embedded; replaces the old shards at once
    (written beside, then renamed). Returns the pairs per split (splits without pairs get no file: `datasets` reads
    no empty Parquet)."""
    table = read_table(root / "pairs.parquet", PAIRS)
    schema, tmp, counts = hf_schema(), temporary_path(root / DATA_DIR), {}
    tmp.mkdir(parents=True)
    for split in ("train", "val", "test"):
        rows = table.filter(pc.equal(table["split"], split))
        counts[split] = rows.num_rows
        shards = max(1, -(-rows.num_rows // pairs_per_shard))
        for i in range(shards if rows.num_rows else 0):
            part = rows.slice(i * pairs_per_shard, pairs_per_shard)
            pq.write_table(_embed(root, part, schema), tmp / f"{split}-{i:05d}-of-{shards:05d}.parquet")
    fsync_tree(tmp)
    shutil.rmtree(root / DATA_DIR, ignore_errors=True)
    tmp.rename(root / DATA_DIR)
    return counts


def _embed(root: Path, part: pa.Table, schema: pa.Schema) -> pa.Table:
    columns = []
    for field in schema:
        column = part[field.name]
        if field.name in IMAGE_COLUMNS:
            paths = column.to_pylist()
            column = pa.array([{"bytes": (root / p).read_bytes(), "path": p} for p in paths], IMAGE)
        columns.append(column.cast(field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def front_matter(counts: dict[str, int], base_models: list[str]) -> str:
    """The card's YAML header: configs with each split's files, features, licence, task and size categories."""
    import yaml

    total = sum(counts.values())
    licences = sorted({LICENCES.get(m, "other") for m in base_models})
    header = {
        "license": licences[0] if len(licences) == 1 else "other",
        "pretty_name": "livo preference dataset",
        "task_categories": ["text-to-image"],
        "tags": ["livo", "value-alignment", "preference", "dpo", f"livo-schema-{SCHEMA_VERSION}"],
        "size_categories": [next((name for limit, name in SIZE_CATEGORIES if total < limit), "1M<n<10M")],
        "configs": [
            {
                "config_name": "default",
                "data_files": [
                    {"split": split, "path": f"{DATA_DIR}/{split}-*.parquet"} for split, n in counts.items() if n
                ],
            }
        ],
        "dataset_info": {
            "features": card_features(),
            "splits": [{"name": split, "num_examples": n} for split, n in counts.items() if n],
        },
    }
    if header["license"] == "other":
        header["license_name"] = "base-model-licences"
    return "---\n" + yaml.safe_dump(header, sort_keys=False) + "---\n"


class HubUnreachableError(RuntimeError):
    """The Hugging Face Hub cannot be reached (offline mode or no connection); nothing was uploaded."""


UPLOADED = ["README.md", f"{DATA_DIR}/*.parquet"]


def check_ready(root: Path) -> list[Path]:
    """The files an upload sends, or an error naming what is missing and the fix."""
    files = [root / "README.md", *sorted((root / DATA_DIR).glob("*.parquet"))]
    if not (root / "pairs.parquet").is_file():
        raise FileNotFoundError(f"{root} is not a livo dataset (no pairs.parquet): build one with build-dataset")
    if not files[0].is_file() or len(files) == 1:
        raise FileNotFoundError(
            f"{root} lacks README.md or {DATA_DIR}/*.parquet: re-run build-dataset on it (its last stage writes them)"
        )
    return files


def push_dataset(root: Path, repo_id: str, private: bool = False, api=None) -> str:
    """Upload the card and the split shards to the dataset repo `repo_id` (created if missing); returns its URL.
    Raises HubUnreachableError when offline: the folder stays as it is, ready to upload."""
    from huggingface_hub import HfApi, constants

    check_ready(root)
    if constants.HF_HUB_OFFLINE:
        raise HubUnreachableError("HF_HUB_OFFLINE is set")
    api = api or HfApi()
    try:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        api.upload_folder(  # shards of an earlier build (another count) are deleted: the globs match only these
            folder_path=str(root),
            repo_id=repo_id,
            repo_type="dataset",
            allow_patterns=UPLOADED,
            delete_patterns=[f"{DATA_DIR}/*"],
        )
    except Exception as error:
        if not _is_connection_error(error):
            raise
        raise HubUnreachableError(f"{type(error).__name__}: {error}") from error
    return f"https://huggingface.co/datasets/{repo_id}"


def _is_connection_error(error: BaseException) -> bool:
    """Offline mode, or a connection that failed (the hub client's HTTP library's transport errors, OS errors)."""
    from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError, OfflineModeIsEnabled

    if isinstance(error, HfHubHTTPError | LocalTokenNotFoundError):  # the hub answered (401, 404, ...): not offline
        return False
    transport = ("TransportError", "ConnectError", "ConnectTimeout")
    chain = type(error).__mro__
    offline = OfflineModeIsEnabled | ConnectionError | TimeoutError
    return isinstance(error, offline) or any(c.__name__ in transport for c in chain)
