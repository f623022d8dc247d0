"""Bad configs and flow parameters, property-based: one bad field of BuildConfig or TrainLivoConfig (at any depth) is
a ValidationError whose location is that field's path and whose message says what is expected; Prefect rejects the
same dict as a flow parameter, naming `config.<path>`, before the flow runs (so nothing is written)."""

from __future__ import annotations

import types
import typing
from pathlib import Path

import annotated_types as at
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prefect.exceptions import ParameterTypeError
from pydantic import BaseModel, ValidationError

from flows.build_dataset import build_dataset
from flows.train_livo import train_livo
from livo_core.build import BuildConfig
from livo_core.train_livo import TrainLivoConfig

FEW = settings(max_examples=30, deadline=None)
FLOWS = {BuildConfig: build_dataset, TrainLivoConfig: train_livo}
LETTERS = st.from_regex(r"[a-z]{1,8}", fullmatch=True).filter(lambda s: s not in {"inf", "nan", "infinity"})
NOT_FINITE = st.sampled_from([float("nan"), float("inf"), -float("inf"), "nan", "inf"])

Path_ = tuple[str, ...]


def models(model: type[BaseModel], prefix: Path_ = ()) -> list[tuple[Path_, type[BaseModel]]]:
    """Every (path, model class) of a config and its nested configs."""
    found = [(prefix, model)]
    for name, field in model.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            found += models(field.annotation, (*prefix, name))
    return found


