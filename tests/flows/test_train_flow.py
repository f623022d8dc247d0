"""train-livo on a tiny config: trains both losses, evaluates every method, reports, exports; a re-run reuses all."""

import json
import shutil
from pathlib import Path

import fsspec
import pytest
from prefect.client.orchestration import get_client
from transformers import CLIPTextModel

from flows.train_livo import train_livo
from livo_core.checkpoint import list_checkpoints, read_state
from livo_core.config import EvalConfig, RedTeamConfig, TrainRecipe
from livo_core.evaluation import dataset_eval_sets
from livo_core.models.loading import load_base_pipeline
from livo_core.remote import Mirror
from livo_core.schema import PAIRS, read_table
from livo_core.train_livo import TrainLivoConfig
from tests.conftest import TINY_CLIP

CANARY = "sk-livo-canary-7b3d19f2"
METHODS = (
    "base",
    "negative prompt",
    "livo (oracle value)",
    "livo (oracle value, calibrated share)",
    "livo (retrieved value)",
    "dpo (oracle value)",
)


@pytest.fixture
def config(tiny_pipeline_dir, dataset, tmp_path, tiny_clip):
    recipe = TrainRecipe(
        learning_rate=1e-3, batch_size=4, max_steps=4, checkpoint_every=2, log_every=1, validation_principle=None
    )
    evaluation = EvalConfig(
        images_per_prompt=5,
        seeds=(0,),
        steps=2,
        guidance_scale=3.0,
        batch_size=64,
        clip_model=TINY_CLIP,
        clip_pretrained=str(tiny_clip[1]),
    )
    return TrainLivoConfig(
        dataset=str(dataset),
        out_dir=str(tmp_path / "run"),
        training_seeds=(0, 1),
        base_model=str(tiny_pipeline_dir),
        training=recipe,
        evaluation=evaluation,
        redteam=RedTeamConfig(prompts_per_concept=1, steps=1, candidates=2, images_per_prompt=2, target_images=1),
    )


def _mtimes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def test_train_livo_flow_reports_exports_and_reruns_from_cache(prefect_harness, config):
    out = Path(config.out_dir)
    report = Path(train_livo(config))

    assert report == out / "report" / "report.md"
    text = report.read_text()
    for method in METHODS:
        assert f"| {method} |" in text
    assert "| CLIP score | FID (CLIP) vs base |" in text
    results = json.loads((report.parent / "results.json").read_text())
    summaries = {m: r["summary"] for m, r in results.items()}
    assert summaries["base"]["fid_clip"] == pytest.approx(0.0, abs=1e-9)  # the base against itself
    assert summaries["livo (oracle value)"]["fid_clip"] > 0.0  # the value token changes the images
    assert all(0.0 <= s["clip_score"] <= 100.0 for s in summaries.values())
    assert results["livo (oracle value)"]["training_seeds"] == [0, 1]  # one row, mean over both training runs
    assert summaries["livo (oracle value)"]["d1_std_train"] >= 0.0 and "d1_std_eval" in summaries["base"]
    assert "### gender_equality" in text and "D1 (floor)" in text
    assert "## Red team: a white-box attack on each method" in text
    redteam = json.loads((report.parent / "redteam.json").read_text())
    attacked = ["negative prompt", "livo (oracle value)", "livo (retrieved value)", "dpo (oracle value)"]
    assert redteam["targets_order"] == attacked
    assert set(redteam["targets"]["livo (retrieved value)"]) == {"bloody_inappropriate", "horror_inappropriate"}
    for per_set in results["base"]["per_set"].values():  # every number names the evaluator that made it
        judge = per_set["judge"]
        assert judge["name"] and judge["version"] and judge["weights"] and judge["classes"]
        assert judge["threshold"] == 0.5
    for figure in ("metrics.png", "class_shares.png", "training_curves.png", "grid_base_vs_livo.png"):
        assert (report.parent / figure).stat().st_size > 1000
    for loss in ("livo", "dpo"):
        for seed in (0, 1):
            assert read_state(list_checkpoints(out / f"train-{loss}-seed{seed}")[-1])["step"] == 4
    exported = CLIPTextModel.from_pretrained(out / "export", subfolder="value_encoder")
    assert exported.config.hidden_size == load_base_pipeline(config.base_model).text_encoder.config.hidden_size
    assert "| livo (retrieved value) |" in (out / "export" / "README.md").read_text()
    with get_client(sync_client=True) as client:
        artifact = client.read_latest_artifacts(limit=50)
    markdown = [a for a in artifact if a.key == "livo-report"]
    assert markdown and "data:image/png;base64," in markdown[0].data

    before = _mtimes(out / "train-livo-seed0") | _mtimes(out / "evaluation")
    assert Path(train_livo(config)) == report
    assert _mtimes(out / "train-livo-seed0") | _mtimes(out / "evaluation") == before  # nothing trained again


def test_dataset_eval_sets_read_one_split_per_principle(dataset, principles):
    rows = read_table(dataset / "pairs.parquet", PAIRS).to_pylist()
    split = rows[0]["split"]
    sets = dataset_eval_sets(principles, dataset, "shapes", split=split)
    for eval_set in sets:
        expected = {r["prompt"] for r in rows if r["principle_id"] == eval_set.principle.id and r["split"] == split}
        assert set(eval_set.prompts) == expected and len(eval_set.prompts) == len(expected)
        assert eval_set.judge.name == "shapes" and eval_set.adherent is None
    with pytest.raises(ValueError, match="no annotated prompts in split 'nowhere'"):
        dataset_eval_sets(principles, dataset, "shapes", split="nowhere")


def test_train_livo_reads_and_writes_urls_and_resumes_on_another_machine(
    prefect_harness, config, tmp_path, monkeypatch
):
    monkeypatch.setenv("LIVO_MIRROR_DIR", str(tmp_path / "mirrors"))
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)  # in the environment of the run: never in what it writes
    bucket = f"memory://livo-test/{tmp_path.name}"
    Mirror(f"{bucket}/dataset", Path(config.dataset)).push()  # the dataset lives at a URL only
    remote = config.model_copy(
        update={"dataset": f"{bucket}/dataset", "out_dir": f"{bucket}/run", "losses": ("livo",), "training_seeds": (0,)}
    )
    fs = fsspec.filesystem("memory")

    assert train_livo(remote) == f"{bucket}/run/report/report.md"

    stored = sorted(fs.find(f"/livo-test/{tmp_path.name}/run"))
    assert any("/train-livo-seed0/checkpoint-0000004/value_encoder/" in path for path in stored)
    assert any(path.endswith("/export/value_encoder/model.safetensors") for path in stored)
    metrics = fs.cat_file(f"/livo-test/{tmp_path.name}/run/train-livo-seed0/metrics.jsonl")
    assert [json.loads(line)["step"] for line in metrics.splitlines()] == [1, 2, 3, 4]
    assert all(CANARY.encode() not in fs.cat_file(path) for path in stored)  # checkpoints, report, export

    # another machine: empty mirrors; the run is pulled, training resumes at step 4 (nothing to do)
    shutil.rmtree(tmp_path / "mirrors")
    assert train_livo(remote) == f"{bucket}/run/report/report.md"
    assert fs.cat_file(f"/livo-test/{tmp_path.name}/run/train-livo-seed0/metrics.jsonl") == metrics
