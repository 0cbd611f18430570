"""README tables derived from the code are current."""

import re
from pathlib import Path

from jaxpo.algos import BUILTIN
from jaxpo.algos.docs import hparam_table

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_hparam_table_is_the_generated_one():
    text = README.read_text()
    match = re.search(r"<!-- hparam-table:start -->\n(.*?)<!-- hparam-table:end -->", text, re.S)
    assert match, "README has no hparam table markers"
    assert match.group(1) == hparam_table(BUILTIN), "regenerate with jaxpo.algos.docs"


def test_table_has_a_row_per_meaning():
    rows = [line for line in hparam_table(BUILTIN).splitlines() if line.startswith("| `")]
    names = [row.split("`")[1] for row in rows]
    # kl_coef means GRPO's k3 weight and MCPO's KL scale: two declarations, two rows
    assert names.count("kl_coef") == 2 and names.count("clip_eps") == 2
    assert names.count("learning_rate") == 1
    learning_rate = rows[names.index("learning_rate")]
    assert "a2c: 0.0007" in learning_rate and "| all |" in learning_rate


def test_readme_add_algorithm_example_runs():
    from jaxpo.algos import ALGORITHMS

    text = README.read_text()
    block = text.split("<!-- example:add-algorithm -->\n```python\n", 1)[1].split("```", 1)[0]
    namespace = {}
    try:
        exec(compile(block, "README.md", "exec"), namespace)
        assert namespace["sweep"].metrics["value_loss"].shape == (2, 2, 5)
        assert namespace["result"].metrics["value_loss"].shape == (5,)
    finally:
        ALGORITHMS.pop("reinforce", None)
