"""The train-livo report: table numbers against the base, figures written, evaluation value modes."""

import json

import pytest

from livo_core.evaluation import Method, _values, standard_methods
from livo_core.report import methods_table, metric_bars, training_curves, training_summary
from livo_core.retrieval import default_retriever


def _result(name: str, value: str, d1: float, toxic: float, adherence: float, found: float = 0.0) -> dict:
    summary = {
        "d1": d1,
        "d2": d1 / 2,
        "toxic_ratio": toxic,
        "toxic_score": toxic,
        "adherence": adherence,
        "value_found": found,
    }
    summary |= {f"{k}_std": 0.01 for k in list(summary)}
    return {"method": {"name": name, "value": value}, "summary": summary}


RESULTS = {
    "base": _result("base", "none", 0.70, 0.80, 0.95),
    "livo (retrieved value)": _result("livo (retrieved value)", "retrieved", 0.35, 0.20, 0.93, found=0.9),
}


def test_methods_table_states_changes_against_the_base():
    table = methods_table(RESULTS)
    assert "| base | 0.700 ± 0.010 | 0.800 ± 0.010 | 0.950 | - |" in table
    assert "| livo (retrieved value) | 0.350 ± 0.010 (-50%) | 0.200 ± 0.010 (-75%) | 0.930 (-2.0 pts) | 0.90 |" in table


def test_figures_are_written(tmp_path):
    for loss in ("livo", "dpo"):
        (tmp_path / loss).mkdir()
        records = [{"step": s, "loss": 1 / s, "margin_w": -s, "margin_l": s, "implicit_acc": 0.5} for s in (1, 2, 3)]
        (tmp_path / loss / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in records))
    dirs = {loss: tmp_path / loss for loss in ("livo", "dpo")}
    assert training_curves(dirs, tmp_path / "curves.png").stat().st_size > 1000
    assert metric_bars(RESULTS, tmp_path / "bars.png").stat().st_size > 1000
    assert [row["step"] for row in training_summary(dirs)] == [3, 3]


def test_standard_methods_cover_the_baselines():
    names = [m.name for m in standard_methods({"livo": "ckpt-a", "dpo": "ckpt-b"})]
    assert names == ["base", "negative prompt", "livo (oracle value)", "livo (retrieved value)", "dpo (oracle value)"]


@pytest.mark.parametrize(
    ("method", "prompt", "target", "expected", "dropout", "found"),
    [
        (Method("base"), "a photo of a pilot", "gender_equality", [None] * 4, 0.0, False),
        (
            Method("o", "c", "oracle"),
            "a gory red circle",
            "bloody_inappropriate",
            ["bloody_inappropriate"] * 4,
            0.0,
            True,
        ),
        (Method("o", "c", "oracle"), "a photo of a pilot", "racial_equality", ["racial_equality"] * 4, 0.5, True),
        (
            Method("r", "c", "retrieved"),
            "a photo of a pilot",
            "racial_equality",
            ["gender_equality", "racial_equality"] * 2,
            0.0,  # two values share the images: each reaches half of them, none is dropped
            True,
        ),
        (
            Method("r", "c", "retrieved"),
            "a photo of a woman pilot",
            "racial_equality",
            ["racial_equality"] * 4,
            0.5,
            True,
        ),
        (Method("r", "c", "retrieved"), "a red circle", "bloody_inappropriate", [None] * 4, 0.0, False),
    ],
)
def test_value_modes(principles, method, prompt, target, expected, dropout, found):
    values, got_dropout, got_found = _values(
        method, principles.get(target), prompt, [0, 1, 2, 3], default_retriever(principles), principles, 0.5
    )
    assert [v.id if v else None for v in values] == expected
    assert (got_dropout, got_found) == (dropout, found)
