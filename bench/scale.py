"""The data layer at the paper's size (86k pairs) on CPU: time and peak memory per stage at 1k, 10k and 86k pairs.

Real code for every table (prompts -> annotations -> images/judgments shards -> pairs.parquet -> latents ->
PairDataset); only the generator and the judges are stood in for: each image is an 8x8 PNG of seeded noise (far
smaller than a real image's) and its latent a seeded normal tensor of SD1.5's 512 px shape (4, 64, 64), written
through the same content-addressed files by the images stage. These stand-ins say nothing about images; they give the
tables and latents their real counts and sizes, and are never reported as a result. Each stage runs in its own
process, so its peak memory is its own; results are written after every stage, the datasets deleted even on failure.

Run from the checkout: python -m bench.scale [--pairs 1000,10000,86000] -> bench/results/scale.{json,md}
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
SEEDS_PER_PROMPT = 4  # one principle per prompt: 4 pairs per prompt
STANDIN_LATENT = (4, 64, 64)  # SD1.5's latent at 512 px: what decides the loader's memory
STANDIN_VAE = "standin-vae"
BATCHES = 300  # loader batches of 8 drawn after construction
STAGES = ("prompts", "annotate", "images", "judgments", "pairs", "loader", "loader_again", "loader_in_ram")
BUILD_STAGES = STAGES[:5]  # the later stages read what these write
WORDS = ["battlefield", "alley", "kitchen", "arena", "forest", "street", "bathroom", "stage", "desert", "harbor"]


def memory() -> dict[str, float]:
    """This process's resident memory (MiB): now, its peak, and the anonymous part (not file pages of a memmap)."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return {key: int(fields[key].split()[0]) / 1024 for key in ("VmRSS", "VmHWM", "RssAnon")}


def synthetic_prompts(n_prompts: int) -> list[str]:
    """Distinct toxic prompts the offline annotator recognises (a blood keyword, so a rewrite exists)."""
    return [f"a {WORDS[i % len(WORDS)]} covered in blood, scene {i}" for i in range(n_prompts)]


def _rng(request_id: str):
    import numpy as np  # noqa: PLC0415

    return np.random.default_rng(int(request_id[:12], 16))


