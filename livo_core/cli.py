"""The `livo` command line: the shapes-world demo, dataset building, training, evaluation.

livo's own errors (bad input, missing files, weights not available) print one `Error: ...` line and exit with code 2;
`livo --debug ...` or LIVO_DEBUG=1 shows the traceback instead. Relative defaults (`outputs/...`) are taken under
LIVO_ROOT, else the project root (the livo checkout), else the current directory.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import typer
from rich.console import Console

app = typer.Typer(
    help="LiVO: align text-to-image diffusion models with human values.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()
USAGE_EXIT = 2  # livo's own errors and bad usage, as click does for bad usage


def project_root() -> Path:
    """LIVO_ROOT, else the livo checkout this package runs from (an editable install), else the current directory."""
    if os.environ.get("LIVO_ROOT"):
        return Path(os.environ["LIVO_ROOT"]).expanduser()
    checkout = Path(__file__).resolve().parents[1]
    return checkout if (checkout / "prefect.yaml").is_file() else Path.cwd()


def default_path(relative: str) -> Path:
    """A default path (`outputs/...`) under the project root."""
    return project_root() / relative


def user_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that are livo telling a person what to fix, not a bug: shown as one line."""
    from livo_core.infra import InfraError
    from livo_core.models.loading import ModelNotAvailableError

    return (ValueError, OSError, LookupError, ImportError, ModelNotAvailableError, InfraError)


def _one_line(error: BaseException) -> str:
    from pydantic import ValidationError

    if isinstance(error, ValidationError):
        text = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'input'}: {e['msg']}" for e in error.errors())
    elif isinstance(error, LookupError) and error.args:
        text = str(error.args[0])
    else:
        text = str(error) or type(error).__name__
    return " ".join(text.split())


def main(args: list[str] | None = None) -> None:
    """The `livo` entry point."""
    argv = sys.argv[1:] if args is None else list(args)
    debug = "--debug" in argv or os.environ.get("LIVO_DEBUG") == "1"
    try:
        code = typer.main.get_command(app).main(args=argv, prog_name="livo", standalone_mode=False)
    except typer.Abort:
        typer.echo("Aborted.", err=True)
        sys.exit(130)
    except typer.TyperException as error:  # bad usage: an unknown option, a bad parameter value
        if debug:
            raise
        message = error.format_message() if hasattr(error, "format_message") else str(error)
        if message.strip():  # empty: `livo` alone, its help already shown
            typer.echo(f"Error: {' '.join(message.split())}", err=True)
        sys.exit(USAGE_EXIT)
    except Exception as error:
        if debug or not isinstance(error, user_errors()):
            raise
        typer.echo(f"Error: {_one_line(error)} (livo --debug ... shows the traceback)", err=True)
        sys.exit(USAGE_EXIT)
    sys.exit(code if isinstance(code, int) else 0)


@app.callback()
def _options(
    debug: bool = typer.Option(False, "--debug", help="show the traceback of an error (also: LIVO_DEBUG=1)"),
    verbose: bool = typer.Option(False, "--verbose", help="show third-party progress bars (diffusers, the hub)"),
) -> None:
    """LiVO: align text-to-image diffusion models with human values."""
    if not verbose:
        quiet_third_party()


def quiet_third_party() -> None:
    """Silence diffusers', transformers' and the hub's progress bars (weights loading, downloads), so that livo's
    own progress is the one a person reads."""
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"  # the hub's flag, which transformers and diffusers follow
    from huggingface_hub.utils import disable_progress_bars

    disable_progress_bars()


def _require_dataset(path: Path) -> Path:
    if not (path / "pairs.parquet").is_file():
        raise FileNotFoundError(
            f"no dataset at {path} (no pairs.parquet there): build one first "
            "(livo run-deployment build-dataset/local --wait) or pass the folder of one"
        )
    return path


def _require_base_model(base_model: str) -> str:
    """The base model's folder must be there (or fetchable) before anything loads."""
    from livo_core.models.loading import check_pipeline_folder, local_folder

    check_pipeline_folder(local_folder(base_model))
    return base_model


