"""kill -9 of a build-dataset worker (a real SIGKILL of a real process) during image generation, judging and the
Parquet write of pairs.parquet: the re-run completes and its dataset equals an uninterrupted run's.

The stages run through `run_build`, the functions the Prefect flow runs as tasks. The worker is a child process that
kills itself at the exact point by wrapping the function there (the production code has no fault hooks); the
uninterrupted run and the re-runs run in this process (no second start-up), all on one torch thread so that every
run computes the same pixels.
"""

import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from livo_core.build import BuildConfig, GenerateConfig, run_build
from livo_core.dataset import validate_dataset
from livo_core.prompts import PromptConfig
from livo_core.schema import IMAGES, JUDGMENTS, PAIRS, SchemaError, read_table
from livo_core.shapes.prompts import shapes_prompts

ROOT = Path(__file__).resolve().parents[2]
ENV = os.environ | {"OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1"}

_CHILD = """
import os, signal, sys
import torch
torch.set_num_threads(1)

def kill_on_call(n):
    calls = [0]
    def count():
        calls[0] += 1
        if calls[0] == n:
            os.kill(os.getpid(), signal.SIGKILL)
    return count

{inject}
from livo_core.build import BuildConfig, run_build
run_build(BuildConfig.model_validate_json(sys.argv[1]))
"""

# The 20th PNG (the second shard's 4th): written and fsynced under its temporary name, not renamed yet.
IN_GENERATION = """
real_replace, count = os.replace, kill_on_call(20)
def replace(src, dst):
    if str(dst).endswith(".png"):
        count()
    real_replace(src, dst)
os.replace = replace
"""

# The 20th image judged: in the second shard, whose judgments are not written yet.
IN_JUDGING = """
import livo_core.judging as judging
real_load, count = judging.load_image, kill_on_call(20)
def load_image(path):
    count()
    return real_load(path)
judging.load_image = load_image
"""

# pairs.parquet streamed in row groups of 8 pairs; killed before the second one, the first already written.
IN_PARQUET_WRITE = """
import pyarrow.parquet as pq
import livo_core.build as build
real_write_pairs, real_write_table, count = build.write_pairs, pq.ParquetWriter.write_table, kill_on_call(2)
def write_pairs(batches, root, meta):
    return real_write_pairs((b[i : i + 8] for b in batches for i in range(0, len(b), 8)), root, meta)
def write_table(self, table, *args, **kwargs):
    if ".pairs.parquet." in str(self.where):
        count()
    return real_write_table(self, table, *args, **kwargs)
build.write_pairs, pq.ParquetWriter.write_table = write_pairs, write_table
"""


def _killed_run(config: BuildConfig, inject: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD.format(inject=inject), config.model_dump_json()],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        timeout=300,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()[-3000:]


@pytest.fixture(scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def make_config(tmp_path_factory, one_thread):
    """A small build of the trained shapes model (the tiny random one makes no pairs): a quarter of the shapes
    prompts, 2 sampler steps, shards of 16 images (about 10 shards, 140 images, 40 pairs)."""
    folder = tmp_path_factory.mktemp("build_faults")
    prompts = folder / "prompts.csv"
    with open(prompts, "w", newline="") as handle:
        csv.writer(handle).writerows([["prompt"]] + [[row.prompt] for row in shapes_prompts()[::4]])

    def make(name: str) -> BuildConfig:
        return BuildConfig(
            out_dir=str(folder / name),
            prompts=PromptConfig(sources=("files",), files=(str(prompts),), dedup="exact"),
            generate=GenerateConfig(base_model="shapes", seeds_per_prompt=1, steps=2, batch_size=16, shard_size=16),
        )

    return make


@pytest.fixture(scope="module")
def reference(make_config) -> Path:
    config = make_config("reference")
    run_build(config)
    return Path(config.out_dir)


def _rows(paths, schema, key) -> list[dict]:
    return sorted((row for path in paths for row in read_table(path, schema).to_pylist()), key=key)


def _assert_same_dataset(root: Path, reference: Path) -> None:
    """Whole files only, the same shards, images, judgments and pairs as the uninterrupted run, nothing twice."""
    assert validate_dataset(root).ok
    for png in root.glob("images/*/*.png"):
        with Image.open(png) as image:
            image.load()
    for latent in root.glob("latents/*/*/*.safetensors"):
        load_file(latent)
    for path in [root / "pairs.parquet", *root.glob("shards/*.parquet")]:
        pq.read_table(path)

    def names(folder: Path, pattern: str) -> list[str]:
        return sorted(str(p.relative_to(folder)) for p in folder.glob(pattern))

    for pattern in ("shards/*.parquet", "images/*/*.png", "latents/*/*/*.safetensors"):
        assert names(root, pattern) == names(reference, pattern)
    for prefix, schema in (("images", IMAGES), ("judgments", JUDGMENTS)):
        rows = [_rows((r / "shards").glob(f"{prefix}-*"), schema, lambda x: x["request_id"]) for r in (root, reference)]
        assert rows[0] == rows[1]
    pairs = [_rows([r / "pairs.parquet"], PAIRS, lambda x: x["pair_id"]) for r in (root, reference)]
    assert pairs[0] == pairs[1] and len(pairs[0]) > 8
    assert len({row["pair_id"] for row in pairs[0]}) == len(pairs[0])


def test_kill_9_during_image_generation(make_config, reference):
    config = make_config("generation")
    root = Path(config.out_dir)
    _killed_run(config, IN_GENERATION)
    assert len(list(root.glob("shards/images-*"))) == 1  # the first shard done, the second cut midway
    assert len(list(root.glob("images/*/*.png"))) == 19
    assert len(list(root.glob("images/*/.*.png.*.tmp"))) == 1  # the PNG being written, under its temporary name

    run_build(config)
    _assert_same_dataset(root, reference)
    assert len(list(root.glob("images/*/.*.png.*.tmp"))) == 1  # left as it was: never read, never needed


def test_kill_9_during_judging(make_config, reference):
    config = make_config("judging")
    root = Path(config.out_dir)
    _killed_run(config, IN_JUDGING)
    judged = list(root.glob("shards/judgments-*"))
    assert len(judged) == 1 and len(list(root.glob("shards/images-*"))) > 2  # killed judging the second shard

    run_build(config)
    _assert_same_dataset(root, reference)


def test_kill_9_during_the_parquet_write(make_config, reference):
    config = make_config("parquet")
    root = Path(config.out_dir)
    _killed_run(config, IN_PARQUET_WRITE)
    assert not (root / "pairs.parquet").exists()
    (partial,) = root.glob(".pairs.parquet.*.tmp")
    assert partial.stat().st_size > 4  # the magic bytes and the first row group, no footer
    with pytest.raises(SchemaError, match="not a readable Parquet file.*delete it and re-run"):
        read_table(partial, PAIRS)  # a truncated file is refused, never read as fewer rows

    run_build(config)
    _assert_same_dataset(root, reference)
    assert partial.exists()  # the re-run neither read nor needed the killed run's temporary file
