"""The README's example prints what the README says it prints."""
import contextlib
import io
import pathlib
import re

import numpy as np

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def test_readme_example_output():
    text = README.read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    shown = re.search(r"prints\n\n```\n(.*?)```", text, re.S).group(1)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        exec(compile(code, "README example", "exec"), {})
    got, want = buf.getvalue().split(), shown.split()
    assert len(got) == len(want), (got, want)
    for g, w in zip(got, want):
        try:
            gv, wv = float(g), float(w)
        except ValueError:
            assert g == w
        else:
            assert np.isclose(gv, wv, rtol=1e-8, atol=0), (g, w)
