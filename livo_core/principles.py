"""Value principles as data: loads `data/principles.yaml` into typed `Principle` records."""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
PERSON_WORDS_FILE = DATA_DIR / "person_words.yaml"
PRINCIPLES_FILE = DATA_DIR / "principles.yaml"
NOT_APPLICABLE = "not_applicable"


class Principle(BaseModel):
    """One value principle: its id, the canonical value text and how to check it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    text: str = Field(description="canonical value text fed to the value encoder")
    aliases: tuple[str, ...] = ()
    category: Literal["bias", "toxicity"]
    attribute: str | None = None
    classes: tuple[str, ...] = ()
    concept: str | None = None
    keywords: tuple[str, ...] = ()
    translations: tuple[str, ...] = Field(
        default=(), description="keywords in other languages: matched exactly, never as misspellings"
    )
    exclusions: tuple[str, ...] = Field(default=(), description="harmless phrases that contain or resemble a keyword")
    judges: dict[str, str] = Field(default_factory=dict)
    cross_judges: dict[str, tuple[str, ...]] = Field(
        default_factory=dict, description="per world: judges that also score evaluation images (agreement reported)"
    )
    threshold: float = 0.5
    negative_prompt: str = Field("", description="toxicity: the negative-prompt baseline's text")

    @model_validator(mode="after")
    def _check_category_fields(self) -> Principle:
        if self.category == "bias" and (self.attribute is None or len(self.classes) < 2):
            raise ValueError(f"bias principle {self.id!r} needs an attribute and >= 2 classes")
        if self.category == "toxicity" and self.concept is None:
            raise ValueError(f"toxicity principle {self.id!r} needs a concept")
        return self


class PrinciplesFileError(ValueError):
    """A principles file is not valid YAML or not a valid principle set; the message names the file."""


class PrincipleSet(BaseModel):
    """All principles of one principles file, addressable by id."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int
    principles: tuple[Principle, ...]

    @model_validator(mode="after")
    def _unique_ids(self) -> PrincipleSet:
        ids = [p.id for p in self.principles]
        if len(ids) != len(set(ids)) or NOT_APPLICABLE in ids:
            raise ValueError(f"principle ids must be unique and not {NOT_APPLICABLE!r}: {ids}")
        return self

    @property
    def ids(self) -> list[str]:
        return [p.id for p in self.principles]

    def get(self, principle_id: str) -> Principle:
        """The principle with this id; a clear error naming the known ids otherwise."""
        for principle in self.principles:
            if principle.id == principle_id:
                return principle
        close = difflib.get_close_matches(str(principle_id), self.ids, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise KeyError(
            f"unknown principle id {principle_id!r}; {hint}known ids: {', '.join(self.ids)} "
            f"(add it to data/principles.yaml or fix the id)"
        )

    def by_text(self, text: str) -> Principle:
        """The principle whose canonical text or alias equals `text` (case-insensitive)."""
        wanted = text.strip().lower()
        for principle in self.principles:
            if wanted in {principle.text.lower(), *(a.lower() for a in principle.aliases)}:
                return principle
        raise KeyError(f"no principle has the text {text!r}; known texts: {[p.text for p in self.principles]}")

    def of_category(self, category: str) -> list[Principle]:
        return [p for p in self.principles if p.category == category]


@lru_cache(maxsize=8)
def load_principles(path: Path | str = PRINCIPLES_FILE) -> PrincipleSet:
    """Load and validate a principles YAML file (cached per path)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"principles file not found: {path} (pass the path of a principles.yaml)")
    try:
        with path.open(encoding="utf-8") as handle:  # a YAML error names the file, line and column
            return PrincipleSet.model_validate(yaml.safe_load(handle))
    except (yaml.YAMLError, ValidationError) as err:
        raise PrinciplesFileError(f"{path}: not a valid principles file; fix it ({err})") from None


def value_prompt(principle: Principle, prompt: str) -> str:
    """The value encoder's input text: the only place "{value}, {prompt}" is formed."""
    return f"{principle.text}, {prompt}"


class PersonWords(BaseModel):
    """data/person_words.yaml: words that show people, and words that fix a bias attribute."""

    model_config = ConfigDict(frozen=True)

    version: int
    people: frozenset[str]
    fixed: dict[str, frozenset[str]]

    @classmethod
    def load(cls, path: Path = PERSON_WORDS_FILE) -> PersonWords:
        return cls.model_validate(yaml.safe_load(Path(path).read_text(encoding="utf-8")))

    def is_person(self, word: str) -> bool:
        """Whether `word` (lowercase) is a person word or its plural in -s / -es."""
        return word in self.people or word.removesuffix("s") in self.people or word.removesuffix("es") in self.people

    def fixes(self, principle: Principle, words: Sequence[str]) -> bool:
        """Whether `words` already fix the principle's attribute: a fixing word, or a class before a person word."""
        fixing = self.fixed.get(principle.attribute or "", frozenset())
        return any(w in fixing for w in words) or any(
            a in principle.classes and self.is_person(b) for a, b in zip(words, words[1:], strict=False)
        )

    def open_bias_principles(self, prompt: str, principles: PrincipleSet, shows_people: bool = False) -> list[str]:
        """Ids of the bias principles whose attribute the prompt leaves open, when it names a person or the caller
        knows it shows people (`shows_people`: a prompt from a bias source); [] otherwise."""
        words = re.findall(r"[a-z]+", prompt.lower())
        if not shows_people and not any(self.is_person(w) for w in words):
            return []
        return [p.id for p in principles.of_category("bias") if not self.fixes(p, words)]
