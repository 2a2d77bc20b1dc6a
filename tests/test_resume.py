"""Resuming SENN runs (train_senn with checkpoint_dir / resume, senn_ref/runstate/): runs stopped by
an exception at several steps, by SIGKILL of a subprocess (also in the middle of a checkpoint
write) and by Ctrl-C end bit for bit where the uninterrupted run ends (weights and log, wall
times aside); mismatched folders and bad arguments are refused before anything changes; an
injected NaN stops the run with NumericalFailure and leaves a loadable checkpoint.
derivations/22-run-checkpoints.md."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import senn_ref
from senn_ref import losses, mlp
from senn_ref.datasets import teacher_regression
from senn_ref.runstate import NumericalFailure, RunInterrupted, deferred_interrupt, list_runs, read_run
from senn_ref.runstate import interrupt
from senn_ref.trainer import SENNConfig, train_senn

# mini-batches (so the batch order and cursor matter), rounds at 8, 16, 24
SMALL = dict(steps=30, expand_every=8, n_candidates=6, search_steps=2, quiet=True, batch_size=8,
             tau=0.2, history_every=5)


@pytest.fixture(scope="module")
def task():
    X, Y, Xt, Yt, _ = teacher_regression(n_train=30, n_test=20, seed=1)
    return X, Y, Xt, Yt


def _run(task, cfg, seed=4, **kw):
    X, Y, Xt, Yt = task
    return train_senn(mlp([1, 1, 1], seed=3), X, Y, losses.mse(), cfg, X_val=Xt, Y_val=Yt, seed=seed, **kw)


def _comparable(log):
    d = log.to_dict()
    d.pop("timing")
    d["config"].pop("quiet")
    for r in d["rounds"]:
        r.pop("seconds_score"), r.pop("seconds_search")
    return d


def _assert_same_run(a, b):
    (na, la), (nb, lb) = a, b
    assert [x.name for x in na.layers] == [x.name for x in nb.layers]
    pa, pb = na.named_params(), nb.named_params()
    assert list(pa) == list(pb)
    for k in pa:
        np.testing.assert_array_equal(pa[k], pb[k], err_msg=k)
    assert _comparable(la) == _comparable(lb)


class Stop(Exception):
    pass


def _stop_at(step_to_stop):
    def callback(step, net, log):
        if step == step_to_stop:
            raise Stop(step)
        return False
    return callback


@pytest.fixture(scope="module")
def reference(task):
    """The uninterrupted runs (no checkpoints), one per optimiser."""
    out = {}
    for opt, lr in (("ngd-cg", 0.1), ("kfac", 0.1), ("adam", 0.05)):
        cfg = SENNConfig(**SMALL, optimizer=opt, lr=lr)
        out[opt] = _run(task, cfg)
        assert out[opt][1].count("width") >= 1, "the short run should grow"
    return out


@pytest.mark.parametrize("optimizer, lr", [("ngd-cg", 0.1), ("kfac", 0.1), ("adam", 0.05)])
def test_runs_stopped_at_several_steps_resume_bit_identically(task, reference, tmp_path, optimizer, lr):
    cfg = SENNConfig(**SMALL, optimizer=optimizer, lr=lr)
    # stops: mid-way between checkpoints, right after a round (step 8 ran one), at a checkpoint
    for stop in (5, 8, 17, 23):
        with pytest.raises(Stop):
            _run(task, cfg, checkpoint_dir=tmp_path, checkpoint_every=3, resume=True, callback=_stop_at(stop))
        assert len(list_runs(tmp_path)) <= 2
    resumed = _run(task, cfg, checkpoint_dir=tmp_path, checkpoint_every=3, resume=True)
    _assert_same_run(resumed, reference[optimizer])
    # the uninterrupted run with checkpoints is the same run too (saving changes nothing)
    _assert_same_run(_run(task, cfg, checkpoint_dir=tmp_path / "plain", checkpoint_every=4,
                          checkpoint_rounds=True), reference[optimizer])
    # resuming a finished run only redoes the final evaluation
    _assert_same_run(_run(task, cfg, checkpoint_dir=tmp_path, resume=True), reference[optimizer])
    if optimizer == "adam":
        # the resumed state held entries created by growth after training began: Adam's grown
        # flag (08-optimisers.md section 4.1) was saved and restored, not only zeros
        arrays = read_run(list_runs(tmp_path)[-1][1]).arrays
        flags = [a for name, a in arrays.items() if name.endswith("/grown")]
        assert flags and all(a.dtype == np.uint8 for a in flags)
        assert any(a.any() for a in flags) and not all(a.all() for a in flags)


def test_an_ignored_sigint_stays_ignored():
    """SIGINT ignored on entry (SIG_IGN): deferred_interrupt installs nothing, a SIGINT to the
    process neither stops it nor raises the flag, and SIG_IGN is still there afterwards.  Not
    ignored: the flag handler is installed, a first SIGINT only raises the flag, a second raises
    KeyboardInterrupt, and the previous handler is back on exit."""
    outside = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with deferred_interrupt():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            assert not interrupt.requested()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        signal.signal(signal.SIGINT, signal.default_int_handler)
        with deferred_interrupt():
            assert signal.getsignal(signal.SIGINT) not in (signal.SIG_IGN, signal.default_int_handler)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            assert interrupt.requested()
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler and not interrupt.requested()
    finally:
        signal.signal(signal.SIGINT, outside)


@pytest.mark.parametrize("ignored", [True, False])
def test_a_process_started_with_sigint_ignored_keeps_running(ignored):
    """A child that inherits SIGINT ignored (as `cmd &` from a non-interactive shell does) and
    sends itself SIGINT inside deferred_interrupt exits 0 with the flag down; started normally,
    the same SIGINT raises the flag (the run would checkpoint and exit 130)."""
    code = ("import os, signal, time\n"
            "from senn_ref.runstate import deferred_interrupt, interrupt\n"
            "with deferred_interrupt():\n"
            "    os.kill(os.getpid(), signal.SIGINT)\n"
            "    time.sleep(0.1)\n"
            "    print(interrupt.requested())\n")
    start = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if ignored else None
    root = os.path.dirname(os.path.dirname(os.path.abspath(senn_ref.__file__)))     # the code under test
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          preexec_fn=start, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ("False" if ignored else "True"), done.stdout


def test_a_cosine_lr_schedule_resumes_bit_identically(task, tmp_path):
    """lr_schedule="cosine" is a function of the global step only, so a resumed run sees the
    same lr sequence and ends where the uninterrupted one does."""
    cfg = SENNConfig(**SMALL, optimizer="adam", lr=0.05, lr_schedule="cosine")
    plain = _run(task, cfg)
    with pytest.raises(Stop):
        _run(task, cfg, checkpoint_dir=tmp_path, checkpoint_every=3, resume=True, callback=_stop_at(17))
    _assert_same_run(_run(task, cfg, checkpoint_dir=tmp_path, checkpoint_every=3, resume=True), plain)


def test_ctrl_c_writes_a_checkpoint_and_the_resumed_run_is_identical(task, reference, tmp_path):
    cfg = SENNConfig(**SMALL, optimizer="ngd-cg", lr=0.1)

    def press_ctrl_c(step, net, log):
        if step == 12:
            os.kill(os.getpid(), signal.SIGINT)         # handled: only a flag is raised
        return False

    def before(signum, frame):          # the handler deferred_interrupt must put back
        raise AssertionError("SIGINT reached the handler outside deferred_interrupt")
    # a handler of the test's own, not Python's default: started in the background (`cmd &` in a
    # script) Python inherits SIGINT ignored, and the default handler is not the previous one
    outside = signal.signal(signal.SIGINT, before)
    try:
        with deferred_interrupt():
            with pytest.raises(RunInterrupted) as info:
                _run(task, cfg, checkpoint_dir=tmp_path, callback=press_ctrl_c)
        assert signal.getsignal(signal.SIGINT) is before
    finally:
        signal.signal(signal.SIGINT, outside)
    assert info.value.step == 13 and info.value.path == str(tmp_path / "run-00000013.npz")
    assert not interrupt.requested()
    _assert_same_run(_run(task, cfg, checkpoint_dir=tmp_path, resume=True), reference["ngd-cg"])


CHILD = textwrap.dedent("""
    import sys, time
    import numpy as np
    from senn_ref import checkpoint, losses, mlp
    from senn_ref.datasets import teacher_regression
    from senn_ref.trainer import SENNConfig, train_senn
    folder, mode = sys.argv[1], sys.argv[2]
    X, Y, Xt, Yt, _ = teacher_regression(n_train=30, n_test=20, seed=1)
    cfg = SENNConfig(**{SMALL!r}, optimizer="ngd-cg", lr=0.1)
    if mode == "in-write":            # SIGKILL between writing a checkpoint and renaming it
        import os, signal
        calls = []
        real = checkpoint.os.replace
        def replace(a, b):
            calls.append(b)
            if len(calls) == 3:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(a, b)
        checkpoint.os.replace = replace
    def slow(step, net, log):
        time.sleep(0.02)
        if mode == "plain" and step == 20:      # parked: the parent's SIGKILL lands before the end
            time.sleep(600)                     # however late a loaded machine schedules it
        return False
    train_senn(mlp([1, 1, 1], seed=3), X, Y, losses.mse(), cfg, X_val=Xt, Y_val=Yt, seed=4,
               checkpoint_dir=folder, checkpoint_every=2, resume=True, callback=slow)
