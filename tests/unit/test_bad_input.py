"""Bad prompt files, property-based: every bad file is a `PromptSourceError` naming the file, the line (1-based, as
an editor shows it; a CSV header is line 1) or the column, and the fix, and `collect_prompts` writes nothing. Bad
rows in a good file are failed rows naming `path:line`, logged as a warning. Valid prompts round-trip."""

from __future__ import annotations

import csv
import io
import json
import tempfile
import unittest
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from livo_core.prompts import (
    I2P_COLUMNS,
    PromptConfig,
    PromptFileNotFoundError,
    PromptSourceError,
    collect_prompts,
    file_prompts,
    load_i2p_mapping,
    normalize_prompt,
    prompt_id,
)
from livo_core.schema import PROMPTS, read_table

FEW = settings(max_examples=30, deadline=None)
PREVIOUS = b"a previous run's prompts.parquet"

# Prompts: any printable text (commas, quotes, line breaks and tabs included) of >= 3 characters once normalised.
# Characters a text editor may count as line breaks but CSV and JSON Lines do not (\r, \x0b, \x85, U+2028...) are
# left out so that expected line numbers are simply the count of "\n".
TEXT = st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Zl", "Zp"), include_characters="\n\t,\"'")
PROMPT = st.text(TEXT, min_size=3, max_size=40).filter(lambda p: len(normalize_prompt(p)) >= 3)
SIMPLE = st.from_regex(r"[a-z][a-z ]{2,20}[a-z]", fullmatch=True)  # one-line prompts without quotes or commas
COLUMN = st.from_regex(r"[a-z_]{1,12}", fullmatch=True).filter(lambda c: c != "prompt" and c not in I2P_COLUMNS)


@dataclass
class BadFile:
    name: str
    data: bytes
    fragments: tuple[str, ...]  # the message must hold each, "{path}" replaced by the file's path


def csv_bytes(header: list[str], rows: list[list[str]]) -> bytes:
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


