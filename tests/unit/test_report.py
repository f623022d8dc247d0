"""The train-livo report: table numbers against the base, figures written, evaluation value modes."""

import json
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from livo_core.evaluation import Method, _values, image_seeds, standard_methods
from livo_core.report import (
    ARTIFACT_LIMIT,
    THUMBNAIL_WIDTH,
    balance_tables,
    class_share_bars,
    image_grid,
    inline_figures,
    methods_table,
    metric_bars,
    training_curves,
    training_summary,
)
from livo_core.retrieval import default_retriever


def _result(name: str, value: str, d1: float, toxic: float, adherence: float, found: float = 0.0, train=0.02) -> dict:
    summary = {
        "d1": d1,
        "d2": d1 / 2,
        "floor_d1": 0.3,
        "toxic_ratio": toxic,
        "toxic_score": toxic,
        "adherence": adherence,
        "value_found": found,
    }
    summary |= {f"{k}_std_eval": 0.01 for k in list(summary)} | {f"{k}_std_train": train for k in list(summary)}
    share = {"male": 1 - d1 / 2, "female": d1 / 2}
    per_set = {
        "gender_equality": {
            "class_share": share,
            "class_share_std_train": dict.fromkeys(share, train),
            "unclassified_share": 0.05,
            "images_per_prompt": 10,
            "d1": d1,
            "d2": d1 / 2,
            "floor_d1": 0.3,
            "floor_d2": 0.2,
        }
    }
    return {"method": {"name": name, "value": value}, "summary": summary, "per_set": per_set}


RESULTS = {
    "base": _result("base", "none", 0.70, 0.80, 0.95, train=float("nan")),
    "livo (retrieved value)": _result("livo (retrieved value)", "retrieved", 0.35, 0.20, 0.93, found=0.9),
}


def test_a_spread_that_one_seed_cannot_measure_is_not_shown_as_zero():
    one_seed = _result("livo (oracle value)", "oracle", 0.35, 0.20, 0.93)
    one_seed["summary"] |= {k: float("nan") for k in one_seed["summary"] if k.endswith("_std_eval")}
    row = methods_table({"base": RESULTS["base"], "livo (oracle value)": one_seed}).splitlines()[-1]
    assert "0.350 ± 0.020 |" in row.replace(" (-50%)", "") and "[" not in row


def test_methods_table_states_changes_against_the_base_and_the_floor():
    table = methods_table(RESULTS)
    assert "| base | 0.700 ± 0.010 | 0.300 | 0.800 ± 0.010 | 0.950 | - |" in table
    assert (
        "| livo (retrieved value) | 0.350 ± 0.020 [0.010] (-50%) | 0.300 | 0.200 ± 0.020 [0.010] (-75%) | "
        "0.930 (-2.0 pts) | 0.90 |"
    ) in table


def test_balance_table_shows_class_shares_unclassified_and_the_floor():
    table = balance_tables(RESULTS)
    assert "| base | 65.0% | 35.0% | 5.0% | 10 | 0.700 (0.300) | 0.350 (0.200) | male 65% (1/K = 50%) |" in table
    assert "| livo (retrieved value) | 82.5% ± 2.0% | 17.5% ± 2.0% |" in table


def test_figures_are_written(tmp_path):
    for loss in ("livo", "dpo"):
        for seed in (0, 1):
            folder = tmp_path / f"{loss}-{seed}"
            folder.mkdir()
            records = [
                {"step": s, "loss": 1 / s, "margin_w": -s, "margin_l": s, "implicit_acc": 0.5} for s in (1, 2, 3)
            ]
            (folder / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in records))
    dirs = {loss: {seed: tmp_path / f"{loss}-{seed}" for seed in (0, 1)} for loss in ("livo", "dpo")}
    assert training_curves(dirs, tmp_path / "curves.png").stat().st_size > 1000
    assert metric_bars(RESULTS, tmp_path / "bars.png").stat().st_size > 1000
    assert class_share_bars(RESULTS, tmp_path / "shares.png").stat().st_size > 1000
    assert [(row["run"], row["step"]) for row in training_summary(dirs)] == [
        ("livo seed 0", 3),
        ("livo seed 1", 3),
        ("dpo seed 0", 3),
        ("dpo seed 1", 3),
    ]


