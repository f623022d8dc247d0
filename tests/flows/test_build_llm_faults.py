"""build-dataset against a faulty LLM endpoint (a real HTTP server on 127.0.0.1): 500s, malformed and
schema-violating JSON, 429, a hung stream. Transient faults are retried and pass; the others become failed
annotation rows with their reasons; the flow completes and its `build-failures` artifact counts them. The API key
reaches the endpoint and nothing else."""

import json
from collections import Counter

import pytest
from prefect.artifacts import Artifact
from prefect.blocks.system import Secret

from flows.build_dataset import build_dataset
from livo_core.annotate import AnnotateConfig, OfflineAnnotator, PromptRecord
from livo_core.build import BuildConfig, GenerateConfig
from livo_core.prompts import PromptConfig
from livo_core.schema import ANNOTATIONS, read_table
from tests.helpers.llm_server import ChatServer, Reply, running, user_data

# prompt -> the fault its requests meet (none: a good answer at once)
FAULTS = {
    "a red square with blood on it": "always 500",
    "a green circle covered in blood": "malformed JSON",
    "a zombie blue triangle": "unknown principle",
    "a photo of a doctor": "429 once",
    "a photo of a nurse": "hung stream once",
    "a yellow square": None,
    "a photo of a teacher": None,
    "a bloody purple circle": None,
}
FAILING = {"always 500", "malformed JSON", "unknown principle"}
CANARY = "sk-livo-canary-0c4f2a9e"  # the API key: it must reach the endpoint and nothing else


def _answer(offline: OfflineAnnotator, prompt: str) -> str:
    """What a good LLM would answer: the offline annotator's decision, in the answer schema."""
    (a,) = offline.annotate([PromptRecord("p", prompt)])
    fields = {"principle_ids": list(a.principle_ids), "category": a.category, "rewrite": a.rewrite}
    return json.dumps(
        {**fields, "attribute_classes": None if a.attribute_classes is None else list(a.attribute_classes)}
    )


@pytest.fixture(params=["environment", "secret block"])
def faulty_llm(request, prefect_harness, monkeypatch):
    """The endpoint, and the API key in the environment or only in a Prefect Secret block."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    if request.param == "environment":
        monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    else:
        monkeypatch.setenv("OPENAI_API_KEY", "")  # restored after the test, whatever the flow sets it to
        monkeypatch.delenv("OPENAI_API_KEY")
        Secret(value=CANARY).save("openai-api-key", overwrite=True)
        request.addfinalizer(lambda: Secret.delete("openai-api-key"))
    offline, attempts = OfflineAnnotator(), Counter()

    def respond(body: dict) -> Reply:
        prompt = user_data(body)["prompt"]
        attempts[prompt] += 1
        fault, first = FAULTS[prompt], attempts[prompt] == 1
        if fault == "always 500":
            return Reply(500, "overloaded")
        if fault == "malformed JSON":
            return Reply(content='{"principle_ids": [')
        if fault == "unknown principle":
            return Reply(content=json.dumps({"principle_ids": ["be_nice"], "category": "toxicity", "rewrite": "x"}))
        if fault == "429 once" and first:
            return Reply(429, "slow down", {"Retry-After": "0"})
        if fault == "hung stream once" and first:
            return Reply(content=_answer(offline, prompt), stall_s=5.0)
        return Reply(content=_answer(offline, prompt))

    with running(ChatServer(responder=respond)) as server:
        yield server, attempts


def test_a_faulty_llm_gives_failed_rows_with_reasons_and_the_flow_completes(
    prefect_harness, faulty_llm, tiny_pipeline_dir, tmp_path
):
    server, attempts = faulty_llm
    prompts = tmp_path / "prompts.csv"
    prompts.write_text("prompt\n" + "\n".join(FAULTS) + "\n")
    annotate = AnnotateConfig(base_url=server.base_url, timeout_s=1.0, max_attempts=3, retry_wait_s=0.01)
    config = BuildConfig(
        out_dir=str(tmp_path / "dataset"),
        prompts=PromptConfig(sources=("files",), files=(str(prompts),), dedup="exact"),
        annotate=annotate,
        generate=GenerateConfig(base_model=str(tiny_pipeline_dir), seeds_per_prompt=1, steps=2, batch_size=16),
    )

    state = build_dataset(config, return_state=True)

    assert state.is_completed()
    rows = {r["prompt"]: r for r in read_table(tmp_path / "dataset/annotations.parquet", ANNOTATIONS).to_pylist()}
    failed = {prompt for prompt, row in rows.items() if row["status"] == "failed"}
    assert failed == {prompt for prompt, fault in FAULTS.items() if fault in FAILING}
    assert "InternalServerError after 3 attempt(s)" in rows["a red square with blood on it"]["failure_reason"]
    assert all(rows[p]["failure_reason"] for p in failed)
    # bounded: 3 tries for each failing prompt; the transient faults took 2, the rest 1 (no re-asking)
    assert {p: attempts[p] for p in FAULTS} == {
        p: 3 if fault in FAILING else 2 if fault else 1 for p, fault in FAULTS.items()
    }
    artifacts = _artifacts(state)
    (report,) = [a for a in artifacts if a.key == "build-failures"]
    annotate_row = next(r for r in json.loads(report.data) if r["stage"] == "annotate")
    assert (annotate_row["rows"], annotate_row["failed"]) == (len(FAULTS), len(failed))
    # the key was sent, and is nowhere else: not in the dataset's files (Parquet, caches), artifacts or logs
    assert set(server.authorizations) == {f"Bearer {CANARY}"}
    for path in (tmp_path / "dataset").rglob("*"):
        assert not path.is_file() or CANARY.encode() not in path.read_bytes(), path
    assert all(CANARY not in f"{a.data} {a.description}" for a in artifacts)
    assert _logs(state) and all(CANARY not in log.message for log in _logs(state))


def _artifacts(state) -> list[Artifact]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        flow_run_filter = ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])
        return client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=flow_run_filter))


def _logs(state) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    with get_client(sync_client=True) as client:
        flow_run_filter = LogFilterFlowRunId(any_=[state.state_details.flow_run_id])
        return client.read_logs(log_filter=LogFilter(flow_run_id=flow_run_filter))
