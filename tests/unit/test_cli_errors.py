"""Each command on bad input: one `Error: ...` line naming the input and the fix, exit code 2, no traceback, and
nothing loaded first; `--debug` shows the traceback."""

import pytest

from livo_core import cli


def run(args, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(args)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.err + captured.out


@pytest.fixture(autouse=True)
def no_model_loads(monkeypatch):
    """Bad input is refused before any model loads: loading one fails these tests."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the input was checked")

    monkeypatch.setattr("livo_core.models.loading.load_base_pipeline", refuse)
    monkeypatch.setattr("livo_core.pipeline.LivoPipeline.from_pretrained", refuse)
    monkeypatch.setattr("livo_core.training.Trainer.__init__", refuse)


def value_encoder_dir(tmp_path):
    (tmp_path / "export" / "value_encoder").mkdir(parents=True)
    return str(tmp_path / "export")


CASES = {
    "demo": (lambda t: ["demo", "--steps", "0"], "--steps"),
    "generate-empty-prompt": (lambda t: ["generate", " "], "empty prompt"),
    "generate-value": (lambda t: ["generate", "a doctor", "--value", "kindness"], "unknown principle id 'kindness'"),
    "generate-encoder": (lambda t: ["generate", "a doctor", "--value-encoder", str(t / "none")], "no value encoder at"),
    "generate-weights": (
        lambda t: ["generate", "a doctor", "--value-encoder", value_encoder_dir(t), "--base-model", str(t / "sd")],
        "neither a folder nor in the local Hugging Face cache",
    ),
    "experiment-losses": (lambda t: ["experiment", "--losses", "livo,ppo"], "unknown losses ['ppo']"),
    "experiment-seeds": (lambda t: ["experiment", "--training-seeds", "0,one"], "comma-separated list of integers"),
    "train-dataset": (lambda t: ["train", str(t / "none"), str(t / "out")], "no dataset at"),
    "train-config": (lambda t: ["train", "d", "o", "--config", str(t / "nope.yaml")], "nope.yaml: cannot read it"),
    "train-base-model": (lambda t: ["train", "d", "o", "--base-model", str(t / "sd")], "unknown base model"),
    "train-shapes-model": (
        lambda t: ["train-shapes-model", "--out", str(t / "m"), "--init-from", str(t / "none")],
        "neither a folder",
    ),
    "sd15-miniature": (lambda t: ["sd15-miniature", str(t / "file.txt")], "is a file: give a folder"),
    "redteam": (lambda t: ["redteam", str(t), "--checkpoint", f"livo={t / 'none'}"], "expected LOSS=FOLDER"),
    "train-retriever": (lambda t: ["train-retriever", "--out", str(t)], "is a folder: give the weights file"),
    "server-start": (lambda t: ["server", "start", "--port", "70000"], "--port"),
    "worker-start": (lambda t: ["worker", "start", "--workers", "0"], "--workers"),
    "up": (lambda t: ["up", "--port", "0"], "--port"),
    "run-deployment-params": (lambda t: ["run-deployment", "x/y", "--params", "{oops"], "not JSON"),
    "run-deployment-server": (lambda t: ["run-deployment", "livo/local"], "no livo Prefect server is running here"),
    "screenshot": (lambda t: ["screenshot"], "no chromium on PATH"),
    "push-dataset-folder": (lambda t: ["push-dataset", str(t / "none"), "org/name"], "no pairs.parquet"),
    "push-dataset-repo": (lambda t: ["push-dataset", str(t), "name-only"], "is not ORG/NAME"),
    "unknown-command": (lambda t: ["trian"], "No such command 'trian'"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_error_line_with_exit_code_2(case, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no server state here
    monkeypatch.setenv("PATH", str(tmp_path))  # no chromium
    monkeypatch.delenv("LIVO_DEBUG", raising=False)
    (tmp_path / "file.txt").write_text("x")
    args, expected = CASES[case]
    code, output = run(args(tmp_path), capsys)
    lines = output.strip().splitlines()
    assert code == 2, output
    assert len(lines) == 1 and lines[0].startswith("Error: ") and expected in lines[0], output
    assert "Traceback" not in output


def test_debug_shows_the_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv("LIVO_DEBUG", "1")
    with pytest.raises(FileNotFoundError, match="no dataset at"):
        cli.main(["train", str(tmp_path / "none"), str(tmp_path / "out")])
    monkeypatch.delenv("LIVO_DEBUG")
    with pytest.raises(FileNotFoundError):
        cli.main(["--debug", "train", str(tmp_path / "none"), str(tmp_path / "out")])


def test_relative_defaults_resolve_under_livo_root_and_the_error_names_the_path(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LIVO_ROOT", str(tmp_path / "project"))
    monkeypatch.chdir(tmp_path)
    code, output = run(["generate", "a doctor"], capsys)
    assert code == 2 and f"no value encoder at {tmp_path / 'project' / 'outputs' / 'train-livo' / 'export'}" in output
    monkeypatch.delenv("LIVO_ROOT")
    assert cli.default_path("outputs/x") == cli.project_root() / "outputs/x"
    assert (cli.project_root() / "prefect.yaml").is_file()  # the checkout, wherever the command runs


def test_third_party_progress_bars_are_off_unless_verbose(monkeypatch, capsys):
    from huggingface_hub.utils import are_progress_bars_disabled, enable_progress_bars

    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    enable_progress_bars()
    assert run(["--verbose", "sd15-miniature", "--help"], capsys)[0] == 0
    assert not are_progress_bars_disabled()
    assert run(["sd15-miniature", "--help"], capsys)[0] == 0
    assert are_progress_bars_disabled()
    enable_progress_bars()