""").replace("{SMALL!r}", repr(SMALL))


def test_sigkill_of_a_subprocess_anywhere_then_resume_is_identical(task, reference, tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    root = os.path.dirname(os.path.dirname(os.path.abspath(senn_ref.__file__)))     # the code under test
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([root] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    # 1) killed from outside at an arbitrary moment once checkpoints exist (between steps 4 and 20:
    #    the child parks at step 20, so no scheduling delay lets it finish first)
    folder = tmp_path / "outside"
    child = subprocess.Popen([sys.executable, str(script), str(folder), "plain"], env=env)
    deadline = time.monotonic() + 600        # a hang guard, not an expectation (2 s unloaded)
    while len(list_runs(folder)) < 2 and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    assert child.wait(30) == -signal.SIGKILL, f"the child ended before it was killed ({child.returncode})"
    assert list_runs(folder), "no checkpoint within 600 s"
    killed_at = list_runs(folder)[-1][0]
    assert 0 < killed_at < SMALL["steps"]
    # 2) killed inside the third checkpoint write (after fsync, before the rename)
    folder2 = tmp_path / "in-write"
    code = subprocess.run([sys.executable, str(script), str(folder2), "in-write"], env=env).returncode
    assert code == -signal.SIGKILL
    assert [s for s, _ in list_runs(folder2)] == [2, 4]
    assert any(n.endswith(".npz.tmp") for n in os.listdir(folder2))       # the torn temporary file
    cfg = SENNConfig(**SMALL, optimizer="ngd-cg", lr=0.1)
    for f in (folder, folder2):
        _assert_same_run(_run(task, cfg, checkpoint_dir=f, checkpoint_every=2, resume=True),
                         reference["ngd-cg"])
    assert not any(n.endswith(".tmp") for n in os.listdir(folder2))       # removed by the resume


def test_injected_nan_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(task, reference, tmp_path):
    cfg = SENNConfig(**SMALL, optimizer="ngd-cg", lr=0.1)

    def poison(step, net, log):
        if step == 12:
            net.layers[0].params["W"][0, 0] = np.nan
        return False
    with pytest.raises(NumericalFailure, match=r"numerical failure at step 13: parameter dense0.W is not "
                                               r"finite before the step; the last good checkpoint is "
                                               r".*run-00000012.npz") as info:
        _run(task, cfg, checkpoint_dir=tmp_path, checkpoint_every=4, callback=poison)
    err = info.value
    assert err.step == 13 and err.checkpoint == str(tmp_path / "run-00000012.npz")
    assert err.log.events[-1]["kind"] == "numerical_failure" and err.log.events[-1]["step"] == 13
    assert [s for s, _ in list_runs(tmp_path)] == [8, 12]
    assert np.isfinite(read_run(err.checkpoint).net.get_flat()).all()
    assert os.path.exists(tmp_path / "failure-log.json")
    # the NaN came from outside: resuming without it finishes the reference run
    _assert_same_run(_run(task, cfg, checkpoint_dir=tmp_path, checkpoint_every=4, resume=True),
                     reference["ngd-cg"])
    # a loss that turns NaN inside the step is caught as well (and nothing is written)
    class NaNLoss(type(losses.mse())):
        def value_and_grad(self, F, Y):
            return np.nan, super().value_and_grad(F, Y)[1]
    with pytest.raises(NumericalFailure, match="step 0: the training loss is nan"):
        train_senn(mlp([1, 1, 1], seed=3), task[0], task[1], NaNLoss(),
                   SENNConfig(**SMALL, optimizer="sgd", lr=0.05), checkpoint_dir=tmp_path / "nan",
                   checkpoint_every=1)
    assert list_runs(tmp_path / "nan") == []


def test_resume_without_a_checkpoint_starts_afresh_and_says_so(task, reference, tmp_path, capsys):
    cfg = SENNConfig(**SMALL, optimizer="ngd-cg", lr=0.1)
    run = _run(task, cfg.replace(quiet=False), checkpoint_dir=tmp_path / "new", resume=True)
    assert f"resume: no checkpoint in {tmp_path / 'new'} yet; starting from step 0" in capsys.readouterr().err
    _assert_same_run(run, reference["ngd-cg"])


def test_mismatched_or_corrupt_folders_and_bad_arguments_are_refused_before_anything_changes(task, tmp_path):
    cfg = SENNConfig(**SMALL, optimizer="ngd-cg", lr=0.1)
    with pytest.raises(Stop):
        _run(task, cfg, checkpoint_dir=tmp_path, checkpoint_every=3, callback=_stop_at(7))
    newest = list_runs(tmp_path)[-1][1]
    X, Y, Xt, Yt = task
    net = mlp([1, 1, 1], seed=3)
    before = net.get_flat().copy()
    for kw, msg in ((dict(seed=5), "seed"), (dict(config=cfg.replace(tau=0.3)), r"config.tau \(0.2 in the file, 0.3 now\)"),
                    (dict(Y=Y + 1.0), "data")):
        args = dict(config=cfg, seed=4, Y=Y)
        args.update(kw)
        with pytest.raises(ValueError, match=msg) as info:
            train_senn(net, X, args["Y"], losses.mse(), args["config"], seed=args["seed"], X_val=Xt, Y_val=Yt,
                       checkpoint_dir=tmp_path, resume=True)
        assert str(info.value).startswith(newest)
        assert np.array_equal(net.get_flat(), before) and len(net.layers) == 3
    raw = open(newest, "rb").read()
    with open(newest, "wb") as fh:
        fh.write(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt.*previous checkpoint .*run-00000003.npz"):
        _run(task, cfg, checkpoint_dir=tmp_path, resume=True)
    for kw, exc, msg in ((dict(checkpoint_every=0), ValueError, "checkpoint_every"),
                         (dict(checkpoint_dir=tmp_path / "x", checkpoint_every=2.5), TypeError, "checkpoint_every"),
                         (dict(checkpoint_dir=tmp_path / "x", checkpoint_seconds=-1.0), ValueError, "checkpoint_seconds"),
                         (dict(resume=True), ValueError, "checkpoint_dir"),
                         (dict(checkpoint_dir=3), TypeError, "checkpoint_dir"),
                         (dict(checkpoint_dir=tmp_path, resume="yes"), TypeError, "resume")):
        with pytest.raises(exc, match=msg):
            train_senn(net, X, Y, losses.mse(), cfg, **kw)
        assert np.array_equal(net.get_flat(), before)
    assert not os.path.exists(tmp_path / "x")


class Keeper:
    """A callback with state: a copy of the network after step 9 and the losses it saw."""

    def __init__(self, stop=None):
        self.snap, self.seen, self.stop = None, [], stop

    def __call__(self, step, net, log):
        if step == 9:
            self.snap = net.copy()
        self.seen.append(log.history[-1]["train_loss"])
        if step == self.stop:
            raise Stop(step)
        return False

    def state_dict(self):
        return {"info": {"seen": self.seen}, "networks": {} if self.snap is None else {"snap": self.snap}}

    def load_state_dict(self, d):
        self.seen, self.snap = list(d["info"]["seen"]), d["networks"].get("snap")


def test_a_callback_with_state_is_saved_and_restored(task, reference, tmp_path):
    cfg = SENNConfig(**SMALL, optimizer="ngd-cg", lr=0.1)
    full = Keeper()
    _assert_same_run(_run(task, cfg, callback=full), reference["ngd-cg"])
    with pytest.raises(Stop):
        _run(task, cfg, checkpoint_dir=tmp_path, checkpoint_every=4, callback=Keeper(stop=14))
    again = Keeper()
    _assert_same_run(_run(task, cfg, checkpoint_dir=tmp_path, resume=True, callback=again), reference["ngd-cg"])
    assert again.seen == full.seen and len(full.seen) == SMALL["steps"]
    assert np.array_equal(again.snap.get_flat(), full.snap.get_flat())
    assert [la.name for la in again.snap.layers] == [la.name for la in full.snap.layers]
    with pytest.raises(ValueError, match="callback state"):
        _run(task, cfg, checkpoint_dir=tmp_path, resume=True)


def test_cli_demo_ctrl_c_says_how_to_resume_and_the_resumed_demo_is_identical(tmp_path, capsys, monkeypatch):
    import json

    from senn_ref import checkpoint
    from senn_ref.cli import main
    argv = ["demo", "regression1d", "--quick", "--no-baselines", "--quiet", "--out"]
    # --resume on a folder without checkpoints starts from the beginning and says so
    assert main(argv[:-2] + ["--out", str(tmp_path / "ref"), "--resume"]) == 0
    assert "resume: no checkpoint in" in capsys.readouterr().err
    calls = {"n": 0}

    def ctrl_c_at_step_40():
        calls["n"] += 1
        return calls["n"] == 41
    monkeypatch.setattr(interrupt, "requested", ctrl_c_at_step_40)
    assert main(argv + [str(tmp_path / "cut")]) == 130
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert f"checkpoint {tmp_path / 'cut' / 'regression1d' / 'checkpoints' / 'run-00000041.npz'} written" in err
    assert f"Continue with: senn-ref {' '.join(argv)} {tmp_path / 'cut'} --resume" in err
    monkeypatch.undo()
    assert main(argv + [str(tmp_path / "cut"), "--resume"]) == 0
    a, b = tmp_path / "ref" / "regression1d", tmp_path / "cut" / "regression1d"
    assert np.array_equal(checkpoint.load(a / "network.npz").get_flat(), checkpoint.load(b / "network.npz").get_flat())
    sa, sb = (json.load(open(d / "summary.json")) for d in (a, b))
    for s in (sa, sb):
        s.pop("wall_seconds"), s.pop("total_seconds"), s["senn"].pop("wall_seconds"), s["config"].pop("quiet")
    assert sa == sb and sa["landscape"]      # the figure's snapshots were restored too
    # a damaged newest checkpoint: one line naming it and the previous one, exit 1, nothing lost
    newest = list_runs(b / "checkpoints")[-1][1]
    raw = open(newest, "rb").read()
    open(newest, "wb").write(raw[: len(raw) // 2])
    capsys.readouterr()
    assert main(argv + [str(tmp_path / "cut"), "--resume"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert f"error: {newest}: not a readable senn-ref checkpoint (truncated or corrupt" in err
    assert "previous checkpoint" in err and len(list_runs(b / "checkpoints")) == 2


BAD_VALUES = [0, -1, 2.5, float("nan"), float("inf"), "3", True, [], None]


@pytest.mark.parametrize("arg", ["checkpoint_every", "checkpoint_seconds", "resume", "checkpoint_rounds"])
def test_bad_checkpoint_arguments_name_themselves_and_change_nothing(task, tmp_path, arg):
    from hypothesis import given, settings
    from hypothesis import strategies as st
    X, Y, _, _ = task
    cfg = SENNConfig(**SMALL)
    net = mlp([1, 1, 1], seed=3)
    before = net.get_flat().copy()

    def valid(v):
        if arg == "checkpoint_every":
            return v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 1)
        if arg == "checkpoint_seconds":
            return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) and v > 0)
        return isinstance(v, bool)

    @settings(max_examples=15, deadline=None)
    @given(st.one_of(st.sampled_from(BAD_VALUES), st.integers(-3, 0), st.text(max_size=3)))
    def check(v):
        if valid(v):
            return
        folder = tmp_path / "never"
        with pytest.raises((TypeError, ValueError), match=arg):
            train_senn(net, X, Y, losses.mse(), cfg, checkpoint_dir=folder, **{arg: v})
        assert np.array_equal(net.get_flat(), before) and not folder.exists()
    check()
