"""Tables derived from the registry: every hyperparameter's range, defaults and meaning."""

from __future__ import annotations

from collections.abc import Iterable

from ..hparams import Spec, specs
from ..registry import ALGORITHMS


def hparam_rows(algos: Iterable[str] | None = None) -> list[tuple[str, Spec, dict[str, str]]]:
    """``(name, spec, {algo: default})`` of every traced hparam, in declaration order.

    Algorithms share a row when they share the declaration (the same range and meaning);
    a name declared twice with different meanings (``kl_coef``) gets a row per meaning.
    A default reads ``"0.01"``, or ``"0.01 (continuous actions: 0)"`` where it differs.
    """
    rows: dict[tuple[str, Spec], dict[str, str]] = {}
    for name in algos if algos is not None else ALGORITHMS:
        for field, spec in specs(ALGORITHMS[name].hparams_cls).items():
            key = (field, spec._replace(default=0.0, continuous=None))
            rows.setdefault(key, {})[name] = default_text(spec)
    return [(field, spec, values) for (field, spec), values in rows.items()]


def default_text(spec: Spec) -> str:
    """A spec's default, with its continuous-action default where that differs."""
    text = f"{spec.default:g}"
    if spec.continuous is not None and spec.continuous != spec.default:
        text += f" (continuous actions: {spec.continuous:g})"
    return text


def describe_defaults(values: dict[str, str]) -> str:
    """``"0.99"``, or the most common default then the others by algorithm."""
    by_value: dict[str, list[str]] = {}
    for algo, value in values.items():
        by_value.setdefault(value, []).append(algo)
    ordered = sorted(by_value.items(), key=lambda item: -len(item[1]))
    first, *others = ordered
    return first[0] + "".join(f"; {', '.join(algos)}: {value}" for value, algos in others)


def hparam_table(algos: Iterable[str] | None = None) -> str:
    """A Markdown table of the hparams of ``algos`` (default: every registered one)."""
    lines = [
        "| hparam | range | default | algorithms | meaning |",
        "|---|---|---|---|---|",
    ]
    everyone = set(ALGORITHMS if algos is None else algos)
    for name, spec, values in hparam_rows(algos):
        who = "all" if set(values) == everyone else ", ".join(values)
        lines.append(
            f"| `{name}` | {spec.describe()} | {describe_defaults(values)} | {who} | {spec.doc} |"
        )
    return "\n".join(lines) + "\n"
