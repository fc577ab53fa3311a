"""harness.timing.time_calls driven by a fake clock that advances only when the timed call runs."""

from __future__ import annotations

import pytest

from harness.timing import TimingPolicy, time_calls


class FakeWorld:
    """A clock plus run/synchronize callables that log every event in order."""

    def __init__(self, run_step: float, sync_step: float = 0.0) -> None:
        self.now = 0.0
        self.run_step = run_step
        self.sync_step = sync_step
        self.events: list[tuple] = []

    def clock(self) -> float:
        self.events.append(("clock", self.now))
        return self.now

    def run(self, prepared) -> str:
        self.events.append(("run", prepared))
        self.now += self.run_step
        return prepared

    def synchronize(self) -> None:
        self.events.append(("sync",))
        self.now += self.sync_step

    def kinds(self) -> list[str]:
        return [e[0] for e in self.events]


def test_iterations_binding() -> None:
    world = FakeWorld(0.5)
    timed = time_calls(world.run, world.synchronize, ["a"], TimingPolicy(0, 5, 1.0, 10.0), world.clock)
    # after 2 calls 1.0 s has passed, but 5 iterations are required
    assert timed.repeats == ((0.5, 0.5, 0.5, 0.5, 0.5),)
    assert timed.samples == [0.5] * 5
    assert timed.hit_time_cap is False


def test_seconds_binding() -> None:
    world = FakeWorld(0.5)
    timed = time_calls(world.run, world.synchronize, ["a"], TimingPolicy(0, 2, 3.0, 10.0), world.clock)
    # 2 iterations are met after 1.0 s; 3.0 s needs 6 iterations
    assert timed.repeats == ((0.5,) * 6,)
    assert timed.hit_time_cap is False


def test_warmup_calls_are_not_timed() -> None:
    world = FakeWorld(0.25)
    timed = time_calls(world.run, world.synchronize, ["a", "b"], TimingPolicy(3, 2, 0.5, 10.0), world.clock)
    assert len(timed.samples) == 2
    # warmup: run+sync three times, inputs cycled a, b, a, and no clock reading among them
    assert world.events[:6] == [("run", "a"), ("sync",), ("run", "b"), ("sync",), ("run", "a"), ("sync",)]
    assert world.events[6][0] == "clock"
    assert sum(k == "run" for k in world.kinds()) == 5
    # timed iterations start again from the first input
    assert [e[1] for e in world.events[6:] if e[0] == "run"] == ["a", "b"]


def test_repeats_give_one_tuple_each() -> None:
    world = FakeWorld(0.5)
    timed = time_calls(world.run, world.synchronize, ["a"], TimingPolicy(1, 3, 1.0, 10.0, repeats=4), world.clock)
    assert timed.repeats == ((0.5, 0.5, 0.5),) * 4
    assert len(timed.samples) == 12
    assert sum(k == "run" for k in world.kinds()) == 1 + 12


def test_max_seconds_caps_a_slow_cell() -> None:
    world = FakeWorld(0.5)
    timed = time_calls(world.run, world.synchronize, ["a"], TimingPolicy(0, 100, 1.0, 2.0), world.clock)
    assert timed.hit_time_cap is True
    assert timed.repeats == ((0.5,) * 4,)


def test_cap_is_not_reported_when_minimums_are_met_at_the_cap() -> None:
    world = FakeWorld(0.5)
    timed = time_calls(world.run, world.synchronize, ["a"], TimingPolicy(0, 4, 2.0, 2.0), world.clock)
    assert timed.hit_time_cap is False
    assert len(timed.samples) == 4


def test_inputs_are_cycled_in_order() -> None:
    world = FakeWorld(0.125)
    time_calls(world.run, world.synchronize, ["a", "b", "c"], TimingPolicy(0, 7, 0.1, 10.0), world.clock)
    assert [e[1] for e in world.events if e[0] == "run"] == list("abcabca")


def test_synchronize_is_inside_the_window_once_per_iteration() -> None:
    world = FakeWorld(0.5, sync_step=0.25)  # the device work finishes during synchronize
    timed = time_calls(world.run, world.synchronize, ["a"], TimingPolicy(0, 3, 0.1, 10.0), world.clock)
    assert timed.samples == [0.75, 0.75, 0.75]
    # one clock read to start the repeat, then clock, run, sync, clock per iteration
    assert world.kinds() == ["clock"] + ["clock", "run", "sync", "clock"] * 3


def test_no_inputs_is_an_error() -> None:
    world = FakeWorld(0.5)
    with pytest.raises(ValueError, match="no inputs"):
        time_calls(world.run, world.synchronize, [], TimingPolicy(0, 1, 0.1, 1.0), world.clock)
