import json
from collections import Counter

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from livo_core.dataset import assign_split, dataset_card, split_of, validate_dataset, write_pairs
from livo_core.schema import PAIRS, read_table
from livo_core.storage import LatentCache, save_image


def test_split_is_a_function_of_the_prompt_and_roughly_proportional():
    splits = [assign_split(f"prompt-{i}") for i in range(4000)]
    assert splits == [assign_split(f"prompt-{i}") for i in range(4000)]
    share = Counter(splits)
    assert 0.87 < share["train"] / 4000 < 0.93 and share["val"] > 100 and share["test"] > 100


def make_pair(root, index, prompt_id, split="train"):
    row = {name: f"{name}-{index}" for name in PAIRS.names}
    for role, value in (("aligned", 10), ("violating", 200)):
        path, sha = save_image(np.full((4, 4, 3), value + index, dtype=np.uint8), root)
        latents = LatentCache(root, "vae-test")
        latents.path(sha).parent.mkdir(parents=True, exist_ok=True)
        save_file({"latent": torch.zeros(4, 2, 2)}, str(latents.path(sha)))
        row.update({f"{role}_image": path, f"{role}_sha256": sha})
    row.update(
        prompt_id=prompt_id,
        split=split,
        principle_id="bloody_inappropriate",
        category="toxicity",
        seed=index,
        aligned_score=0.0,
        violating_score=1.0,
        target_class=None,
        generation=json.dumps({"vae": "vae-test"}),
        prompt_family=None,
    )
    return row


def test_streamed_dataset_validates_and_has_a_card(tmp_path):
    rows = [make_pair(tmp_path, i, f"p{i % 3}") for i in range(7)]
    write_pairs(iter([rows[:4], rows[4:]]), tmp_path, meta={"note": "t"})
    assert read_table(tmp_path / "pairs.parquet", PAIRS).num_rows == 7
    report = validate_dataset(tmp_path)
    assert report.ok and report.pairs == 7
    card = dataset_card(tmp_path)
    assert "| toxicity | bloody_inappropriate | 7 | 0 | 0 |" in card


@pytest.mark.parametrize(
    "fault, message",
    [("duplicate", "duplicate pair id"), ("leak", "is in train and test"), ("missing", "missing violating image")],
)
def test_validation_finds_each_fault(tmp_path, fault, message):
    rows = [make_pair(tmp_path, i, f"p{i}") for i in range(3)]
    if fault == "duplicate":
        rows[1]["pair_id"] = rows[0]["pair_id"]
    if fault == "leak":
        rows[1].update(prompt_id=rows[0]["prompt_id"], split="test")
    write_pairs([rows], tmp_path, meta={})
    if fault == "missing":
        (tmp_path / rows[2]["violating_image"]).unlink()
    report = validate_dataset(tmp_path)
    assert not report.ok and any(message in p for p in report.problems)


def test_every_phrasing_of_a_template_item_lands_in_one_split():
    from dataclasses import asdict

    from livo_core.prompts import prompt_id, template_prompts

    rows = [{**asdict(r), "prompt_id": prompt_id(r.prompt)} for r in template_prompts(families=["occupations"])]
    by_item: dict[str, set[str]] = {}
    for row in rows:
        by_item.setdefault(row["group"], set()).add(split_of(row, (0.8, 0.1, 0.1)))
    assert len(by_item) == len(rows) / 4 and all(len(splits) == 1 for splits in by_item.values())
    test_items = [item for item, splits in by_item.items() if splits == {"test"}]
    assert 0.04 < len(test_items) / len(by_item) < 0.2
    imported = {"prompt_id": "abc", "group": None}
    assert split_of(imported, (0.8, 0.1, 0.1)) == assign_split("abc", (0.8, 0.1, 0.1))  # files: by prompt
