"""The README's example prints what the README says it prints."""
import contextlib
import io
import pathlib
import re

import numpy as np

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def run_example(text: str, label: str):
    """Run the first ```python block of ``text``; returns ``(printed, shown)``, where ``shown``
    is the first plain code block after it, introduced by "prints"."""
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    shown = re.search(r"```python\n.*?```\s*prints[^`]*```\n(.*?)```", text, re.S).group(1)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        exec(compile(code, label, "exec"), {})
    return buf.getvalue(), shown


def test_readme_example_output():
    printed, shown = run_example(README.read_text(), "README example")
    # exactly what it prints (issue 11 item 8: the CG value used to differ in its 11th digit)
    assert printed == shown, (printed, shown)


def test_readme_kfac_dense_layers_sentence():
    """The K-FAC score of the example includes the rational blocks; the README quotes the
    dense layers' part and the ceiling to four decimals."""
    import senn_ref
    from senn_ref import losses, score
    from senn_ref.datasets import teacher_regression
    from senn_ref.kfac import kfac_eta
    text = " ".join(README.read_text().split())
    dense, ceil = re.search(r"the two dense layers alone give ([0-9]+\.[0-9]+), still above the ceiling ([0-9]+\.[0-9]+)",
                            text).groups()
    X, Y, _, _, _ = teacher_regression(seed=0)
    net = senn_ref.mlp([1, 4, 1], activation="rational", seed=0)
    total, per_layer = kfac_eta(net, X, Y, losses.mse(), damping=1e-3)
    dense_only, _ = kfac_eta(net, X, Y, losses.mse(), damping=1e-3, include_rational=False)
    assert np.isclose(dense_only, per_layer["dense0"] + per_layer["dense1"], rtol=1e-12)
    assert f"{dense_only:.4f}" == dense and f"{score.ceiling(net, X, Y, losses.mse()):.4f}" == ceil
    assert "include_rational=True" in text and dense_only > float(ceil) and total > dense_only


def test_readme_growth_example_output():
    """The "Growing a network" example prints what the README shows, and the sentence after it
    quotes the same network kept at one unit (``SENNConfig(width=False)``) correctly."""
    import senn_ref
    from senn_ref import losses
    from senn_ref.datasets import teacher_regression
    text = README.read_text()
    section = text[text.index("## Growing a network"):]
    printed, shown = run_example(section, "README growth example")
    assert printed == shown, (printed, shown)
    quoted, ratio = re.search(r"reaches a test MSE of\s+([0-9.e+-]+) \(`SENNConfig\(width=False\)`\), "
                              r"([0-9]+) times worse", section).groups()
    X, Y, X_test, Y_test, _ = teacher_regression(seed=0)
    net = senn_ref.mlp([1, 1, 1], activation="rational", seed=0)
    config = senn_ref.SENNConfig(steps=600, quiet=True, width=False)
    net, log = senn_ref.train_senn(net, X, Y, losses.mse(), config, seed=0)
    fixed = losses.mse().value(net.forward(X_test), Y_test)
    grown = float(shown.splitlines()[2].split()[-1])
    assert log.final["widths"] == [1] and f"{fixed:.3e}" == quoted
    assert round(fixed / grown) == int(ratio)


def test_readme_setup_commands_and_ci():
    """The first screen has exactly two set-up commands - one installs and runs the main demo,
    one installs the test extra and runs the suite - and .ci/run ends with that test command."""
    root = README.parent
    lines = README.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("**Set up on a fresh machine**"))
    assert start < 20, start
    block = re.search(r"```bash\n(.*?)```", "\n".join(lines[start:]), re.S).group(1)
    commands = [c for c in block.splitlines() if c.strip()]
    assert len(commands) == 2, commands
    demo, tests = commands
    assert "pip install ." in demo and demo.endswith("senn-ref demo"), demo
    assert 'pip install -e ".[test]"' in tests and tests.endswith("python -m pytest -q"), tests
    ci = [c.strip() for c in (root / ".ci" / "run").read_text().splitlines()
          if c.strip() and not c.lstrip().startswith("#")]
    assert ci[-1] == tests.split("&&")[-1].strip(), (ci[-1], tests)
