"""`skip_invalid`: drop examples with bad input, count them, and say so.

A source opened with `skip_invalid: true` is checked example by example once (every image
decoded) when the reader opens it; the examples that fail are left out of its index, so
`len()` and iteration agree, and a summary names the count of each kind of problem and the
first files. Problems a source already found in its annotations (its `skipped` list) join the
summary. Nothing is ever dropped silently.
"""

from __future__ import annotations

from collections import Counter

from tqdm.auto import tqdm

from mtl_tf.data.example import DataError

# Problems listed by file in the summary, per source.
SHOWN = 5


class ValidSubset:
    """The examples of `source` at `indices`, as a source (same `config`, `describe`)."""

    def __init__(self, source, indices: list[int]):
        self.source, self.indices = source, list(indices)
        self.config = source.config

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict:
        return self.source[self.indices[index]]

    def file_name(self, index: int) -> str | None:
        name = getattr(self.source, "file_name", None)
        return name(self.indices[index]) if name else None

    def describe(self) -> str:
        return self.source.describe()


def validated(source, read) -> tuple[ValidSubset, list[DataError]]:
    """`source` without the examples for which `read(index)` raises DataError; returns the
    subset and the problems (the source's own `skipped` ones first)."""
    problems = list(getattr(source, "skipped", []))
    good = []
    for index in tqdm(range(len(source)), desc=f"checking {source.describe()}", leave=False, disable=None):
        try:
            read(index)
            good.append(index)
        except DataError as problem:
            problems.append(problem)
    return ValidSubset(source, good), problems


def problem_kind(problem: DataError) -> str:
    return getattr(problem, "kind", "invalid labels")


def summary(name: str, kept: int, problems: list[DataError]) -> str:
    """'<source>: skipped N (kept K): 2 x unreadable image, 1 x ...' and the first files."""
    if not problems:
        return f"{name}: all {kept} examples valid"
    counts = Counter(problem_kind(p) for p in problems)
    kinds = ", ".join(f"{n} x {kind}" for kind, n in counts.most_common())
    lines = [f"{name}: skipped {len(problems)} invalid (kept {kept} examples): {kinds}"]
    lines += [f"  {p}" for p in problems[:SHOWN]]
    if len(problems) > SHOWN:
        lines.append(f"  ... and {len(problems) - SHOWN} more")
    return "\n".join(lines)
