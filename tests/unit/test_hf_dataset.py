"""The dataset folder in the Hugging Face layout: `datasets.load_dataset(folder)` offline, the card's front matter,
and `livo push-dataset`."""

import datasets
import numpy as np
import pytest
import yaml
from PIL import Image

from livo_core.dataset import dataset_card, write_pairs
from livo_core.hf_dataset import HubUnreachableError, push_dataset, write_hf_splits
from livo_core.schema import PAIRS
from tests.unit.test_dataset import make_pair

SPLIT_OF = {"p0": "train", "p1": "train", "p2": "val", "p3": "test"}


@pytest.fixture
def folder(tmp_path):
    rows = [make_pair(tmp_path, i, f"p{i % 4}", SPLIT_OF[f"p{i % 4}"]) for i in range(9)]
    write_pairs([rows], tmp_path, meta={})
    write_hf_splits(tmp_path, pairs_per_shard=2)  # several shards per split
    (tmp_path / "README.md").write_text(dataset_card(tmp_path))
    return tmp_path, rows


def test_load_dataset_reads_the_folder_offline_with_images_and_every_column(folder, monkeypatch):
    root, rows = folder
    monkeypatch.setenv("HF_DATASETS_CACHE", str(root.parent / "hf-cache"))
    loaded = datasets.load_dataset(str(root))
    assert sorted(loaded) == ["test", "train", "val"]
    assert {s: loaded[s].num_rows for s in loaded} == {"train": 5, "val": 2, "test": 2}
    assert isinstance(loaded["train"].features["aligned_image"], datasets.Image)
    assert set(loaded["train"].column_names) == set(PAIRS.names)  # every provenance column kept
    by_id = {r["pair_id"]: r for r in rows}
    for split in loaded:
        for example in loaded[split]:
            row = by_id[example["pair_id"]]
            assert example["split"] == split == row["split"]
            assert (example["aligned_label"], example["violating_label"]) == (
                row["aligned_label"],
                row["violating_label"],
            )
            for role in ("aligned", "violating"):
                expected = np.asarray(Image.open(root / row[f"{role}_image"]))
                assert np.array_equal(np.asarray(example[f"{role}_image"]), expected)


def test_the_card_front_matter_describes_splits_features_and_licence(folder):
    root, _ = folder
    text = (root / "README.md").read_text()
    assert text.startswith("---\n")
    header = yaml.safe_load(text.split("---\n")[1])
    files = {entry["split"]: entry["path"] for entry in header["configs"][0]["data_files"]}
    assert files == {split: f"data/{split}-*.parquet" for split in ("train", "val", "test")}
    assert all(list(root.glob(pattern)) for pattern in files.values())
    features = {f["name"]: f["dtype"] for f in header["dataset_info"]["features"]}
    assert list(features) == PAIRS.names and features["aligned_image"] == "image" and features["seed"] == "int64"
    assert header["license"] and header["task_categories"] == ["text-to-image"]
    assert header["size_categories"] == ["n<1K"]
    assert {s["name"]: s["num_examples"] for s in header["dataset_info"]["splits"]} == {"train": 5, "val": 2, "test": 2}


def test_rewriting_the_splits_replaces_the_old_shards(folder):
    root, _ = folder
    write_hf_splits(root, pairs_per_shard=100)
    assert sorted(p.name for p in (root / "data").iterdir()) == [
        "test-00000-of-00001.parquet",
        "train-00000-of-00001.parquet",
        "val-00000-of-00001.parquet",
    ]


class RecordingApi:
    """Stands in for huggingface_hub.HfApi in the upload's wiring test: records the calls livo makes."""

    def __init__(self, fail_with=None):
        self.calls, self.fail_with = [], fail_with

    def create_repo(self, repo_id, **kwargs):
        if self.fail_with:
            raise self.fail_with
        self.calls.append(("create_repo", repo_id, kwargs))

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", kwargs))


def test_push_uploads_the_card_and_the_shards_only(folder, monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    root, _ = folder
    api = RecordingApi()
    assert push_dataset(root, "org/livo-pairs", api=api) == "https://huggingface.co/datasets/org/livo-pairs"
    (_, repo, create), (_, upload) = api.calls
    assert repo == "org/livo-pairs" and create["repo_type"] == "dataset"
    assert upload["folder_path"] == str(root) and upload["allow_patterns"] == ["README.md", "data/*.parquet"]


def test_push_offline_says_so_and_leaves_the_folder_ready(folder, monkeypatch):
    root, _ = folder
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    with pytest.raises(HubUnreachableError, match="HF_HUB_OFFLINE"):
        push_dataset(root, "org/livo-pairs")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    with pytest.raises(HubUnreachableError, match="ConnectionError"):
        push_dataset(root, "org/livo-pairs", api=RecordingApi(fail_with=ConnectionError("no route to host")))
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before


def test_push_refuses_a_folder_without_the_hub_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no pairs.parquet"):
        push_dataset(tmp_path, "org/x")