def scalar_type(annotation: object) -> object:
    """`int` of `int | None`, a Literal as it is; None for anything else (tuples, dicts)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        annotation = args[0] if len(args) == 1 else None
    if annotation in (int, float, bool, str) or typing.get_origin(annotation) is typing.Literal:
        return annotation
    return None


def below(kind: object, bound: float, inclusive: bool) -> st.SearchStrategy:
    """Numbers < bound (<= bound when `inclusive`)."""
    if kind is int:
        return st.integers(-(10**6), bound if inclusive else bound - 1)
    return st.floats(-1e6, bound, exclude_max=not inclusive)


def above(kind: object, bound: float) -> st.SearchStrategy:
    return st.integers(bound + 1, 10**6) if kind is int else st.floats(bound, 1e6, exclude_min=True)


def bad_values(kind: object, metadata: list) -> list[tuple[st.SearchStrategy, str]]:
    """(strategy of bad values, a fragment of pydantic's message) for one scalar field."""
    bad = []
    for m in metadata:
        if isinstance(m, at.Ge):
            bad.append((below(kind, m.ge, inclusive=False), f"greater than or equal to {m.ge}"))
        elif isinstance(m, at.Gt):
            bad.append((below(kind, m.gt, inclusive=True), f"greater than {m.gt}"))
        elif isinstance(m, at.Le):
            bad.append((above(kind, m.le), f"less than or equal to {m.le}"))
    if kind is int:
        bad += [(LETTERS, "valid integer"), (st.sampled_from([1.5, -0.25]), "valid integer")]
    elif kind is float:
        bad += [(LETTERS, "valid number"), (NOT_FINITE, "finite number")]
    elif kind is bool:
        bad.append((st.sampled_from(["maybe", "2", "yess"]), "valid boolean"))
    elif kind is str:
        bad.append((st.integers(), "valid string"))
    else:  # Literal
        options = typing.get_args(kind)
        bad.append((LETTERS.filter(lambda s: s not in options), f"Input should be {options[0]!r}"))
    return bad


def field_cases(config: type[BaseModel]) -> list[tuple[Path_, st.SearchStrategy, str]]:
    cases = []
    for prefix, model in models(config):
        for name, field in model.model_fields.items():
            if (kind := scalar_type(field.annotation)) is not None:
                cases += [((*prefix, name), values, fragment) for values, fragment in bad_values(kind, field.metadata)]
    return cases


def nest(path: Path_, value: object) -> dict:
    for key in reversed(path):
        value = {key: value}
    return value


@st.composite
def one_bad_field(draw, config: type[BaseModel]) -> tuple[dict, Path_, str]:
    """(config dict, the error's location, a fragment of its message)."""
    path, values, fragment = draw(st.sampled_from(field_cases(config)))
    return nest(path, draw(values)), path, fragment


@st.composite
def one_unknown_key(draw, config: type[BaseModel]) -> tuple[dict, Path_, str]:
    """A typo of a field name (or any other name) at any depth: an error at the enclosing config, naming the key."""
    prefix, model = draw(st.sampled_from(models(config)))
    field = draw(st.sampled_from(sorted(model.model_fields)))
    cut = draw(st.integers(0, len(field) - 1))
    key = draw(st.one_of(st.just(field[:cut] + field[cut + 1 :]), st.just(field + "s"), LETTERS))
    if key in model.model_fields or not key:
        key = "unknown_key"
    return nest((*prefix, key), 1), prefix, f"unknown field {key!r} of {model.__name__}"


def check(config: type[BaseModel], data: dict, loc: Path_, fragment: str) -> None:
    with pytest.raises(ValidationError) as err:
        config.model_validate(data)
    assert any(e["loc"] == loc and fragment in e["msg"] for e in err.value.errors()), (loc, fragment, err.value)
    with pytest.raises(ParameterTypeError) as flow_err:
        FLOWS[config].validate_parameters({"config": data})
    assert f"{'.'.join(map(str, ('config', *loc)))}: " in str(flow_err.value) and fragment in str(flow_err.value)


@FEW
@given(case=st.one_of(one_bad_field(BuildConfig), one_unknown_key(BuildConfig)))
def test_one_bad_field_of_build_dataset_names_its_path_and_what_is_expected(case):
    check(BuildConfig, *case)


@FEW
@given(case=st.one_of(one_bad_field(TrainLivoConfig), one_unknown_key(TrainLivoConfig)))
def test_one_bad_field_of_train_livo_names_its_path_and_what_is_expected(case):
    check(TrainLivoConfig, *case)


def test_the_generated_cases_cover_every_nested_config():
    paths = {path[:-1] for path, _, _ in field_cases(BuildConfig)}
    assert paths == {(), ("prompts",), ("annotate",), ("generate",), ("judges",), ("debias",)}
    paths = {path[:-1] for path, _, _ in field_cases(TrainLivoConfig)}
    assert paths == {(), ("training",), ("evaluation",), ("judges",)}


def test_a_typo_suggests_the_field():
    check(TrainLivoConfig, {"training": {"max_step": 10}}, ("training",), "did you mean 'max_steps'?")
    check(BuildConfig, {"annotate": {"max_worker": 2}}, ("annotate",), "did you mean 'max_workers'?")
    check(BuildConfig, {"out": "x"}, (), "did you mean 'out_dir'?")


CASES = [  # (config, dict, error location, message fragment): a table of bad values that no generic rule finds
    (BuildConfig, {"prompts": {"families": ["occupation"]}}, ("prompts", "families"), "unknown template families"),
    (BuildConfig, {"prompts": {"sources": ["files"]}}, ("prompts",), "list prompt files in `files`"),
    (
        BuildConfig,
        {"prompts": {"sources": ["files"], "files": ["p.txt"]}},
        ("prompts", "files"),
        "prompt files must end in .csv, .jsonl, .parquet, not ['p.txt']",
    ),
    (BuildConfig, {"prompts": {"sources": ["shapes", "shapes"]}}, ("prompts",), "sources repeat a source"),
    (BuildConfig, {"prompts": {"sources": []}}, ("prompts", "sources"), "at least 1 item"),
    (BuildConfig, {"prompts": {"sources": ["template"]}}, ("prompts", "sources", 0), "Input should be 'templates'"),
    (BuildConfig, {"prompts": {"min_chars": 50, "max_chars": 10}}, ("prompts",), "min_chars (50) exceeds max_chars"),
    (BuildConfig, {"prompts": {"dedup": "fuzzy"}}, ("prompts", "dedup"), "Input should be 'none', 'exact' or 'near'"),
    (BuildConfig, {"annotate": {"response_format": "xml"}}, ("annotate", "response_format"), "'json_schema'"),
    (BuildConfig, {"split": [0.8, 0.2]}, ("split", 2), "Field required"),
    (BuildConfig, {"split": [0.5, 0.5, 0.5]}, ("split",), "sum to 1"),
    (BuildConfig, {"split": [1.2, -0.1, -0.1]}, ("split",), "must be >= 0"),
    (BuildConfig, {"generate": {"world": "sd-15"}}, ("generate", "world"), "'shapes'"),
    (BuildConfig, {"generate": {"base_model": "sd-15"}}, ("generate", "base_model"), "profile"),
    (TrainLivoConfig, {"base_model": "sd-15"}, ("base_model",), "unknown base model 'sd-15': use a profile"),
    (TrainLivoConfig, {"base_model": "/no/such/pipeline"}, ("base_model",), "an existing pipeline folder"),
    (TrainLivoConfig, {"world": "sd14"}, ("world",), "Input should be 'shapes' or 'sd15'"),
    (TrainLivoConfig, {"losses": []}, ("losses",), "at least 1 item"),
    (TrainLivoConfig, {"losses": ["livo", "livo"]}, ("losses",), "repeats an entry"),
    (TrainLivoConfig, {"training_seeds": [0, 0]}, ("training_seeds",), "repeats an entry"),
    (TrainLivoConfig, {"training": {"seed": 3}}, (), "set training_seeds, not training.seed"),
    (TrainLivoConfig, {"losses": ["ppo"]}, ("losses", 0), "Input should be 'livo' or 'dpo'"),
    (
        TrainLivoConfig,
        {"training": {"validation_principle": "gender_equalty"}},
        ("training", "validation_principle"),
        "unknown principle id 'gender_equalty'; did you mean 'gender_equality'?",
    ),
    (TrainLivoConfig, {"training": {"warmup_steps": 10, "max_steps": 5}}, ("training",), "warmup_steps (10) exceeds"),
    (TrainLivoConfig, {"training": {"adam_betas": [0.9, 1.0]}}, ("training", "adam_betas", 1), "less than 1"),
    (TrainLivoConfig, {"evaluation": {"seeds": []}}, ("evaluation", "seeds"), "at least 1 item"),
    (TrainLivoConfig, {"evaluation": {"images_per_prompt": 4}}, ("evaluation", "images_per_prompt"), "equal to 5"),
    (
        TrainLivoConfig,
        {"evaluation": {"prompt_files": ["eval.txt"]}},
        ("evaluation", "prompt_files"),
        "prompt files must end in .csv, .jsonl, .parquet",
    ),
]


@pytest.mark.parametrize(("config", "data", "loc", "fragment"), CASES)
def test_bad_values_name_the_field_and_what_is_expected(config, data, loc, fragment):
    check(config, data, loc, fragment)


def test_a_bad_parameter_fails_before_the_flow_writes_anything(tmp_path):
    out = tmp_path / "dataset"
    with pytest.raises(ParameterTypeError, match=r"config\.generate\.batch_size: Input should be greater than"):
        build_dataset.validate_parameters({"config": {"out_dir": str(out), "generate": {"batch_size": 0}}})
    assert not out.exists()


def test_good_parameters_pass_and_an_existing_folder_is_a_base_model(tmp_path):
    assert build_dataset.validate_parameters({"config": {"split": [0.7, 0.2, 0.1]}})["config"].split == (0.7, 0.2, 0.1)
    for base_model in ("shapes", "sd15", "org/model-name", str(tmp_path)):
        assert TrainLivoConfig(base_model=base_model).base_model == base_model
    assert Path(TrainLivoConfig().dataset) == Path("outputs/dataset")
