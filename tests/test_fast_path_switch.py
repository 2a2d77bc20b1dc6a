"""The fast-path switches (senn_ref/fast_path_switch.py): overlapping off() blocks in two threads
leave the path on once both close (save/restore of a flag left it off), nesting, exceptions."""
from __future__ import annotations

import threading

import pytest

from senn_ref import natural_gradient, network_plan
from senn_ref.fast_path_switch import FastPathSwitch
from senn_ref.grow import compiled_search

CONTEXTS = {"layerwise": (network_plan, "_ENABLED", network_plan.layerwise),
            "python_loop": (natural_gradient, "_COMPILED_LOOP", natural_gradient.python_loop),
            "numpy_search": (compiled_search, "_ENABLED", compiled_search.numpy_search)}


def _interleave(context):
    """Thread A enters, thread B enters, A leaves, B leaves (forced by events); returns whether
    the path was off inside each block."""
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def a(switch):
        with context():
            seen["a"] = bool(switch)
            a_in.set()
            b_in.wait(10)
        a_out.set()

    def b(switch):
        a_in.wait(10)
        with context():
            seen["b"] = bool(switch)
            b_in.set()
            a_out.wait(10)
    return a, b, seen


@pytest.mark.parametrize("which", sorted(CONTEXTS))
def test_overlapping_blocks_in_two_threads_leave_the_path_on(which):
    module, attr, context = CONTEXTS[which]
    switch = getattr(module, attr)
    assert isinstance(switch, FastPathSwitch) and bool(switch), repr(switch)
    a, b, seen = _interleave(context)
    threads = [threading.Thread(target=a, args=(switch,)), threading.Thread(target=b, args=(switch,))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert seen == {"a": False, "b": False}, seen
    assert bool(getattr(module, attr)), f"{which}: left off after both blocks closed: {switch!r}"


def test_nested_blocks_and_exceptions():
    switch = FastPathSwitch("test")
    assert switch and repr(switch) == "FastPathSwitch('test', on)"
    with switch.off():
        with switch.off():
            assert not switch and "2 open" in repr(switch)
        assert not switch
    assert switch
    with pytest.raises(KeyError):
        with switch.off():
            raise KeyError("inside")
    assert switch


def test_save_restore_would_have_failed():
    """The interleaving above does break a save/restore flag (so the test can fail)."""
    state = {"on": True}

    class Flag:
        def __bool__(self):
            return state["on"]

    from contextlib import contextmanager

    @contextmanager
    def off():
        previous, state["on"] = state["on"], False
        try:
            yield
        finally:
            state["on"] = previous

    a, b, _ = _interleave(off)
    threads = [threading.Thread(target=a, args=(Flag(),)), threading.Thread(target=b, args=(Flag(),))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert state["on"] is False