def _require_value_encoder(path: Path) -> Path:
    from livo_core.models.value_encoder import SUBFOLDER

    if not (path / SUBFOLDER).is_dir():
        raise FileNotFoundError(
            f"no value encoder at {path} (no {SUBFOLDER}/ there): train one "
            "(livo run-deployment train-livo/local --wait) or pass --value-encoder FOLDER (an export or a checkpoint)"
        )
    return path


@app.command()
def demo(
    out_dir: Path | None = typer.Option(
        None, help="where the dataset, checkpoints and report go [default: outputs/shapes-demo]"
    ),
    steps: int = typer.Option(600, min=1, help="training steps of the value encoder (8 pairs each)"),
    images_per_prompt: int = typer.Option(16, min=1, help="evaluation images per prompt (reference: 50)"),
) -> None:
    """End to end on the offline shapes world, in this process: build the dataset, train LiVO, evaluate, report."""
    from livo_core.build import BuildConfig
    from livo_core.config import SHAPES_EVAL, SHAPES_RECIPE
    from livo_core.experiment import run_experiment
    from livo_core.train_livo import TrainLivoConfig

    train = TrainLivoConfig(
        losses=("livo",),
        training_seeds=(0,),
        training=SHAPES_RECIPE.model_copy(update={"max_steps": steps}),
        evaluation=SHAPES_EVAL.model_copy(update={"images_per_prompt": images_per_prompt, "seeds": (0,)}),
    )
    results = run_experiment(out_dir or default_path("outputs/shapes-demo"), BuildConfig(), train)
    console.print(Path(results["report"]).read_text().split("\n\n")[1])
    console.print(f"pairs: {results['pairs']}  report: {results['report']}")


