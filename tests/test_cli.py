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


# ------------------------------------------------------- user mistakes: one line naming the flag
def _one_line_error(capsys, argv, code=2):
    import pytest
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == code
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_cli_errors_name_the_flag(capsys, tmp_path, monkeypatch):
    """Issue 11 item 5."""
    assert "--steps" in _one_line_error(capsys, ["demo", "--steps", "0"])
    assert "--seed" in _one_line_error(capsys, ["demo", "--seed", "-1"])
    assert "--seed" in _one_line_error(capsys, ["verify", "--seed", "x"])
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    import senn_ref.demos.runner as runner
    trained = []
    monkeypatch.setattr(runner, "run_demo", lambda *a, **kw: trained.append(kw))
    # a folder inside a regular file can never be created: refused before any training
    err = _one_line_error(capsys, ["demo", "--out", str(blocker / "sub"), "--quick"])
    assert "--out" in err and trained == []
    assert main(["demo", "--out", str(tmp_path / "ok"), "--quick"]) == 0 and len(trained) == 1


def test_unknown_flag_is_named_before_a_missing_positional(capsys):
    """``senn-ref --bogus`` and ``senn-ref bench --bogus`` said only that the command / benchmark
    was missing; the mistyped flag is what the line must name."""
    assert "unrecognized arguments: --bogus" in _one_line_error(capsys, ["--bogus"])
    err = _one_line_error(capsys, ["bench", "--bogus"])
    assert err.startswith("senn-ref bench: error: unrecognized arguments: --bogus"), err
    assert "required: what" in _one_line_error(capsys, ["bench", "--quick"])
    assert "required: command" in _one_line_error(capsys, [])


def test_version_and_seed_help(capsys):
    from senn_ref import __version__
    import pytest
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.strip() == f"senn-ref {__version__}"
    for cmd in ("demo", "verify"):
        with pytest.raises(SystemExit):
            main([cmd, "--help"])
        out = " ".join(capsys.readouterr().out.split())
        assert "--seed SEED seed of" in out, out


def test_missing_data_extra_is_one_line(capsys, monkeypatch):
    """Issue 11 item 4: without scikit-learn, `bench optimizers` says which extra to install."""
    import sys
    monkeypatch.setitem(sys.modules, "sklearn", None)          # import sklearn -> ImportError
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    assert main(["bench", "optimizers", "--quick"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'senn-ref[data]'" in err and "Traceback" not in err, err


def test_api_demo_checks_before_training(tmp_path):
    import pytest
    from senn_ref.demo_regression import run
    with pytest.raises(ValueError, match="width"):
        run(out_dir=str(tmp_path), width=0, verbose=False)
    with pytest.raises(ValueError, match="seed"):
        run(out_dir=str(tmp_path), seed=-1, verbose=False)
    blocker = tmp_path / "f"
    blocker.write_text("x")
    with pytest.raises(OSError, match="out_dir"):
        run(out_dir=str(blocker / "sub"), quick=True, verbose=False)