def jsonl_bytes(records: list[object]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()


def parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def line_of(data: bytes, offset: int) -> int:
    """The 1-based line of a byte offset, as a text editor counts it."""
    return data.count(b"\n", 0, offset) + 1


# --- strategies of bad files ---------------------------------------------------------------------------------------


@st.composite
def missing_column(draw) -> BadFile:
    columns = draw(st.lists(COLUMN, min_size=1, max_size=3, unique=True))
    rows = draw(st.lists(st.lists(SIMPLE, min_size=len(columns), max_size=len(columns)), min_size=1, max_size=4))
    suffix = draw(st.sampled_from([".csv", ".jsonl", ".parquet"]))
    if suffix == ".csv":
        data = csv_bytes(columns, rows)
    elif suffix == ".jsonl":
        data = jsonl_bytes([dict(zip(columns, row, strict=True)) for row in rows])
    else:
        data = parquet_bytes(pa.table({c: [row[i] for row in rows] for i, c in enumerate(columns)}))
    return BadFile(f"p{suffix}", data, ("{path}: no column 'prompt'", repr(columns[0]), "set prompt_column"))


@st.composite
def misspelt_column(draw) -> BadFile:
    column = draw(st.sampled_from(["Prompt", "prompts", "promt", " prompt"]))
    return BadFile(
        "p.csv", csv_bytes([column], [["a cat"]]), ("{path}: no column 'prompt'", f"did you mean {column!r}")
    )


@st.composite
def no_prompts(draw) -> BadFile:
    name, data = draw(
        st.sampled_from(
            [
                ("p.csv", b"prompt\n"),
                ("p.csv", b"prompt\r\n\r\n"),
                ("p.jsonl", b""),
                ("p.jsonl", b"\n  \n"),
                ("p.parquet", parquet_bytes(pa.table({"prompt": pa.array([], pa.string())}))),
            ]
        )
    )
    return BadFile(name, data, ("{path}: no prompts in the file", "add prompts or remove it"))


@st.composite
def empty_csv(draw) -> BadFile:
    return BadFile("p.csv", draw(st.sampled_from([b"", b"\xef\xbb\xbf"])), ("{path}: empty file", "header row"))


@st.composite
def invalid_utf8(draw) -> BadFile:
    suffix = draw(st.sampled_from([".csv", ".jsonl"]))
    prompts = draw(st.lists(PROMPT, min_size=1, max_size=5))
    if suffix == ".csv":
        data = csv_bytes(["prompt"], [[p] for p in prompts])
    else:
        data = jsonl_bytes([{"prompt": p} for p in prompts])
    offset = draw(st.integers(0, len(data)))
    while offset < len(data) and (data[offset] & 0xC0) == 0x80:  # not inside a multi-byte character
        offset += 1
    bad = draw(st.sampled_from([b"\xff", b"\xe9", b"\xc3(", b"\x80"]))
    data = data[:offset] + bad + data[offset:]
    return BadFile(f"p{suffix}", data, (f"{{path}}:{line_of(data, offset)}: not valid UTF-8", "re-save", "iconv"))


@st.composite
def malformed_json_line(draw) -> BadFile:
    records = draw(st.lists(SIMPLE.map(lambda p: {"prompt": p}), min_size=1, max_size=6))
    k = draw(st.integers(0, len(records)))
    bad, fragment = draw(
        st.sampled_from(
            [
                ('{"prompt": "a cat"', "not valid JSON"),
                ("{prompt: 'a cat'}", "not valid JSON"),
                ("a cat", "not valid JSON"),
                ('{"prompt": "a cat"}}', "not valid JSON"),
                ('["a cat"]', "expected one JSON object per line, got a list"),
                ('"a cat"', "expected one JSON object per line, got a str"),
                ("42", "expected one JSON object per line, got a int"),
            ]
        )
    )
    lines = [json.dumps(r) for r in records]
    lines.insert(k, bad)
    fix = "fix or delete the line" if fragment == "not valid JSON" else 'write the line as {"prompt": "..."}'
    return BadFile("p.jsonl", ("\n".join(lines) + "\n").encode(), (f"{{path}}:{k + 1}: {fragment}", fix))


@st.composite
def ragged_csv_row(draw) -> BadFile:
    prompts = draw(st.lists(PROMPT, min_size=1, max_size=5))
    k = draw(st.integers(0, len(prompts)))
    before = csv_bytes(["prompt"], [[p] for p in prompts[:k]])
    after = csv_bytes(["prompt"], [[p] for p in prompts[k:]]).split(b"\n", 1)[1]  # without its header
    extra = draw(st.integers(1, 3))
    data = before + ("a cat" + ", on a mat" * extra + "\r\n").encode() + after
    line = line_of(data, len(before))
    return BadFile("p.csv", data, (f"{{path}}:{line}: {extra + 1} fields but the header has 1", "quote fields"))


@st.composite
def bad_csv_quoting(draw) -> BadFile:
    prompts = draw(st.lists(SIMPLE, min_size=0, max_size=4))
    before = csv_bytes(["prompt"], [[p] for p in prompts])
    bad = draw(st.sampled_from(['"a cat" on a mat', '"a cat on a mat\r\nanother line\r\n', '"a cat"" on a mat']))
    data = before + bad.encode() + b"\r\n"
    return BadFile("p.csv", data, (f"{{path}}:{line_of(data, len(before))}: malformed CSV", "double quotes"))


@st.composite
def unreadable_parquet(draw) -> BadFile:
    data = draw(st.one_of(st.binary(max_size=64), st.just(csv_bytes(["prompt"], [["a cat"]]))))
    return BadFile("p.parquet", data, ("{path}: not a readable Parquet file", "write it again"))


BAD_FILES = st.one_of(
    missing_column(),
    misspelt_column(),
    no_prompts(),
    empty_csv(),
    invalid_utf8(),
    malformed_json_line(),
    ragged_csv_row(),
    bad_csv_quoting(),
    unreadable_parquet(),
)


def files_config(*paths: Path) -> PromptConfig:
    return PromptConfig(sources=("files",), files=tuple(map(str, paths)), dedup="exact")


def assert_nothing_written(out: Path, previous: bool) -> None:
    """No new file beside `out` (no temporary file either); a previous `out` is unchanged."""
    written = sorted(p.name for p in out.parent.iterdir()) if out.parent.exists() else []
    assert written == (["prompts.parquet"] if previous else [])
    if previous:
        assert out.read_bytes() == PREVIOUS


@FEW
@given(bad=BAD_FILES, good_first=st.booleans(), previous=st.booleans())
def test_a_bad_prompt_file_is_an_error_naming_file_line_and_fix_and_nothing_is_written(bad, good_first, previous):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        path, good = root / bad.name, root / "good.csv"
        path.write_bytes(bad.data)
        good.write_bytes(csv_bytes(["prompt"], [["a photo of a cat"]]))
        out = root / "out" / "prompts.parquet"
        if previous:
            out.parent.mkdir()
            out.write_bytes(PREVIOUS)
        files = (good, path) if good_first else (path,)
        with pytest.raises(PromptSourceError) as err:
            collect_prompts(files_config(*files), out)
        message = str(err.value)
        for fragment in bad.fragments:
            assert fragment.replace("{path}", str(path)) in message, message
        assert_nothing_written(out, previous)


@FEW
@given(name=st.sampled_from(["gone.csv", "gone.jsonl", "sub/gone.parquet"]), previous=st.booleans())
def test_a_missing_prompt_file_names_its_path_and_the_working_directory(name, previous):
    with tempfile.TemporaryDirectory() as tmp:
        path, out = Path(tmp) / name, Path(tmp) / "out" / "prompts.parquet"
        if previous:
            out.parent.mkdir()
            out.write_bytes(PREVIOUS)
        with pytest.raises(PromptFileNotFoundError, match="prompt file not found") as err:
            collect_prompts(files_config(path), out)
        assert isinstance(err.value, FileNotFoundError) and isinstance(err.value, PromptSourceError)
        assert str(path) in str(err.value) and "fix the path in `files`" in str(err.value)
        assert_nothing_written(out, previous)


@FEW
@given(name=st.sampled_from(["p.txt", "p.json", "p.tsv", "p", "p.csv.gz", "p.xlsx"]))
def test_an_unknown_file_type_is_a_config_error_and_a_read_error(name):
    with pytest.raises(ValidationError) as err:
        PromptConfig(sources=("files",), files=(name,))
    (error,) = err.value.errors()
    assert error["loc"] == ("files",) and ".csv, .jsonl, .parquet" in error["msg"] and name in error["msg"]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_text("prompt\na cat\n")
        with pytest.raises(PromptSourceError, match=r"unsupported file type .*convert the file") as read_err:
            file_prompts(path)
        assert str(path) in str(read_err.value)


def test_strict_csv_keeps_a_quote_inside_an_unquoted_field(tmp_path):
    path = tmp_path / "p.csv"
    path.write_bytes(b'prompt\na "cat" on a mat\r\n')
    assert [r.prompt for r in file_prompts(path)] == ['a "cat" on a mat']


# --- bad rows in a good file: failed rows, never silently dropped ----------------------------------------------------

BAD_VALUES: dict[str, list[tuple[object, str]]] = {  # suffix: (bad prompt value, failure reason)
    ".csv": [("", "empty prompt"), ("   ", "empty prompt"), ("\t\n", "empty prompt"), ("ab", "too short")],
    ".jsonl": [
        ("", "empty prompt"),
        (" ", "empty prompt"),
        (None, "empty prompt"),
        (42, "prompt is not text but int 42"),
        (["a cat"], "prompt is not text but list"),
        ({"text": "a cat"}, "prompt is not text but dict"),
        (True, "prompt is not text but bool"),
    ],
    ".parquet": [("", "empty prompt"), (None, "empty prompt"), (" \n ", "empty prompt"), ("x", "too short")],
}
WRITERS: dict[str, Callable[[list[object]], bytes]] = {
    ".csv": lambda values: csv_bytes(["prompt"], [[v] for v in values]),
    ".jsonl": lambda values: jsonl_bytes([{"prompt": v} for v in values]),
    ".parquet": lambda values: parquet_bytes(pa.table({"prompt": pa.array(values, pa.string())})),
}


@st.composite
def file_with_a_bad_row(draw) -> tuple[str, bytes, int, str]:
    """(suffix, file, the bad row's line (Parquet: row), its failure reason)."""
    suffix = draw(st.sampled_from(sorted(BAD_VALUES)))
    value, reason = draw(st.sampled_from(BAD_VALUES[suffix]))
    prompts = draw(st.lists(PROMPT, min_size=1, max_size=5))
    k = draw(st.integers(0, len(prompts)))
    values = [*prompts[:k], value, *prompts[k:]]
    if suffix == ".csv":
        line = 2 + sum(p.count("\n") + 1 for p in prompts[:k])  # header is line 1; a field's line breaks count
    else:
        line = k + 1
    return suffix, WRITERS[suffix](values), line, reason


@FEW
@given(case=file_with_a_bad_row())
def test_a_bad_row_is_a_failed_row_naming_its_line_and_a_logged_warning(case):
    suffix, data, line, reason = case
    with tempfile.TemporaryDirectory() as tmp:
        path, out = Path(tmp) / f"p{suffix}", Path(tmp) / "prompts.parquet"
        path.write_bytes(data)
        with unittest.TestCase().assertLogs("livo_core.prompts", "WARNING") as logs:
            collect_prompts(files_config(path), out)
        failed = [r for r in read_table(out, PROMPTS).to_pylist() if r["status"] == "failed"]
        assert [r["source_ref"] for r in failed] == [f"{path}:{line}"]
        assert failed[0]["failure_reason"].startswith(reason)
        assert f"{path}:{line}: {reason}" in "\n".join(logs.output)


@FEW
@given(
    categories=st.sampled_from(["violenc", "sexual,nudity", "Sexual", "hate;violence", "sexual, gore"]),
    rows_before=st.integers(0, 3),
)
def test_an_i2p_row_with_unknown_categories_is_a_failed_row_naming_them(categories, rows_before):
    known = list(load_i2p_mapping())
    header = list(I2P_COLUMNS)
    good = ["a nude statue", "sexual", "1", "90", "60", "1", "7", "512", "512"]
    bad = ["a dark alley", categories, "0", "40", "0", "2", "7.5", "512", "512"]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "i2p.csv"
        path.write_bytes(csv_bytes(header, [good] * rows_before + [bad]))
        rows = file_prompts(path)
    assert [r.status for r in rows] == ["ok"] * rows_before + ["failed"]
    unknown = [c.strip() for c in categories.split(",") if c.strip() not in known]
    assert rows[-1].source_ref == f"{path}:{rows_before + 2}"
    assert rows[-1].failure_reason.startswith(f"unknown I2P categories {unknown}")
    assert "fix the categories column" in rows[-1].failure_reason


@FEW
@given(
    column=st.sampled_from(["hard", "sd_seed", "sd_image_width", "sd_guidance_scale"]),
    value=st.one_of(SIMPLE.filter(lambda v: v not in {"true", "false"}), st.just("infinity")),
)
def test_an_i2p_row_with_an_unreadable_value_is_a_failed_row_naming_the_column(column, value):
    """Letters are never a number, a boolean or a size ("infinity" included: settings must be finite)."""
    record = dict(zip(I2P_COLUMNS, ["a dark alley", "violence", "0", "40", "0", "2", "7.5", "512", "512"], strict=True))
    record[column] = value
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "i2p.jsonl"
        path.write_bytes(jsonl_bytes([record]))
        (row,) = file_prompts(path)
    assert row.status == "failed" and row.failure_reason == f"unreadable I2P values: {column}={value!r}"


# --- valid prompts round-trip -------------------------------------------------------------------------------------


@FEW
@given(prompts=st.lists(PROMPT, min_size=1, max_size=8), suffix=st.sampled_from(sorted(WRITERS)))
def test_valid_prompts_round_trip_through_every_file_type(prompts, suffix):
    with tempfile.TemporaryDirectory() as tmp:
        path, out = Path(tmp) / f"p{suffix}", Path(tmp) / "prompts.parquet"
        path.write_bytes(WRITERS[suffix](prompts))
        rows = read_table(collect_prompts(files_config(path), out), PROMPTS).to_pylist()
    assert all(r["status"] == "ok" for r in rows)
    first = {}  # exact dedup keeps the first prompt of each case-insensitive duplicate group
    for i, p in enumerate(prompts):
        first.setdefault(prompt_id(p), (normalize_prompt(p), i))
    assert [r["prompt"] for r in rows] == [p for p, _ in first.values()]
    if suffix == ".csv":
        lines = [2 + sum(p.count("\n") + 1 for p in prompts[:i]) for _, i in first.values()]
    else:
        lines = [i + 1 for _, i in first.values()]
    assert [r["source_ref"] for r in rows] == [f"{path}:{line}" for line in lines]


# --- principles file -----------------------------------------------------------------------------------------------

PRINCIPLE = {"id": "p", "text": "a value", "category": "bias", "attribute": "gender", "classes": ["a", "b"]}


@FEW
@given(
    case=st.sampled_from(
        [
            ({"threshhold": 0.7}, "principles.0.threshhold", "Extra inputs are not permitted"),
            ({"category": "fairness"}, "principles.0.category", "Input should be 'bias' or 'toxicity'"),
            ({"classes": ["a"]}, "principles.0", "needs an attribute and >= 2 classes"),
            ({"threshold": "high"}, "principles.0.threshold", "valid number"),
        ]
    )
)
def test_a_bad_principles_file_names_the_file_and_the_field(case):
    from livo_core.principles import PrinciplesFileError, load_principles  # noqa: PLC0415

    change, loc, fragment = case
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "principles.yaml"
        path.write_text(json.dumps({"version": 1, "principles": [PRINCIPLE | change]}))  # JSON is YAML
        with pytest.raises(PrinciplesFileError) as err:
            load_principles(path)
    assert all(part in str(err.value) for part in (str(path), loc, fragment, "fix it")), str(err.value)


def test_a_principles_file_that_is_not_yaml_names_its_line(tmp_path):
    from livo_core.principles import PrinciplesFileError, load_principles  # noqa: PLC0415

    path = tmp_path / "principles.yaml"
    path.write_text("version: 1\nprinciples:\n  - id: [p\n")
    with pytest.raises(
        PrinciplesFileError,
        match=r"(?s)principles.yaml: not a valid principles file.*principles.yaml\", line 3, column 9",
    ):
        load_principles(path)
