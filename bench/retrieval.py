"""Recall and false alarms of livo's retrievers on hand-written evaluation sets (data/retrieval/).

    python bench/retrieval.py            # writes bench/results/retrieval.{md,json}

Sets: eval_prompts.yaml (205 prompts, never trained on, but its misses guided the retrieval rules while they were
developed) and fresh_prompts.yaml (60 prompts written once the rules were final, never used to change them: the
unbiased estimate). Retrievers: each alone (keyword, person, MiniLM phrase similarity, the learned probe), the
previous default chain (keyword -> person -> phrase similarity), the order the issue proposed (keyword -> person ->
learned) and today's default (keyword -> learned toxicity labels -> person -> learned). No LLM: offline.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from pathlib import Path

from livo_core.learned_retrieval import (
    EVAL_FILE,
    FRESH_FILE,
    NONE,
    LearnedRetriever,
    evaluation_examples,
    score_retriever,
)
from livo_core.principles import load_principles
from livo_core.retrieval import (
    ChainRetriever,
    EmbeddingRetriever,
    KeywordRetriever,
    PersonRetriever,
    default_retriever,
)

RESULTS = Path(__file__).parent / "results"
DEFAULT = "default (keyword > learned toxicity > person > learned)"
SETS = {"evaluation set (eval_prompts.yaml)": EVAL_FILE, "fresh set (fresh_prompts.yaml, unseen)": FRESH_FILE}


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
        DEFAULT: default_retriever(principles),
    }


def section(title: str, scores: dict, examples: list) -> list[str]:
    labels = list(dict.fromkeys(label for _, label, _ in examples if label != NONE))
    counts = Counter(label for _, label, _ in examples)
    columns = [f"recall {label} (n={counts[label]})" for label in labels] + [f"false alarms (n={counts[NONE]})"]
    lines = [f"## {title}", "", "| retriever | " + " | ".join(columns) + " |", "|" + "---|" * (len(columns) + 1)]
    for name, s in scores.items():
        cells = [f"{s['recall'].get(label, 0):.0%}" for label in labels]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {s['false_alarm']:.0%} |")
    principle_ids = list(next(iter(scores.values()))["false_alarm_by_principle"])
    lines += ["", "False alarms per principle, per retriever:", ""]
    lines += ["| retriever | " + " | ".join(principle_ids) + " |", "|" + "---|" * (len(principle_ids) + 1)]
    for name, s in scores.items():
        lines.append(
            f"| {name} | " + " | ".join(f"{s['false_alarm_by_principle'][p]:.0%}" for p in principle_ids) + " |"
        )
    default = scores[DEFAULT]
    lines += ["", "Default chain, recall per label and kind of prompt:", "", "| label / kind | recall |", "|---|---|"]
    lines += [f"| {k} | {v:.0%} |" for k, v in default["recall_by_group"].items()]
    lines += ["", "Default chain, false alarms per principle:", "", "| principle | false alarms |", "|---|---|"]
    lines += [f"| {k} | {v:.0%} |" for k, v in default["false_alarm_by_principle"].items()]
    lines += ["", "Default chain, every miss and false alarm:", "", "| prompt | label | found |", "|---|---|---|"]
    lines += [f"| {p} | {label} | {', '.join(f) or 'nothing'} |" for p, label, f in default["misses"]]
    return [*lines, ""]


def main() -> int:
    principles, start = load_principles(), time.perf_counter()
    chosen, results, lines = (
        retrievers(principles),
        {},
        [
            "# Retrieval on the evaluation sets",
            "",
            "`python bench/retrieval.py`. Recall: share of a label's prompts for which the retriever returned its",
            "principle (`person`: both bias principles). False alarms: share of the harmless look-alikes (food,",
            "vehicles, place names, children's themes, look-alike words, objects of a person) that got any principle.",
            "No prompt of either set is in the learned retriever's training data (a test checks it). The first set",
            "guided the rules (translated keywords, the censoring and misspelling rules, the chain order); the fresh",
            "set never did.",
            "",
            "Targets (issue 10): recall >= 95% with <= 5% false alarms, offline. Missed on both sets (tables below).",
            "",
        ],
    )
    for title, path in SETS.items():
        examples = evaluation_examples(path)
        scores = {}
        for name, retriever in chosen.items():
            s = score_retriever(retriever, examples, principles)
            scores[name] = {**s.__dict__, "misses": [list(m) for m in s.misses]}
            print(f"{title} / {name}: recall {s.recall} false alarms {s.false_alarm:.3f}", file=sys.stderr)
        results[title] = scores
        lines += section(f"{title}: {len(examples)} prompts", scores, examples)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "retrieval.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "retrieval.md").write_text("\n".join(lines))
    print(f"wrote {RESULTS / 'retrieval.md'} in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