def run_stage(stage: str, root: Path, n_pairs: int) -> dict:  # noqa: C901, PLR0915 (one branch per stage)
    """One stage in this process; returns its own figures (time, memory, counts)."""
    import numpy as np  # noqa: PLC0415
    import torch  # noqa: PLC0415
    from safetensors.torch import save_file  # noqa: PLC0415

    from livo_core.annotate import AnnotateConfig, annotate_prompts  # noqa: PLC0415
    from livo_core.atomic import atomic_path  # noqa: PLC0415
    from livo_core.build import BuildConfig, stage_write_dataset  # noqa: PLC0415
    from livo_core.generation import ModelIdentity, first_phase_requests, shard_path, shard_requests  # noqa: PLC0415
    from livo_core.models.loading import load_tokenizer  # noqa: PLC0415
    from livo_core.pipeline import GenerationSettings  # noqa: PLC0415
    from livo_core.principles import load_principles  # noqa: PLC0415
    from livo_core.prompts import PromptConfig, collect_prompts  # noqa: PLC0415
    from livo_core.schema import ANNOTATIONS, IMAGES, JUDGMENTS, PAIRS, PROMPTS, read_table, write_table  # noqa: PLC0415
    from livo_core.storage import LatentCache, save_image  # noqa: PLC0415
    from livo_core.training import PairDataset, PairSampler  # noqa: PLC0415

    torch.set_num_threads(1)
    shards, start, counts = root / "shards", memory(), {}
    began = time.perf_counter()
    if stage == "prompts":
        source = root / "synthetic_prompts.csv"
        source.write_text("prompt\n" + "".join(f'"{p}"\n' for p in synthetic_prompts(n_pairs // SEEDS_PER_PROMPT)))
        config = PromptConfig(sources=("files",), files=(str(source),), dedup="exact")
        out = collect_prompts(config, root / "prompts.parquet", tokenizer=load_tokenizer("shapes"))
        counts["prompts"] = read_table(out, PROMPTS).num_rows
    elif stage == "annotate":
        out = annotate_prompts(AnnotateConfig(), root / "prompts.parquet", root / "annotations.parquet")
        counts["ok"] = sum(r == "ok" for r in read_table(out, ANNOTATIONS).column("status").to_pylist())
    elif stage == "images":
        annotations = read_table(root / "annotations.parquet", ANNOTATIONS).to_pylist()
        requests = first_phase_requests(annotations, load_principles(), SEEDS_PER_PROMPT)
        cache, generation = LatentCache(root, STANDIN_VAE), json.dumps({"vae": STANDIN_VAE, "standin": True})
        model, settings = ModelIdentity("standin", "standin", "float32", "standin", STANDIN_VAE), GenerationSettings()
        for shard in shard_requests(requests, 256):
            rows, path = [], shard_path(root, shard, model, settings)
            for request in shard:
                request_id = request.request_id(model, settings)
                rng = _rng(request_id)
                relative, sha = save_image(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), root)
                with atomic_path(cache.path(sha)) as tmp:
                    save_file({"latent": torch.from_numpy(rng.standard_normal(STANDIN_LATENT, np.float32))}, str(tmp))
                rows.append(
                    {
                        "request_id": request_id,
                        "prompt_id": request.prompt_id,
                        "principle_id": request.principle_id,
                        "role": request.role,
                        "target_class": None,
                        "text": request.text,
                        "seed": request.seed,
                        "image_path": relative,
                        "image_sha256": sha,
                        "base_model": "standin",
                        "generation": generation,
                        "shard": path.stem,
                        "status": "ok",
                        "failure_reason": None,
                    }
                )
            write_table(rows, path, IMAGES)
        counts["images"] = len(requests)
    elif stage == "judgments":
        for path in sorted(shards.glob("images-*.parquet")):
            rows = [
                {
                    "request_id": row["request_id"],
                    "image_sha256": row["image_sha256"],
                    "principle_id": row["principle_id"],
                    "judge_name": "standin",
                    "judge_version": "0",
                    "label": "violates" if row["role"] == "violating" else "conforms",
                    "score": 0.9 if row["role"] == "violating" else 0.1,
                    "threshold": 0.5,
                    "status": "ok",
                    "failure_reason": None,
                }
                for row in read_table(path, IMAGES).to_pylist()
            ]
            write_table(rows, path.with_name(path.name.replace("images-", "judgments-")), JUDGMENTS)
    elif stage == "pairs":
        images = sorted(shards.glob("images-*.parquet"))
        judgments = sorted(shards.glob("judgments-*.parquet"))
        _, built = stage_write_dataset(
            BuildConfig(out_dir=str(root)), root / "prompts.parquet", root / "annotations.parquet", images, judgments
        )
        counts.update(built)
    elif stage in ("loader", "loader_again"):
        pairs = PairDataset(root, None, STANDIN_VAE)
        counts["constructed_s"] = round(time.perf_counter() - began, 2)
        counts["after_construction_anon_mib"] = round(memory()["RssAnon"] - start["RssAnon"], 1)
        sampler = PairSampler([p.id for p in pairs.principles], 8, seed=0)
        drawn = time.perf_counter()
        for step in range(BATCHES):
            indices = sampler.step_indices(step * 97)  # steps far apart: pages all over the pack
            batch = pairs.collate(indices, list(range(len(indices))))
        counts["batch_ms"] = round(1000 * (time.perf_counter() - drawn) / BATCHES, 3)
        counts["pairs"], counts["batch_shape"] = len(pairs), list(batch.latents_w.shape)
    elif stage == "loader_in_ram":  # livo 0.6.0's PairDataset.__init__, inlined: every latent stacked in memory
        cache = LatentCache(root, STANDIN_VAE)
        table = read_table(root / "pairs.parquet", PAIRS).to_pylist()
        rows = [r for r in table if r["split"] == "train"]
        principles = load_principles()
        prompts = [r["prompt"] for r in rows]
        chosen = [principles.get(r["principle_id"]) for r in rows]
        latents_w = torch.stack([cache.load(r["aligned_sha256"]) for r in rows])
        latents_l = torch.stack([cache.load(r["violating_sha256"]) for r in rows])
        counts["pairs"], counts["tensor_mib"] = (
            len(prompts + chosen) // 2,
            (latents_w.nbytes + latents_l.nbytes) / 2**20,
        )
    end = memory()
    return {
        "stage": stage,
        "seconds": round(time.perf_counter() - began, 2),
        "peak_mib": round(end["VmHWM"] - start["VmRSS"], 1),
        "anon_mib": round(end["RssAnon"] - start["RssAnon"], 1),
        **counts,
    }


def measure(n_pairs: int, scratch: Path, figures: list[dict], out: Path) -> None:
    """Every stage at `n_pairs`, each in its own process, appended to `figures` and written as it ends. A failing
    stage is recorded; the stages after a failed build stage are not run."""
    root = scratch / f"pairs-{n_pairs}"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1"}
    env.pop("LIVO_LLM_BASE_URL", None)  # the offline annotator
    try:
        for stage in STAGES:
            args = [sys.executable, "-m", "bench.scale", "--stage", stage, "--root", str(root), "--pairs", str(n_pairs)]
            result = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True)
            if result.returncode:
                failure = (result.stderr.strip().splitlines() or ["no output"])[-1]
                figures.append({"n_pairs": n_pairs, "stage": stage, "failed": failure[:300]})
            else:
                figures.append({"n_pairs": n_pairs, **json.loads(result.stdout.strip().splitlines()[-1])})
            print(json.dumps(figures[-1]), flush=True)
            write_results(figures, out)
            if result.returncode and stage in BUILD_STAGES:
                break
        figures.append({"n_pairs": n_pairs, "stage": "disk", "mib": _disk_mib(root)})
        write_results(figures, out)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _disk_mib(root: Path) -> dict[str, float]:
    sizes = {"images": 0, "latents": 0, "packs": 0, "tables": 0}
    for path in root.rglob("*"):
        if path.is_file():
            kind = (
                "packs"
                if ".packs" in path.parts
                else next((k for k in ("images", "latents") if k in path.parts), "tables")
            )
            sizes[kind] += path.stat().st_size
    return {kind: round(size / 2**20, 1) for kind, size in sizes.items()}


def write_results(figures: list[dict], out: Path) -> None:
    """scale.json and scale.md of the figures so far (a stage not run shows "-", a failed one "failed")."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "scale.json").write_text(json.dumps(figures, indent=2) + "\n")
    sizes = sorted({f["n_pairs"] for f in figures})
    by = {(f["n_pairs"], f["stage"]): f for f in figures}

    def cell(n: int, stage: str, key: str, shown=str) -> str:
        figure = by.get((n, stage), {})
        return "failed" if "failed" in figure else shown(figure[key]) if key in figure else "-"

    lines = [
        "# The data layer at 1k, 10k and 86k pairs (`python -m bench.scale`)",
        "",
        f"CPU ({os.cpu_count()} cores), one process per stage. Stand-ins, not results: 8x8 noise PNGs and seeded "
        f"latents of shape {STANDIN_LATENT} (SD1.5 at 512 px) in place of generated images and VAE latents (both "
        "written by the images stage); judges stood in by the image's role. Every table, file and loader is livo's "
        "own code. Peak: the stage's resident-memory high-water mark above the process's start, which counts the "
        "memory-mapped pack's file pages a loader has touched (shared, reclaimable page cache); anon: the process's "
        "own (anonymous) memory above its start, at the end of the stage.",
        "",
        "| stage | "
        + " | ".join(f"{n:,} pairs: s" for n in sizes)
        + " | "
        + " | ".join(f"{n:,}: peak MiB" for n in sizes)
        + " | "
        + " | ".join(f"{n:,}: anon MiB" for n in sizes)
        + " |",
        "|---|" + "---|" * (3 * len(sizes)),
    ]
    for stage in STAGES:
        cells = [cell(n, stage, key) for key in ("seconds", "peak_mib", "anon_mib") for n in sizes]
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Time per 1,000 pairs (linear growth means a flat row):",
        "",
        "| stage | " + " | ".join(f"{n:,}" for n in sizes) + " |",
        "|---|" + "---|" * len(sizes),
    ]
    for stage in BUILD_STAGES:
        per_1000 = [cell(n, stage, "seconds", lambda v, n=n: f"{1000 * v / n:.2f} s") for n in sizes]
        lines.append(f"| {stage} | " + " | ".join(per_1000) + " |")
    lines += [
        "",
        "Training loader (the train split; anonymous memory above the process's start, MiB):",
        "",
        "| pairs | memory-mapped: built in | anon after construction | anon after 300 batches | ms per batch of 8 | "
        "reopened: built in | in RAM (0.6.0): anon | its latent tensors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n in sizes:
        cells = [
            cell(n, "loader", "pairs", lambda v: f"{v:,}"),
            cell(n, "loader", "constructed_s", lambda v: f"{v} s"),
            cell(n, "loader", "after_construction_anon_mib"),
            cell(n, "loader", "anon_mib"),
            cell(n, "loader", "batch_ms"),
            cell(n, "loader_again", "constructed_s", lambda v: f"{v} s"),
            cell(n, "loader_in_ram", "anon_mib"),
            cell(n, "loader_in_ram", "tensor_mib", lambda v: f"{v:.0f}"),
        ]
        lines.append(f"| {' | '.join(cells)} |")
    lines += ["", "Disk (MiB):", "", "| pairs | images | latents | packs | tables |", "|---|---|---|---|---|"]
    for n in sizes:
        disk = by.get((n, "disk"), {}).get("mib", {})
        kinds = ("images", "latents", "packs", "tables")
        lines.append(f"| {n:,} | " + " | ".join(str(disk.get(k, "-")) for k in kinds) + " |")
    failures = [f for f in figures if "failed" in f]
    if failures:
        lines += ["", "Failed stages:", ""] + [
            f"- {f['stage']} at {f['n_pairs']:,} pairs: `{f['failed']}`" for f in failures
        ]
    (out / "scale.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", default="1000,10000,86000", help="dataset sizes, comma-separated")
    parser.add_argument("--stage", choices=STAGES, help="(internal) run one stage in this process")
    parser.add_argument("--root", type=Path, help="(internal) the dataset folder of --stage")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder of scale.json and scale.md")
    parser.add_argument("--scratch", type=Path, default=None, help="folder for the datasets (deleted after)")
    args = parser.parse_args()
    if args.stage:
        print(json.dumps(run_stage(args.stage, args.root, int(args.pairs))))
        return
    figures: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="livo-scale-", dir=args.scratch) as scratch:
        for n in args.pairs.split(","):
            measure(int(n), Path(scratch), figures, args.out)


if __name__ == "__main__":
    main()
