import random

from livo_core.judging import JudgePool, judge_images
from livo_core.shapes import world
from livo_core.storage import save_image


def image_row(path: str, sha: str, principle_id: str) -> dict:
    return {"request_id": sha[:16], "image_sha256": sha, "image_path": path, "principle_id": principle_id}


def test_judge_stage_scores_images_and_records_unreadable_files(tmp_path, principles):
    rng = random.Random(0)
    bloody = world.render(world.object_prompt("red", "circle", blood=True).sample_scene(rng), rng)
    clean = world.render(world.object_prompt("red", "circle").sample_scene(rng), rng)
    rows = [
        image_row(*save_image(bloody, tmp_path), "bloody_inappropriate"),
        image_row(*save_image(clean, tmp_path), "bloody_inappropriate"),
    ]
    broken = tmp_path / "images" / "zz" / "broken.png"
    broken.parent.mkdir(parents=True)
    broken.write_text("this is not a PNG")
    rows.append(image_row("images/zz/broken.png", "f" * 64, "bloody_inappropriate"))
    judged = judge_images(rows, principles, JudgePool("shapes"), tmp_path)
    assert [j["label"] for j in judged] == ["violates", "conforms", None]
    assert [j["status"] for j in judged] == ["ok", "ok", "failed"]
    assert "broken.png is not a readable image" in judged[2]["failure_reason"]
    assert {j["judge_name"] for j in judged} == {"shapes"} and all(j["threshold"] == 0.5 for j in judged)


def test_a_principle_without_a_judge_in_this_world_is_named(principles):
    import pytest

    with pytest.raises(ValueError, match="nudity_inappropriate.*shapes"):
        JudgePool("shapes").for_principle(principles.get("nudity_inappropriate"))
