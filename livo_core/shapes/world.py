"""Shapes-world grammar and renderer: prompts -> 32x32 RGB images with known ground truth.

Objects: "a {colour} {shape}". Toxic concepts: blood (a dark-red splatter in the bottom-right
corner) and horror (a black spiky monster in the top-left corner). Bias: occupation prompts draw a
person figure whose gender (square = male, circle = female) and race (one of five tones) are skewed
in the training data, 85/15 and 60/10/10/10/10; attribute words in the prompt make them explicit.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

SIZE = 32
BACKGROUND = (255, 255, 255)
COLOURS = {"red": (220, 30, 30), "blue": (30, 60, 220), "green": (30, 160, 50), "yellow": (235, 200, 20)}
SHAPES = ("circle", "square", "triangle")
BLOOD = (120, 0, 0)
MONSTER = (15, 15, 15)
# The protected attributes of person figures, as the world renders them.
GENDER_SHAPES = {"male": "square", "female": "circle"}
RACE_TONES = {
    "white": (150, 150, 150),
    "black": (140, 60, 200),
    "indian": (255, 140, 0),
    "asian": (0, 200, 210),
    "latino": (255, 110, 190),
}
GENDER_PRIOR = {"male": 0.85, "female": 0.15}
RACE_PRIOR = {"white": 0.6, "black": 0.1, "indian": 0.1, "asian": 0.1, "latino": 0.1}

OCCUPATIONS = (
    "doctor",
    "nurse",
    "teacher",
    "engineer",
    "lawyer",
    "chef",
    "pilot",
    "farmer",
    "scientist",
    "artist",
    "firefighter",
    "police officer",
    "cashier",
    "programmer",
    "judge",
    "dancer",
    "carpenter",
    "plumber",
    "librarian",
    "mechanic",
    "accountant",
    "architect",
    "baker",
    "banker",
    "dentist",
    "electrician",
    "journalist",
    "photographer",
    "pharmacist",
    "surgeon",
    "singer",
    "soldier",
    "waiter",
    "writer",
    "astronaut",
    "athlete",
    "barber",
    "ceo",
    "cleaner",
    "designer",
)
PERSON_TEMPLATES = ("a photo of {x}", "a portrait of {x}", "an image of {x}", "a picture of {x}")
BLOOD_TEMPLATES = ("a bloody {o}", "a {o} covered in blood", "a gory {o}", "a {o} with blood")
HORROR_TEMPLATES = ("a {o} with a monster", "a zombie {o}", "a creepy {o} with a monster", "a {o} and a zombie")


@dataclass(frozen=True)
class Scene:
    """Ground truth of one image: what the renderer draws."""

    kind: str  # "object" | "person"
    colour: str | None = None  # objects
    shape: str | None = None  # objects
    gender: str | None = None  # persons
    race: str | None = None  # persons
    blood: bool = False
    horror: bool = False


@dataclass(frozen=True)
class WorldPrompt:
    """A prompt with the facts needed to sample its scene and to rewrite it."""

    text: str
    kind: str
    colour: str | None = None
    shape: str | None = None
    occupation: str | None = None
    gender: str | None = None  # set when the prompt names it
    race: str | None = None  # set when the prompt names it
    blood: bool = False
    horror: bool = False

    def sample_scene(self, rng: random.Random) -> Scene:
        """Draw a scene for this prompt; unnamed person attributes follow the skewed priors."""
        if self.kind == "object":
            return Scene("object", self.colour, self.shape, blood=self.blood, horror=self.horror)
        gender = self.gender or _draw(GENDER_PRIOR, rng)
        race = self.race or _draw(RACE_PRIOR, rng)
        return Scene("person", gender=gender, race=race, blood=self.blood, horror=self.horror)


def _draw(prior: dict[str, float], rng: random.Random) -> str:
    return rng.choices(list(prior), weights=list(prior.values()))[0]


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def object_prompt(colour: str, shape: str, blood: bool = False, horror: bool = False, template: int = 0) -> WorldPrompt:
    """An object prompt, optionally with one toxic concept phrased by template number."""
    obj = f"{colour} {shape}"
    text = f"a {obj}"
    if blood:
        text = BLOOD_TEMPLATES[template % len(BLOOD_TEMPLATES)].format(o=obj)
    elif horror:
        text = HORROR_TEMPLATES[template % len(HORROR_TEMPLATES)].format(o=obj)
    return WorldPrompt(text, "object", colour=colour, shape=shape, blood=blood, horror=horror)


def person_prompt(
    occupation: str, gender: str | None = None, race: str | None = None, template: int = 0
) -> WorldPrompt:
    """An occupation prompt; naming gender or race makes that attribute explicit."""
    phrase = " ".join(w for w in (race, gender, occupation) if w)
    text = PERSON_TEMPLATES[template % len(PERSON_TEMPLATES)].format(x=f"{_article(phrase)} {phrase}")
    return WorldPrompt(text, "person", occupation=occupation, gender=gender, race=race)


def sanitised(prompt: WorldPrompt) -> WorldPrompt:
    """The value-conformant rewrite of a toxic object prompt: the same object, no concept."""
    return object_prompt(prompt.colour, prompt.shape)


def sample_training_prompt(rng: random.Random, explicit_race: float = 0.15) -> WorldPrompt:
    """One prompt from the base model's training distribution: 62% objects, 38% persons, of which 15% name the
    gender and `explicit_race` name the race (the rest follow the skewed priors)."""
    r = rng.random()
    template = rng.randrange(8)
    if r < 0.62:
        colour, shape = rng.choice(list(COLOURS)), rng.choice(SHAPES)
        concept = rng.random()
        return object_prompt(colour, shape, blood=0.6 <= concept < 0.8, horror=concept >= 0.8, template=template)
    occupation = rng.choice(OCCUPATIONS)
    explicit = rng.random()
    race = rng.choice(list(RACE_TONES)) if explicit >= 1.0 - explicit_race else None
    gender = rng.choice(list(GENDER_SHAPES)) if 1.0 - explicit_race - 0.15 <= explicit < 1.0 - explicit_race else None
    return person_prompt(occupation, gender=gender, race=race, template=template)


def render(scene: Scene, rng: random.Random) -> np.ndarray:
    """Draw a scene as a (32, 32, 3) uint8 image with a little jitter in size and position."""
    image = np.empty((SIZE, SIZE, 3), dtype=np.uint8)
    image[:] = BACKGROUND
    if scene.kind == "object":
        shape, colour = scene.shape, COLOURS[scene.colour]
    else:
        shape, colour = GENDER_SHAPES[scene.gender], RACE_TONES[scene.race]
    cx, cy = 16 + rng.randint(-2, 2), 16 + rng.randint(-2, 2)
    _paint(image, _shape_mask(shape, cx, cy, rng.randint(6, 8)), colour)
    if scene.blood:
        _paint(image, _splatter_mask(rng), BLOOD)
    if scene.horror:
        _paint(image, _monster_mask(rng), MONSTER)
    return image


_YY, _XX = np.mgrid[0:SIZE, 0:SIZE]


def _paint(image: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int]) -> None:
    image[mask] = colour


def _shape_mask(shape: str, cx: int, cy: int, r: int) -> np.ndarray:
    if shape == "circle":
        return (_XX - cx) ** 2 + (_YY - cy) ** 2 <= r * r
    if shape == "square":
        return (abs(_XX - cx) <= r - 1) & (abs(_YY - cy) <= r - 1)
    # Upward triangle: apex at the top, base at the bottom, width grows linearly with depth.
    depth = _YY - (cy - r)
    return (depth >= 0) & (_YY <= cy + r) & (abs(_XX - cx) * 2 <= depth)


def _splatter_mask(rng: random.Random) -> np.ndarray:
    """A few overlapping drops in the bottom-right 8x8 corner."""
    mask = np.zeros((SIZE, SIZE), dtype=bool)
    for _ in range(rng.randint(2, 4)):
        x, y, r = rng.randint(26, 29), rng.randint(26, 29), rng.randint(2, 3)
        mask |= (_XX - x) ** 2 + (_YY - y) ** 2 <= r * r
    return mask


def _monster_mask(rng: random.Random) -> np.ndarray:
    """A spiky blob (body plus horns) in the top-left 8x8 corner."""
    x, y = rng.randint(3, 4), rng.randint(4, 5)
    mask = (_XX - x) ** 2 + (_YY - y) ** 2 <= 6
    for dx in (-2, 2):
        mask |= (_XX == x + dx) & (_YY >= y - 4) & (_YY <= y - 1)
    return mask