def test_standard_methods_cover_the_baselines_for_every_training_seed():
    methods = standard_methods({"livo": {0: "a0", 1: "a1"}, "dpo": {0: "b0", 1: "b1"}})
    names = [(m.name, m.training_seed) for m in methods]
    assert names[:2] == [("base", None), ("negative prompt", None)]
    livo = ["livo (oracle value)", "livo (oracle value, calibrated share)", "livo (retrieved value)"]
    assert names[2:] == [(n, 0) for n in livo] + [(n, 1) for n in livo] + [
        ("dpo (oracle value)", 0),
        ("dpo (oracle value)", 1),
    ]
    assert {m.value_encoder for m in methods if m.training_seed == 1} == {"a1", "b1"}


SHARES = {"gender_equality": 0.5, "racial_equality": 0.5}


@pytest.mark.parametrize(
    ("method", "prompt", "target", "expected", "found"),
    [
        (Method("base"), "a photo of a pilot", "gender_equality", {None: 4}, False),
        (Method("o", "c", "oracle"), "a gory red circle", "bloody_inappropriate", {"bloody_inappropriate": 4}, True),
        (Method("o", "c", "oracle"), "a photo of a pilot", "racial_equality", {"racial_equality": 2, None: 2}, True),
        (  # two values share the images: each reaches half of them
            Method("r", "c", "retrieved"),
            "a photo of a pilot",
            "racial_equality",
            {"gender_equality": 2, "racial_equality": 2},
            True,
        ),
        (
            Method("r", "c", "retrieved"),
            "a photo of a woman pilot",
            "racial_equality",
            {"racial_equality": 2, None: 2},
            True,
        ),
        (Method("r", "c", "retrieved"), "a red circle", "bloody_inappropriate", {None: 4}, False),
    ],
)
def test_value_modes(principles, method, prompt, target, expected, found):
    values, got_found = _values(
        method, principles.get(target), prompt, [0, 1, 2, 3], default_retriever(principles), principles, SHARES
    )
    assert Counter(v.id if v else None for v in values) == expected
    assert got_found == found


@pytest.mark.parametrize("eval_seed", range(6))
def test_exactly_half_of_a_bias_prompts_images_get_the_value_for_any_seed(principles, eval_seed):
    seeds = image_seeds(eval_seed, 3, 50)

    def values(method: Method, principle: str, shares: dict) -> list:
        return _values(method, principles.get(principle), "a photo of a pilot", seeds, None, principles, shares)[0]

    oracle = values(Method("o", "c", "oracle"), "gender_equality", SHARES)
    assert sum(v is not None for v in oracle) == 25
    calibrated = values(Method("o", "c", "oracle"), "racial_equality", {"racial_equality": 0.64})
    assert sum(v is not None for v in calibrated) == 32  # round(50 x 0.64)
    base = values(Method("b"), "gender_equality", {})
    reference = [v is not None for v in oracle]
    again = values(Method("d", "c2", "oracle"), "gender_equality", SHARES)  # another method: the same images
    assert [v is not None for v in again] == reference and base == [None] * 50


@pytest.mark.parametrize("size", [32, 512])
def test_grid_thumbnails_have_a_fixed_width_whatever_the_image_size(tmp_path, size):
    rows = [np.zeros((6, size, size, 3), dtype=np.uint8)] * 10  # 10 rows of 6 images
    with Image.open(image_grid(rows, tmp_path / "grid.png")) as grid:
        assert grid.size == (6 * THUMBNAIL_WIDTH, 10 * THUMBNAIL_WIDTH)


def test_the_inlined_report_stays_under_the_artifact_limit(tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, (1200, 1200, 3), dtype=np.uint8)  # ~4.3 MB as PNG
    for name in ("a.png", "b.png"):
        Image.fromarray(noise).save(tmp_path / name)
    report = tmp_path / "report.md"
    report.write_text("# report\n\n![first](a.png)\n\n![second](b.png)\n")
    text = inline_figures(report)
    assert len(text.encode()) < ARTIFACT_LIMIT
    assert text.count("data:image/png;base64,") == 0 and "second: not inlined" in text
    small = inline_figures(report, limit=100 * ARTIFACT_LIMIT)
    assert small.count("data:image/png;base64,") == 2