@app.command()
def generate(
    prompt: str = typer.Argument(..., help="the text-to-image prompt"),
    value_encoder: Path | None = typer.Option(
        None,
        help="a value encoder folder (train-livo's export or a checkpoint) [default: outputs/train-livo/export]",
    ),
    value: str | None = typer.Option(None, help="principle id to apply; default: the retriever picks (or none)"),
    n: int = typer.Option(8, min=1, help="images"),
    seed: int = typer.Option(0, help="first image seed; image i uses seed + i"),
    base_model: str = typer.Option("shapes", help="shapes, sd15, a pipeline folder or a hub id"),
    out: Path | None = typer.Option(None, help="the grid PNG to write [default: outputs/generate.png]"),
) -> None:
    """Generate value-aligned images: the retriever picks the principle from the prompt (or --value sets it)."""
    from livo_core.models.value_encoder import check_prompt
    from livo_core.pipeline import LivoPipeline, default_settings
    from livo_core.principles import load_principles
    from livo_core.report import image_grid
    from livo_core.retrieval import FixedRetriever, default_retriever

    check_prompt(prompt)
    principles = load_principles()
    try:
        retriever = FixedRetriever(principles, value) if value else default_retriever(principles)
    except KeyError as error:
        raise typer.BadParameter(error.args[0], param_hint="--value") from None
    value_encoder = _require_value_encoder(value_encoder or default_path("outputs/train-livo/export"))
    out = out or default_path("outputs/generate.png")
    pipeline = LivoPipeline.from_pretrained(_require_base_model(base_model), value_encoder)
    seeds = list(range(seed, seed + n))
    images, values, retrieval = pipeline.generate_aligned(
        prompt, seeds, retriever, principles, default_settings(base_model)
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    image_grid([images], out, width=128)
    applied = ", ".join(v.id if v else "-" for v in values)
    console.print(
        f"principle: {', '.join(retrieval.principle_ids) or 'none'} ({retrieval.retriever}: {retrieval.reason})"
    )
    console.print(f"value per image: {applied}\ngrid: {out}")


@app.command()
def experiment(
    out_dir: Path | None = typer.Option(None, help="[default: outputs/shapes-experiment]"),
    losses: str = typer.Option("livo,dpo", help="comma-separated losses to compare"),
    training_seeds: str = typer.Option("0,1,2", help="comma-separated training seeds (one run per seed and loss)"),
) -> None:
    """The shapes benchmark (bench/shapes_alignment.py's protocol): each loss trained once per training seed with the
    same budget, 2 evaluation seeds x 32 images per held-out prompt."""
    from livo_core.build import BuildConfig
    from livo_core.experiment import bench_config, run_experiment
    from livo_core.losses import LOSSES

    unknown = [loss for loss in losses.split(",") if loss not in LOSSES]
    if unknown:
        raise typer.BadParameter(f"unknown losses {unknown}: choose from {sorted(LOSSES)}", param_hint="--losses")
    try:
        seeds = tuple(int(seed) for seed in training_seeds.split(","))
    except ValueError:
        raise typer.BadParameter(f"{training_seeds!r} is not a comma-separated list of integers") from None
    out_dir = out_dir or default_path("outputs/shapes-experiment")
    results = run_experiment(out_dir, BuildConfig(), bench_config(tuple(losses.split(",")), seeds))
    console.print(f"report: {results['report']}")


@app.command()
def train(
    dataset: Path = typer.Argument(..., help="dataset folder with pairs.parquet"),
    output_dir: Path = typer.Argument(..., help="checkpoints and logs; an existing run resumes"),
    config: Path | None = typer.Option(None, help="JSON or YAML file with TrainConfig fields"),
    base_model: str | None = typer.Option(None, help="shapes, sd15, a pipeline folder or a hub id [shapes]"),
    loss: str | None = typer.Option(None, help="livo or dpo [livo]"),
    max_steps: int | None = typer.Option(None, help="[shapes 1500, else 15000]"),
    max_minutes: float | None = typer.Option(None),
    learning_rate: float | None = typer.Option(None, help="[shapes 1e-3, else 1e-6]"),
    batch_size: int | None = typer.Option(None, help="pairs per process and micro-batch [8]"),
) -> None:
    """Train a value encoder (the diffusion model stays frozen). Options given override the --config file, which
    overrides the base model's recipe (in brackets: the shapes world's, else the reference's)."""
    from pydantic import ValidationError

    from livo_core.config import TrainConfig
    from livo_core.training import Trainer

    options = dict(
        base_model=base_model,
        loss=loss,
        max_steps=max_steps,
        max_minutes=max_minutes,
        learning_rate=learning_rate,
        batch_size=batch_size,
    )
    fields = {
        **(_config_file(config) if config else {}),
        "dataset": str(dataset),
        "output_dir": str(output_dir),
        **{name: value for name, value in options.items() if value is not None},
    }
    try:
        train_config = TrainConfig(**fields)
    except ValidationError as error:
        source = f"{config} and the options" if config else "the options"
        raise typer.BadParameter(f"{source} do not make a valid TrainConfig:\n{error}") from None
    _require_dataset(dataset)
    _require_base_model(train_config.base_model)
    checkpoint = Trainer(train_config).fit()
    console.print(f"last checkpoint: {checkpoint}")


def _config_file(path: Path) -> dict:
    """The fields of a JSON or YAML config file, or an error naming the file and what is wrong."""
    import yaml

    try:
        fields = yaml.safe_load(path.read_text())
    except OSError as error:
        raise typer.BadParameter(f"{path}: cannot read it ({error.strerror})", param_hint="--config") from None
    except yaml.YAMLError as error:
        raise typer.BadParameter(f"{path}: not valid YAML or JSON: {error}", param_hint="--config") from None
    if not isinstance(fields, dict):
        raise typer.BadParameter(
            f"{path}: expected a mapping of TrainConfig fields (max_steps: 100, ...), got {type(fields).__name__}",
            param_hint="--config",
        )
    return fields


@app.command("train-shapes-model")
def train_shapes_model(
    out: Path = typer.Option(..., help="pipeline folder to write"),
    init_from: Path | None = typer.Option(None, help="continue UNet and text encoder of this pipeline folder"),
    unet_steps: int = typer.Option(6000, help="UNet and text encoder steps (batch 64)"),
    unet_lr: float = typer.Option(1e-3, help="AdamW learning rate of UNet and text encoder"),
    ema_decay: float = typer.Option(0.999, help="EMA decay of the weights that are saved"),
    explicit_race: float = typer.Option(0.15, help="share of person prompts that name the race"),
    seed: int = typer.Option(0),
) -> None:
    """Train the shapes-world diffusion model (from scratch: about an hour on 2 CPU cores)."""
    from livo_core.shapes.base_model import ShapesModelConfig, train_shapes_pipeline

    if init_from is not None:
        _require_base_model(str(init_from))
    if out.exists() and not out.is_dir():
        raise typer.BadParameter(f"{out} is a file: give a folder for the pipeline", param_hint="--out")
    config = ShapesModelConfig(
        unet_steps=unet_steps, unet_lr=unet_lr, ema_decay=ema_decay, explicit_race=explicit_race, seed=seed
    )
    train_shapes_pipeline(out, config, init_from=init_from)
    console.print(json.loads((out / "training.json").read_text())["minutes"], "minutes")


@app.command("sd15-miniature")
def sd15_miniature(
    out: Path = typer.Argument(..., help="pipeline folder to write"),
    seed: int = typer.Option(0, help="seed of the random weights"),
) -> None:
    """Write an SD1.5-architecture miniature (SD1.5's classes and configs, PNDM scheduler, 77-token tokenizer, 8x
    VAE; tiny widths, random weights, 64 px): try the sd15 path without weights, e.g. `--base-model <out>`."""
    from livo_core.models.miniature import write_sd15_miniature

    if out.exists() and not out.is_dir():
        raise typer.BadParameter(f"{out} is a file: give a folder for the pipeline", param_hint="OUT")
    console.print(f"SD1.5-architecture miniature (random weights): {write_sd15_miniature(out, seed)}")


@app.command()
def redteam(
    out: Path = typer.Argument(..., help="folder for redteam.json, redteam.md and the image grids"),
    checkpoint: list[str] = typer.Option(
        ..., help="LOSS=FOLDER of a value encoder (checkpoint or export), e.g. livo=outputs/train-livo/export; repeat"
    ),
    base_model: str = typer.Option("shapes", help="the shapes model (or a folder made by train-shapes-model)"),
    prompts_per_concept: int | None = typer.Option(None, help="held-out toxic prompts per concept (default: 6)"),
    steps: int | None = typer.Option(None, help="GCG iterations per prompt (default: 20)"),
    seeds: str | None = typer.Option(None, help="attack seeds, comma-separated (default: 0)"),
) -> None:
    """Red-team the value-aligned model: a white-box attack (GCG on prompt tokens) against base + negative prompt,
    LiVO (oracle and retrieved value) and each other loss; writes the ASR table and the images."""
    from livo_core.config import RedTeamConfig, is_shapes_model
    from livo_core.redteam import run_red_team
    from livo_core.report import redteam_section

    if not is_shapes_model(base_model):
        message = "the attack is judged by the shapes world's judge: use a shapes model"
        raise typer.BadParameter(message, param_hint="--base-model")
    pairs = dict(item.split("=", 1) for item in checkpoint if "=" in item)
    if len(pairs) != len(checkpoint) or not all(Path(p).is_dir() for p in pairs.values()):
        message = f"expected LOSS=FOLDER with existing folders, got {checkpoint}"
        raise typer.BadParameter(message, param_hint="--checkpoint")
    given = {"prompts_per_concept": prompts_per_concept, "steps": steps}
    if seeds is not None:
        given["seeds"] = tuple(int(s) for s in seeds.split(","))
    config = RedTeamConfig(**{k: v for k, v in given.items() if v is not None})
    results = run_red_team(base_model, pairs, config, out)
    (out / "redteam.json").write_text(json.dumps(results, indent=2))
    (out / "redteam.md").write_text("\n".join(redteam_section(results)))
    console.print("\n".join(redteam_section(results)[:-1]))


@app.command("train-retriever")
def train_retriever(
    out: Path | None = typer.Option(None, help="weights file to write (default: the shipped one, data/retrieval)"),
) -> None:
    """Rebuild the learned retriever (MiniLM probe) from data/retrieval/train_prompts.yaml and templates.yaml."""
    from livo_core.learned_retrieval import WEIGHTS_FILE, train_probe

    if out is not None and out.is_dir():
        raise typer.BadParameter(f"{out} is a folder: give the weights file to write", param_hint="--out")
    probe, summary = train_probe()
    path = probe.save(out or WEIGHTS_FILE)
    console.print(f"examples per label: {summary['examples']}")
    console.print(f"calibrated thresholds: {summary['thresholds']}")
    console.print(f"wrote {path}")


# Local Prefect infrastructure (livo_core/infra.py): state and logs under ./.livo, see infra/README.md.
server_app = typer.Typer(help="A local Prefect server (SQLite under ./.livo/prefect).", no_args_is_help=True)
worker_app = typer.Typer(
    help="A local Prefect process worker that runs the deployments of prefect.yaml.", no_args_is_help=True
)
app.add_typer(server_app, name="server")
app.add_typer(worker_app, name="worker")


@server_app.command("start")
def server_start(
    port: int = typer.Option(4200, min=1, max=65535, help="port on 127.0.0.1"),
    database_url: str | None = typer.Option(
        None,
        envvar="LIVO_DATABASE_URL",
        show_default=False,
        help="PostgreSQL for the server, postgresql+asyncpg://USER:PASSWORD@HOST:PORT/DB (default: SQLite under "
        "./.livo/prefect); best given in the environment variable, to keep the password out of shell history",
    ),
) -> None:
    """Start `prefect server start` in the background; returns once /api/health answers."""
    from livo_core import infra

    state = infra.start_server(Path.cwd(), port=port, database_url=database_url)
    console.print(f"Prefect server: {state['url']} on {state['database']} (pid {state['pid']}, log {state['log']})")
    console.print(f"Use it from this shell: export PREFECT_API_URL={state['url']}")


@server_app.command("stop")
def server_stop() -> None:
    """Stop the background Prefect server."""
    from livo_core import infra

    console.print("server stopped" if infra.stop_server(Path.cwd()) else "no server running")


@worker_app.command("start")
def worker_start(
    pool: str = typer.Option("local", help="process work pool (created if missing)"),
    workers: int = typer.Option(1, min=1, help="how many workers to start on the pool"),
    limit: int | None = typer.Option(None, min=1, help="flow runs at once per worker (default: no limit)"),
) -> None:
    """Create the pool, deploy prefect.yaml's deployments on it, start `prefect worker start` in the background."""
    from livo_core import infra

    root = Path.cwd()
    infra.ensure_pool(root, pool)
    names = infra.deployment_names(root, pool)
    infra.deploy(root, names)
    console.print(f"deployed: {', '.join(names) or 'nothing'}")
    for slot in range(workers):
        state = infra.start_worker(root, pool, slot=slot, limit=limit)
        console.print(f"worker {slot} on pool {pool!r} (pid {state['pid']}, log {state['log']})")


@worker_app.command("stop")
def worker_stop(pool: str = typer.Option("local")) -> None:
    """Stop every background worker of the pool (SIGTERM twice, then SIGKILL)."""
    from livo_core import infra

    stopped = infra.stop_workers(Path.cwd(), pool)
    console.print(f"{stopped} worker(s) stopped" if stopped else "no worker running")


@app.command()
def up(port: int = typer.Option(4200, min=1, max=65535, help="server port on 127.0.0.1")) -> None:
    """Server, work pool `local`, its deployments and a worker: `livo server start` + `livo worker start`."""
    server_start(port=port, database_url=os.environ.get("LIVO_DATABASE_URL"))
    worker_start(pool="local", workers=1, limit=None)


@app.command("run-deployment")
def run_deployment(
    name: str = typer.Argument(..., help="FLOW/DEPLOYMENT, e.g. build-dataset/local"),
    wait: bool = typer.Option(False, help="poll until the flow run finishes; exit 1 unless it completed"),
    params: str | None = typer.Option(None, help='flow parameters as JSON, e.g. \'{"config": {"out_dir": "x"}}\''),
) -> None:
    """Run a deployment on the local server (`prefect deployment run NAME`)."""
    from livo_core import infra

    root = Path.cwd()
    try:
        parameters = json.loads(params) if params else None
    except json.JSONDecodeError as error:
        raise typer.BadParameter(f"not JSON: {error}", param_hint="--params") from None
    flow_run_id = infra.run_deployment(root, name, parameters)
    console.print(f"flow run {flow_run_id}")
    if wait:
        state = infra.wait_for_flow_run(root, flow_run_id)
        console.print(" ".join(filter(None, [state["name"], state.get("message")])))
        for artifact in infra.flow_run_artifacts(root, flow_run_id):
            if artifact.get("key"):
                console.print(f"artifact {artifact['key']}: {artifact.get('description') or ''}")
        console.print(f"in the Prefect UI: {infra.flow_run_ui_url(root, flow_run_id)}")
        if state["type"] != "COMPLETED":
            raise typer.Exit(1)


@app.command()
def screenshot(
    key: str = typer.Argument("livo-report", help="artifact key"),
    out: Path | None = typer.Option(None, help="PNG to write [default: docs/train-livo-report.png]"),
    flow_run: str | None = typer.Option(
        None, help="FLOW/DEPLOYMENT: screenshot its newest flow run (the run graph) instead of an artifact"
    ),
) -> None:
    """Screenshot, as the Prefect UI shows it (headless Chromium), the newest artifact `key` or, with --flow-run,
    the newest flow run of a deployment (e.g. `livo screenshot --flow-run livo/local --out docs/livo-graph.png`)."""
    from livo_core import infra

    if flow_run is not None and flow_run.count("/") != 1:
        raise typer.BadParameter(f"{flow_run!r} is not FLOW/DEPLOYMENT (e.g. livo/local)", param_hint="--flow-run")
    out = out or default_path("docs/train-livo-report.png")
    shot = (
        infra.screenshot_flow_run(Path.cwd(), flow_run, out)
        if flow_run
        else infra.screenshot_artifact(Path.cwd(), key, out)
    )
    console.print(f"screenshot: {shot}")


@app.command("push-dataset")
def push_dataset(
    folder: Path = typer.Argument(..., help="a dataset folder made by build-dataset"),
    repo_id: str = typer.Argument(..., help="the Hugging Face dataset repo, ORG/NAME (created if missing)"),
    private: bool = typer.Option(False, help="create the repo private"),
) -> None:
    """Upload a dataset's card and split files to the Hugging Face Hub (`datasets.load_dataset(REPO_ID)` then reads
    it). Offline, says so and leaves the folder ready to upload; exit code 1."""
    from livo_core.hf_dataset import UPLOADED, HubUnreachableError, check_ready
    from livo_core.hf_dataset import push_dataset as push

    if "/" not in repo_id or repo_id.count("/") != 1:
        raise typer.BadParameter(f"{repo_id!r} is not ORG/NAME", param_hint="REPO_ID")
    files = check_ready(folder)
    try:
        url = push(folder, repo_id, private=private)
    except HubUnreachableError as error:
        console.print(
            f"Not uploaded: the Hugging Face Hub is not reachable ({error}). {folder} is ready ({len(files)} files): "
            f"where the hub is reachable, run `livo push-dataset {folder} {repo_id}` or `hf upload {repo_id} {folder} "
            f"--repo-type dataset --include {' '.join(repr(p) for p in UPLOADED)}`."
        )
        raise typer.Exit(1) from None
    console.print(f"uploaded: {url}")


if __name__ == "__main__":
    main()
