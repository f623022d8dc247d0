"""livo_core.remote: a folder at an fsspec URL and its local mirror (fsspec's in-memory filesystem here)."""

import fsspec
import pytest

from livo_core.remote import Mirror, is_url, mirror_of


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    monkeypatch.setenv("LIVO_MIRROR_DIR", str(tmp_path / "mirrors"))
    fs = fsspec.filesystem("memory")
    yield Mirror.of(f"memory://bucket/{tmp_path.name}/dataset")
    fs.rm(f"/bucket/{tmp_path.name}", recursive=True)


def _write(path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_urls_get_a_mirror_and_local_paths_do_not(tmp_path, monkeypatch):
    monkeypatch.setenv("LIVO_MIRROR_DIR", str(tmp_path))
    assert is_url("s3://bucket/x") and not is_url("outputs/dataset") and mirror_of("outputs/dataset") is None
    assert mirror_of("s3://b/x") == mirror_of("s3://b/x/") != mirror_of("s3://b/y")
    assert mirror_of("s3://b/dataset").local.parent == tmp_path


def test_push_then_pull_into_an_empty_mirror_copies_every_file(mirror, tmp_path):
    _write(mirror.local / "images/ab/ab12.png", b"png")
    _write(mirror.local / "pairs.parquet", b"table")
    _write(mirror.local / ".prefect-results/cache", b"task cache")  # stays local
    _write(mirror.local / "shards/.images-1.parquet.123.tmp", b"half written")  # never copied

    assert mirror.push() == 2
    assert mirror.push() == 0  # nothing new

    other = Mirror(mirror.url, tmp_path / "elsewhere")
    assert other.pull() == 2
    assert (other.local / "images/ab/ab12.png").read_bytes() == b"png"
    assert sorted(p.name for p in other.local.rglob("*") if p.is_file()) == ["ab12.png", "pairs.parquet"]
    assert other.pull() == 0


def test_the_pairs_table_is_pushed_after_the_files_it_names(mirror, monkeypatch):
    for name in ("pairs.parquet", "README.md", "images/00/a.png", "shards/images-z.parquet"):
        _write(mirror.local / name, name.encode())
    order = []
    put_file = type(mirror.fs).put_file
    monkeypatch.setattr(
        type(mirror.fs),
        "put_file",
        lambda fs, lpath, rpath, **kw: order.append(rpath.rsplit("/")[-1]) or put_file(fs, lpath, rpath, **kw),
    )

    mirror.push()

    assert order[-2:] == ["README.md", "pairs.parquet"] and len(order) == 4


def test_a_file_of_another_size_is_copied_again(mirror, tmp_path):
    _write(mirror.local / "metrics.jsonl", b"step 1\n")
    mirror.push()
    _write(mirror.local / "metrics.jsonl", b"step 1\nstep 2\n")

    assert mirror.push(only=[mirror.local / "metrics.jsonl"]) == 1
    assert mirror.fs.cat_file(f"{mirror.root}/metrics.jsonl") == b"step 1\nstep 2\n"
