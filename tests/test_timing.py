"""bench/timing.compare: warm-up excluded, interleaved rotated rounds, paired ratios with a
spread, a stopping rule, errors naming the argument (issue 11 item 3).  Sleep-based
contenders keep the ratios checkable on a loaded machine: sleeping is wall time."""
import time

import pytest

from senn_ref.bench.timing import compare, progress, ratio_cell


def test_ratio_of_known_costs_and_warmup_excluded():
    calls = []

    def slow_first():
        calls.append("a")
        time.sleep(0.2 if len(calls) == 1 else 0.002)     # a 'compilation' on the first call

    def double():
        calls.append("b")
        time.sleep(0.004)

    res = compare({"a": slow_first, "b": double}, baseline="a", warmup=1, min_rounds=4, max_rounds=12,
                  target_seconds=0.004, budget_seconds=5.0)
    # sleep(0.004) / sleep(0.002) plus ~0.1 ms overhead each: 1.6..2.2 (a ratio inverted or
    # polluted by the 0.2 s warm-up call would be far outside)
    assert 1.6 < res["b"].ratio < 2.2, res["b"]
    assert res["a"].ratio == 1.0 and res["a"].is_baseline and res["a"].seconds < 0.01
    assert 4 <= res.rounds <= 12 and res["a"].spread >= 0 and res["b"].spread < 0.2
    assert ratio_cell(res["a"]) == "baseline" and ratio_cell(res["b"]).startswith(f"{res['b'].ratio:.3g}x+-")


def test_rounds_are_interleaved_and_rotated():
    order = []
    fns = {n: (lambda n=n: order.append(n)) for n in "xyz"}
    res = compare(fns, warmup=1, min_rounds=3, max_rounds=3, target_seconds=1e-9)
    assert res.baseline == "x" and res.rounds == 3
    assert all(res[n].number == 1 for n in "xyz")
    # one warm-up call each, then rounds x y z / y z x / z x y
    assert "".join(order) == "xyz" + "xyz" + "yzx" + "zxy"


def test_stops_when_stable_and_marks_unstable_runs():
    steady = compare({"a": lambda: time.sleep(0.001), "b": lambda: time.sleep(0.001)}, min_rounds=4,
                     max_rounds=30, target_seconds=0.002)
    assert steady.stable and steady.rounds < 30
    state = {"k": 0}

    def drifting():               # twice as slow every round: the halves never agree
        state["k"] += 1
        time.sleep(1e-4 * 2 ** min(state["k"], 8))

    res = compare({"a": lambda: time.sleep(1e-3), "b": drifting}, min_rounds=4, max_rounds=6,
                  target_seconds=1e-9)
    assert not res.stable and res.rounds == 6


def test_errors_name_the_argument(capsys):
    f = lambda: None  # noqa: E731
    with pytest.raises(TypeError, match="contenders"):
        compare({})
    with pytest.raises(TypeError, match=r"contenders\['a'\]"):
        compare({"a": 3})
    with pytest.raises(ValueError, match="baseline"):
        compare({"a": f}, baseline="b")
    for kw, val in (("min_rounds", 0), ("warmup", 1.5), ("max_rounds", True), ("rtol", 0.0),
                    ("target_seconds", float("nan")), ("budget_seconds", -1)):
        with pytest.raises(ValueError, match=kw):
            compare({"a": f}, **{kw: val})
    with pytest.raises(ValueError, match="max_rounds"):
        compare({"a": f}, min_rounds=5, max_rounds=3)
    progress(2, 7, "case")
    assert capsys.readouterr().err == "[2/7] case ...\n"
