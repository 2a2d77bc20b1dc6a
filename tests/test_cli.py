"""Command line: verify passes on this machine, the main demo runs and its numbers obey the theory."""
import os

import numpy as np

from senn_ref.cli import main
from senn_ref.demo_regression import run as run_demo


def test_verify_command_passes(capsys):
    assert main(["verify"]) == 0
    out = capsys.readouterr().out
    assert ", 0 failed" in out and "FAIL" not in out


def test_demo_numbers(tmp_path):
    res = run_demo(out_dir=str(tmp_path), quick=True, verbose=False)
    step, train_l, test_l, lam, eta0, eta_d = res["records"].T
    assert os.path.getsize(res["figure"]) > 10_000
    np.testing.assert_allclose(lam, 2 * train_l, rtol=1e-12)           # MSE ceiling: lambda = 2L
    assert np.all(eta_d >= 0) and np.all(eta_d <= eta0 * (1 + 1e-9))     # damping only lowers eta
    assert np.all(eta0 <= lam * (1 + 1e-9))                              # eta <= lambda
    assert train_l[-1] < 0.1 * train_l[0]                                # natural gradient trains
    assert eta_d[-1] < 0.01 * eta_d[0]                                   # the damped score decays


def test_info_and_bad_command(capsys):
    assert main(["info"]) == 0
    assert "numba" in capsys.readouterr().out
    try:
        main(["frobnicate"])
    except SystemExit as exc:
        assert exc.code == 2
    else:
        raise AssertionError("unknown command accepted")
