"""Recall and false alarms of livo's retrievers on the hand-written evaluation set (data/retrieval/eval_prompts.yaml).

    python bench/retrieval.py            # writes bench/results/retrieval.{md,json}

Retrievers: each alone (keyword, person, MiniLM phrase similarity, the learned probe), the previous default chain
(keyword -> person -> phrase similarity), the order the issue proposed (keyword -> person -> learned) and
today's default (keyword -> learned toxicity labels -> person -> learned). No LLM: offline.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from pathlib import Path

from livo_core.learned_retrieval import NONE, LearnedRetriever, evaluation_examples, score_retriever
from livo_core.principles import load_principles
from livo_core.retrieval import ChainRetriever, EmbeddingRetriever, KeywordRetriever, PersonRetriever, default_retriever

RESULTS = Path(__file__).parent / "results"


def retrievers(principles):
    keyword, person = KeywordRetriever(principles), PersonRetriever(principles)
    embedding, learned = EmbeddingRetriever(principles), LearnedRetriever(principles)
    return {
        "keyword": keyword,
        "person": person,
        "embedding (phrase similarity)": embedding,
        "learned": learned,
        "previous default (keyword > person > embedding)": ChainRetriever([keyword, person, embedding]),
        "keyword > person > learned (the issue's order)": ChainRetriever([keyword, person, learned]),
        "default (keyword > learned toxicity > person > learned)": default_retriever(principles),
    }


def markdown(scores: dict, examples: list) -> str:
    labels = list(dict.fromkeys(label for _, label, _ in examples if label != NONE))
    counts = Counter(label for _, label, _ in examples)
    columns = [f"recall {label} (n={counts[label]})" for label in labels] + [f"false alarms (n={counts[NONE]})"]
    head = "| retriever | " + " | ".join(columns) + " |"
    lines = [
        "# Retrieval on the evaluation set",
        "",
        f"`python bench/retrieval.py`; {len(examples)} hand-written prompts of data/retrieval/eval_prompts.yaml, none",
        "of them trained on. Recall: share of a label's prompts for which the retriever returned the principle (for",
        "`person`: both bias principles). False alarms: share of the harmless look-alikes that got any principle.",
        "",
        head,
        "|" + "---|" * (len(labels) + 2),
    ]
    for name, s in scores.items():
        cells = [f"{s['recall'].get(label, 0):.0%}" for label in labels]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {s['false_alarm']:.0%} |")
    default = scores["default (keyword > learned toxicity > person > learned)"]
    lines += ["", "## Default chain, recall per label and kind of prompt", "", "| label / kind | recall |", "|---|---|"]
    lines += [f"| {k} | {v:.0%} |" for k, v in default["recall_by_group"].items()]
    lines += ["", "## Default chain, false alarms per principle", "", "| principle | false alarms |", "|---|---|"]
    lines += [f"| {k} | {v:.0%} |" for k, v in default["false_alarm_by_principle"].items()]
    lines += ["", "## Default chain, every miss and false alarm", "", "| prompt | label | found |", "|---|---|---|"]
    lines += [f"| {p} | {label} | {', '.join(f) or 'nothing'} |" for p, label, f in default["misses"]]
    return "\n".join(lines) + "\n"


def main() -> int:
    principles, examples = load_principles(), evaluation_examples()
    scores, start = {}, time.perf_counter()
    for name, retriever in retrievers(principles).items():
        s = score_retriever(retriever, examples, principles)
        scores[name] = {**s.__dict__, "misses": [list(m) for m in s.misses]}
        print(f"{name}: recall {s.recall} false alarms {s.false_alarm:.3f}", file=sys.stderr)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "retrieval.json").write_text(json.dumps(scores, indent=2) + "\n")
    (RESULTS / "retrieval.md").write_text(markdown(scores, examples))
    print(f"wrote {RESULTS / 'retrieval.md'} in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
