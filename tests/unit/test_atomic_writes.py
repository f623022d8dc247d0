"""Atomic writes: a temporary name per writer, nothing partial under the final name, unreadable files refused."""

import threading

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from livo_core.atomic import atomic_path
from livo_core.schema import PAIRS, SchemaError, read_table, write_batches, write_table
from livo_core.storage import LatentCache, save_image
from tests.unit.test_schema import pair_row


def test_each_writer_gets_its_own_temporary_name(tmp_path):
    target = tmp_path / "table.parquet"
    with atomic_path(target) as first, atomic_path(target) as second:
        assert first != second and first.parent == second.parent == tmp_path
        assert first.name.startswith(".table.parquet.") and first.name.endswith(".tmp")
        first.write_bytes(b"first")
        second.write_bytes(b"second")
    assert target.read_bytes() == b"first"  # the last rename (the outer writer's) wins, with its whole content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.parquet"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "x.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed midway")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.bin"]


@pytest.mark.parametrize("round_", range(5))  # a race: with one shared temporary name, about 1 round in 4 failed
def test_concurrent_writers_of_one_image_never_collide(tmp_path, round_):
    image = np.random.default_rng(round_).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    barrier, results, errors = threading.Barrier(8), [], []

    def write():
        barrier.wait()
        try:
            results.append(save_image(image, tmp_path))
        except Exception as error:  # collected for the assertion below
            errors.append(error)

    threads = [threading.Thread(target=write) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(set(results)) == 1
    relative, _ = results[0]
    assert np.array_equal(np.asarray(Image.open(tmp_path / relative)), image)
    assert not list(tmp_path.rglob("*.tmp"))


def test_write_batches_that_fail_leave_nothing(tmp_path):
    def batches():
        yield [pair_row(pair_id="a")]
        yield [pair_row(pair_id="b", seed="not a number")]  # SchemaError midway through the file

    with pytest.raises(SchemaError):
        write_batches(batches(), tmp_path / "pairs.parquet", PAIRS)
    assert list(tmp_path.iterdir()) == []


def test_a_truncated_table_is_refused_with_what_to_do(tmp_path):
    path = write_table([pair_row(pair_id=str(i)) for i in range(50)], tmp_path / "pairs.parquet", PAIRS)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(SchemaError, match=r"pairs\.parquet is not a readable Parquet file.*delete it and re-run"):
        read_table(path, PAIRS)


def test_a_truncated_latent_is_refused_with_what_to_do(tmp_path):
    latents = LatentCache(tmp_path, "vae")
    path = latents.path("ab" * 32)
    path.parent.mkdir(parents=True)
    save_file({"latent": torch.zeros(4, 8, 8)}, str(path))
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"is unreadable.*delete it and re-run"):
        latents.load("ab" * 32)
