"""A CLIP tokenizer built offline from the BPE vocabulary shipped in open_clip's wheel."""

from __future__ import annotations

import gzip
from importlib.resources import files

from transformers import CLIPTokenizer

BPE_MERGES = 49152 - 256 - 2  # the merges CLIP uses, as in the original tokenizer


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable unicode table, which CLIP's vocabulary is built on."""
    printable = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars, extra = printable[:], 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars), strict=True))


def clip_vocabulary() -> tuple[dict[str, int], list[str]]:
    """CLIP's token -> id table (49,408 entries) and its BPE merges, from open_clip's data file."""
    bpe_file = files("open_clip") / "bpe_simple_vocab_16e6.txt.gz"
    merges = gzip.decompress(bpe_file.read_bytes()).decode("utf-8").split("\n")[1 : BPE_MERGES + 1]
    base = list(_bytes_to_unicode().values())
    tokens = base + [b + "</w>" for b in base] + ["".join(m.split()) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {token: i for i, token in enumerate(tokens)}, merges


def build_clip_tokenizer(model_max_length: int = 77) -> CLIPTokenizer:
    """A `CLIPTokenizer` whose ids equal OpenAI CLIP's, padded with the end-of-text token like SD's."""
    vocab, merges = clip_vocabulary()
    merge_pairs = [tuple(m.split()) for m in merges]
    return CLIPTokenizer(vocab=vocab, merges=merge_pairs, model_max_length=model_max_length)


def too_long(prompt: str, tokenizer: CLIPTokenizer) -> str | None:
    """Why the text encoder cannot read all of `prompt` (it reads model_max_length - 2 tokens), or None."""
    limit = tokenizer.model_max_length - 2  # start and end tokens
    n_tokens = len(tokenizer(prompt, add_special_tokens=False, verbose=False).input_ids)
    if n_tokens <= limit:
        return None
    return f"prompt is {n_tokens} tokens, the base model's text encoder reads at most {limit}: shorten it"
