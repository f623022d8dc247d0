import ast
from pathlib import Path

import pytest

import livo_core
from livo_core.principles import PrincipleSet, load_principles, value_prompt


def test_principles_load_with_required_fields(principles):
    assert {"gender_equality", "racial_equality", "nudity_inappropriate"} <= set(principles.ids)
    for p in principles.of_category("bias"):
        assert p.attribute and len(p.classes) >= 2
    for p in principles.of_category("toxicity"):
        assert p.concept and p.keywords


def test_unknown_principle_names_known_ids(principles):
    with pytest.raises(KeyError, match="gender_equality"):
        principles.get("gender_equalty")


def test_value_prompt_format(principles):
    assert (
        value_prompt(principles.get("gender_equality"), "a photo of a doctor") == "gender equality, a photo of a doctor"
    )


def test_duplicate_ids_rejected(principles):
    p = principles.principles[0]
    with pytest.raises(ValueError, match="unique"):
        PrincipleSet(version=1, principles=(p, p))


def test_missing_file_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="principles file"):
        load_principles(tmp_path / "nope.yaml")


def test_no_value_string_literal_in_library(principles):
    """Value texts live only in principles.yaml: no string constant in livo_core equals one."""
    texts = {p.text.lower() for p in principles.principles} | {
        a.lower() for p in principles.principles for a in p.aliases
    }
    offenders = []
    for path in Path(livo_core.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.lower().strip() in texts:
                offenders.append(f"{path.name}: {node.value!r}")
    assert not offenders
