"""Zero-shot attribute judge of the real world: CLIP (open_clip) picks the principle's class that fits an image best."""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

import numpy as np

from livo_core.judges._common import check_image, file_hash, import_optional, judge_version
from livo_core.judges.base import Verdict
from livo_core.principles import Principle

TEXT_TEMPLATE = "a photo of {article} {attribute} person"
BATCH = 32  # images per forward pass


def class_text(attribute_class: str) -> str:
    """The zero-shot text of one attribute class, e.g. "a photo of an asian person"."""
    article = "an" if attribute_class[:1].lower() in "aeiou" else "a"
    return TEXT_TEMPLATE.format(article=article, attribute=attribute_class)


class CLIPWeightsError(RuntimeError):
    """CLIP weights could not be found or loaded (offline, wrong path, unknown tag)."""


class CLIPAttributeJudge:
    """Label = argmax over the principle's classes of softmax(logit_scale * cos(image, class text)); score = its
    probability. CLIP sees no "no person" case: every image gets one of the classes.

    `pretrained` is a local open_clip checkpoint (.safetensors, or a state dict loaded with weights_only=True) or an
    open_clip pretrained tag of `model_name` (downloaded from the Hugging Face hub on first use).
    """

    name = "clip"

    @property
    def protocol(self) -> str:
        same = self.model_name == "ViT-L-14" and self.pretrained == "openai"
        note = "as the reference" if same else "the reference uses ViT-L-14 openai"
        return f"open_clip {self.model_name} ({self.pretrained}) zero-shot over the classes; {note}"

    @cached_property
    def weights(self) -> str:
        """The checkpoint file's hash, or the open_clip tag (pinned by open_clip's own hashes)."""
        return file_hash(self.pretrained) if Path(self.pretrained).is_file() else f"tag:{self.pretrained}"

    def __init__(
        self, model_name: str = "ViT-L-14", pretrained: str | os.PathLike = "openai", device: str | None = None
    ) -> None:
        self.model_name, self.pretrained, self.device = model_name, str(pretrained), device
        self.version = judge_version(1, "open_clip_torch", model_name, Path(self.pretrained).name)  # tag or file name
        self._model = self._preprocess = self._tokenizer = None
        self._text_features: dict[tuple[str, ...], object] = {}  # classes -> (C, D) unit text embeddings

    def _load(self):
        if self._model is not None:
            return
        import torch

        open_clip = import_optional("open_clip", "open_clip_torch", self.name)
        self.device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        tag = open_clip.get_pretrained_cfg(self.model_name, self.pretrained)
        if not tag and not Path(self.pretrained).is_file():
            tags = open_clip.list_pretrained_tags_by_model(self.model_name)
            raise CLIPWeightsError(
                f"CLIP weights {self.pretrained!r} for {self.model_name} are neither a file nor an open_clip "
                f"pretrained tag (tags of {self.model_name}: {tags}); "
                "pass the path of a local checkpoint (.safetensors or .bin) or a known tag"
            )
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                self.model_name,
                pretrained=self.pretrained,
                device=self.device,
                force_quick_gelu=bool(tag.get("quick_gelu", False)),  # OpenAI's weights were trained with QuickGELU
                weights_only=True,
            )
        except Exception as err:
            raise CLIPWeightsError(
                f"could not load CLIP {self.model_name} weights {self.pretrained!r}: {err}. Tags download from the "
                'Hugging Face hub on first use; offline, fetch them where there is network (python -c "import '
                f"open_clip; open_clip.create_model('{self.model_name}', pretrained='{self.pretrained}')\") and copy "
                "~/.cache/huggingface, or pass pretrained=<path of a local open_clip checkpoint>"
            ) from err
        self._model, self._preprocess = model.eval(), preprocess
        self._tokenizer = open_clip.get_tokenizer(self.model_name)

    def image_features(self, images: Sequence[np.ndarray]):
        """(B, D) unit-norm CLIP image embeddings (a torch tensor on CPU)."""
        import torch
        from PIL import Image

        arrays = [check_image(image) for image in images]
        self._load()
        features = []
        with torch.inference_mode():
            for start in range(0, len(arrays), BATCH):
                chunk = [self._preprocess(Image.fromarray(a)) for a in arrays[start : start + BATCH]]
                pixels = torch.stack(chunk).to(self.device)  # (b, 3, S, S)
                features.append(torch.nn.functional.normalize(self._model.encode_image(pixels).float(), dim=-1).cpu())
        return torch.cat(features) if features else torch.zeros(0, self._model.text_projection.shape[-1])

    def text_features(self, texts: Sequence[str]):
        """(T, D) unit-norm CLIP text embeddings (a torch tensor on CPU)."""
        import torch

        self._load()
        tokens = self._tokenizer(list(texts)).to(self.device)  # (T, 77)
        with torch.inference_mode():
            return torch.nn.functional.normalize(self._model.encode_text(tokens).float(), dim=-1).cpu()

    def class_probabilities(self, images: Sequence[np.ndarray], classes: Sequence[str]) -> np.ndarray:
        """(B, C) softmax probabilities of each class text for each image."""
        if not images:
            return np.zeros((0, len(classes)), dtype=np.float32)
        features = self.image_features(images)  # (B, D)
        text = self._class_features(tuple(classes))  # (C, D)
        scale = float(self._model.logit_scale.exp())
        return (scale * features @ text.T).softmax(dim=-1).numpy()

    def _class_features(self, classes: tuple[str, ...]):
        if classes not in self._text_features:
            self._text_features[classes] = self.text_features([class_text(c) for c in classes])
        return self._text_features[classes]

    def judge(self, images: Sequence[np.ndarray], principle: Principle) -> list[Verdict]:
        if principle.category != "bias":
            raise ValueError(f"the {self.name} judge classifies attributes, not principle {principle.id!r}")
        probabilities = self.class_probabilities(images, principle.classes)  # (B, C)
        labels = [principle.classes[i] for i in probabilities.argmax(axis=1)]
        return [
            Verdict(label, float(row.max()), self.name, self.version, principle.threshold)
            for label, row in zip(labels, probabilities, strict=True)
        ]
