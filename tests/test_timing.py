"""harness.measure.timing driven by a fake clock that advances only when the timed call runs,
and the drift that interleaved rounds (harness.run.schedule) exist to cancel."""

from __future__ import annotations

import numpy as np
import pytest

from harness.measure.timing import PassPolicy, affordable_count, one_per_shape, time_passes
from harness.results.rounds import paired_speedup
from harness.run.schedule import round_order, schedule


class FakeWorld:
    """A clock plus run/synchronize callables that log every event in order.

    ``run(x)`` advances the clock by ``costs[x]``; ``synchronize()`` by ``sync_step``. Nothing else
    moves the clock, so every latency is known exactly in advance.
    """

    def __init__(self, costs: dict[str, float], sync_step: float = 0.0) -> None:
        self.now = 0.0
        self.costs = costs
        self.sync_step = sync_step
        self.events: list[tuple] = []

    def clock(self) -> float:
        self.events.append(("clock", self.now))
        return self.now

    def run(self, prepared: str) -> str:
        self.events.append(("run", prepared))
        self.now += self.costs[prepared]
        return prepared

    def synchronize(self) -> None:
        self.events.append(("sync",))
        self.now += self.sync_step

    def kinds(self) -> list[str]:
        return [e[0] for e in self.events]

    def runs(self) -> list[str]:
        return [e[1] for e in self.events if e[0] == "run"]

    def time(self, inputs: list[str], shapes: list, policy: PassPolicy):
        return time_passes(self.run, self.synchronize, inputs, shapes, policy, self.clock)


# Costs that are multiples of 1/8: sums and clock differences are exact in binary floating point.
EIGHT = {name: (k + 1) / 8 for k, name in enumerate("abcdefgh")}


def eight_inputs() -> tuple[list[str], list[str]]:
    inputs = list(EIGHT)
    return inputs, inputs  # every input its own shape


# --- one_per_shape ----------------------------------------------------------------------------


def test_one_per_shape_gives_the_first_index_of_each_shape_in_order() -> None:
    shapes = [(1, 8), (1, 8), (1, 12), (1, 8), (1, 5), (1, 12)]
    assert one_per_shape(shapes) == [0, 2, 4]


def test_one_per_shape_of_a_single_shape_is_the_first_input() -> None:
    assert one_per_shape([(4, 128)] * 5) == [0]


# --- warm-up ----------------------------------------------------------------------------------


def test_warmup_runs_one_input_per_shape_per_pass_without_reading_the_clock() -> None:
    world = FakeWorld({"a": 0.5, "b": 0.25, "c": 0.125, "d": 1.0})
    inputs = ["a", "b", "c", "d"]
    shapes = ["s", "s", "t", "s"]  # two shapes: a (first "s") and c (first "t")
    timed = world.time(inputs, shapes, PassPolicy(budget_s=0.0, warmup_passes=2, min_passes=1))
    warmup = [("run", "a"), ("sync",), ("run", "c"), ("sync",)] * 2
    assert world.events[: len(warmup)] == warmup
    assert world.events[len(warmup)][0] == "clock"  # the first clock read comes after warm-up
    assert world.kinds()[: len(warmup)].count("clock") == 0
    # 4 warm-up calls, then one timed pass over all 4 inputs
    assert len(world.runs()) == 4 + 4
    assert len(timed.passes) == 1
    # warm-up time is not in any sample: the pass holds just the four costs
    assert timed.passes[0] == (0.5, 0.25, 0.125, 1.0)


def test_no_warmup_passes_starts_timing_at_once() -> None:
    world = FakeWorld({"a": 0.5})
    world.time(["a"], ["s"], PassPolicy(budget_s=0.0, warmup_passes=0))
    assert world.kinds() == ["clock", "run", "sync", "clock"]


def test_shapes_already_run_skip_only_the_first_warmup_pass() -> None:
    world = FakeWorld({"a": 0.5, "b": 0.25, "c": 0.125})
    policy = PassPolicy(budget_s=0.0, warmup_passes=2, min_passes=1)
    time_passes(world.run, world.synchronize, ["a", "b", "c"], ["s", "t", "u"], policy, world.clock, warm={"t"})
    # pass 1 warms s and u (t already ran in this process); pass 2 warms all three
    assert world.runs()[:5] == ["a", "c", "a", "b", "c"]
    assert len(world.runs()) == 5 + 3


# --- outputs of the first pass ----------------------------------------------------------------


def test_keep_sees_each_output_of_the_first_pass_once_after_its_clock_read() -> None:
    world = FakeWorld(EIGHT)
    inputs, shapes = eight_inputs()
    kept: list[tuple[int, str, list]] = []

    def keep(index: int, output: str) -> None:
        kept.append((index, output, list(world.kinds())))

    policy = PassPolicy(budget_s=0.0, warmup_passes=1, min_passes=3)
    time_passes(world.run, world.synchronize, inputs, shapes, policy, world.clock, keep=keep)
    assert sorted((index, output) for index, output, _ in kept) == list(enumerate(inputs))
    for _, _, events in kept:
        assert events[-3:] == ["run", "sync", "clock"]  # the stop time was read before keep ran


# --- whole passes -----------------------------------------------------------------------------


def test_every_timed_pass_runs_every_input_exactly_once() -> None:
    world = FakeWorld(EIGHT)
    inputs, shapes = eight_inputs()
    timed = world.time(inputs, shapes, PassPolicy(budget_s=0.0, warmup_passes=1, min_passes=5))
    timed_runs = world.runs()[len(inputs) :]  # every input is its own shape: 8 warm-up calls
    assert len(timed_runs) == 5 * len(inputs)
    for p in range(5):
        assert sorted(timed_runs[p * 8 : (p + 1) * 8]) == inputs
    assert len(timed.passes) == 5
    assert all(len(one) == len(inputs) for one in timed.passes)
    assert len(timed.samples) == 5 * 8


def test_latency_is_indexed_by_input_not_by_call_order() -> None:
    world = FakeWorld(EIGHT)
    inputs, shapes = eight_inputs()
    timed = world.time(inputs, shapes, PassPolicy(budget_s=0.0, warmup_passes=0, min_passes=3))
    expected = tuple(EIGHT[name] for name in inputs)  # 0.125, 0.25, ..., 1.0
    assert timed.passes == (expected, expected, expected)
    # while the calls themselves did not go in input order
    assert world.runs()[:8] != inputs


def test_samples_flatten_the_passes_in_pass_order() -> None:
    world = FakeWorld({"a": 0.25, "b": 0.5})
    timed = world.time(["a", "b"], ["s", "t"], PassPolicy(budget_s=0.0, warmup_passes=0, min_passes=2))
    assert timed.samples == [0.25, 0.5, 0.25, 0.5]


def test_pass_order_is_shuffled_per_pass_and_seeded() -> None:
    inputs, shapes = eight_inputs()

    def call_order(seed: int) -> list[str]:
        world = FakeWorld(EIGHT)
        world.time(inputs, shapes, PassPolicy(budget_s=0.0, warmup_passes=0, min_passes=4, seed=seed))
        return world.runs()

    first = call_order(7)
    assert call_order(7) == first  # same seed, same order
    assert call_order(8) != first  # another seed, another order
    orders = [tuple(first[p * 8 : (p + 1) * 8]) for p in range(4)]
    assert len(set(orders)) > 1  # reshuffled between passes, not one fixed order


# --- how many passes --------------------------------------------------------------------------


def test_passes_continue_until_the_budget_is_spent() -> None:
    world = FakeWorld({"a": 0.1, "b": 0.2, "c": 0.3})
    timed = world.time(["a", "b", "c"], ["s", "s", "s"], PassPolicy(budget_s=1.0, warmup_passes=1))
    # each pass costs 0.6: after one pass 0.6 < 1.0 is left unspent, after two 1.2 >= 1.0
    assert len(timed.passes) == 2
    for one in timed.passes:
        assert one == pytest.approx((0.1, 0.2, 0.3), abs=1e-12)
    # 1 warm-up call (one shape) + 2 passes of 3
    assert len(world.runs()) == 1 + 6


def test_budget_counts_only_timed_latency_and_stops_at_exactly_spent() -> None:
    costs = {"a": 0.125, "b": 0.25, "c": 0.375}  # a pass costs exactly 0.75
    exact = FakeWorld(costs).time(list(costs), list(costs), PassPolicy(budget_s=1.5, warmup_passes=3))
    assert len(exact.passes) == 2  # 1.5 spent is not < 1.5: stop; 3 warm-up passes cost nothing
    over = FakeWorld(costs).time(list(costs), list(costs), PassPolicy(budget_s=1.5 + 1e-9, warmup_passes=3))
    assert len(over.passes) == 3


def test_min_passes_wins_over_a_spent_budget() -> None:
    world = FakeWorld({"a": 1.0})
    timed = world.time(["a"], ["s"], PassPolicy(budget_s=0.5, warmup_passes=0, min_passes=4))
    assert len(timed.passes) == 4


def test_a_zero_budget_still_times_one_pass() -> None:
    timed = FakeWorld({"a": 1.0, "b": 1.0}).time(["a", "b"], ["s", "s"], PassPolicy(budget_s=0.0))
    assert len(timed.passes) == 1


def test_max_passes_caps_a_budget_that_is_never_spent() -> None:
    world = FakeWorld({"a": 0.125})
    timed = world.time(["a"], ["s"], PassPolicy(budget_s=100.0, warmup_passes=0, max_passes=6))
    assert len(timed.passes) == 6
    assert len(world.runs()) == 6


# --- the timed window -------------------------------------------------------------------------


def test_synchronize_is_inside_the_timed_window() -> None:
    world = FakeWorld({"a": 0.5, "b": 0.25}, sync_step=0.25)  # device work finishes during sync
    timed = world.time(["a", "b"], ["s", "t"], PassPolicy(budget_s=0.0, warmup_passes=0, min_passes=2))
    assert timed.passes == ((0.75, 0.5), (0.75, 0.5))
    # per timed call: clock, run, sync, clock
    assert world.kinds() == ["clock", "run", "sync", "clock"] * 4


def test_no_inputs_is_an_error() -> None:
    world = FakeWorld({})
    with pytest.raises(ValueError, match="no inputs"):
        world.time([], [], PassPolicy(budget_s=1.0))
    assert world.events == []


# --- affordable_count -------------------------------------------------------------------------


def test_affordable_count_is_everything_when_no_more_than_min_count_without_running() -> None:
    world = FakeWorld({"a": 1.0, "b": 1.0, "c": 1.0})
    assert affordable_count(world.run, world.synchronize, ["a", "b", "c"], 0.001, 3, world.clock) == 3
    assert affordable_count(world.run, world.synchronize, ["a", "b"], 0.001, 5, world.clock) == 2
    assert world.events == []


COUNT_COSTS = {"a": 0.25, "b": 0.5, "c": 0.75, **{name: 100.0 for name in "defghij"}}
TEN = list(COUNT_COSTS)


def count_for(budget_s: float, min_count: int) -> tuple[int, FakeWorld]:
    world = FakeWorld(COUNT_COSTS)
    return affordable_count(world.run, world.synchronize, TEN, budget_s, min_count, world.clock), world


def test_affordable_count_is_the_budget_over_the_mean_pilot_time() -> None:
    # pilot: a, b, c timed once each after a warm call: mean (0.25 + 0.5 + 0.75) / 3 = 0.5 s
    count, _ = count_for(2.6, 2)
    assert count == 5  # floor(2.6 / 0.5); a warm call inside the clock would give floor(2.6 / 1.0) = 2
    assert isinstance(count, int)


def test_affordable_count_is_clamped_to_min_count_and_to_the_input_count() -> None:
    assert count_for(0.6, 2)[0] == 2  # floor(0.6 / 0.5) = 1, raised to min_count
    assert count_for(100.0, 2)[0] == 10  # floor(100 / 0.5) = 200, cut to the 10 inputs


def test_affordable_count_pilot_touches_only_the_first_three_inputs() -> None:
    _, world = count_for(2.6, 2)
    assert world.runs() == ["a", "a", "b", "b", "c", "c"]
    # each: warm call untimed, then the timed one between two clock reads
    assert world.kinds() == ["run", "sync", "clock", "run", "sync", "clock"] * 3


def test_affordable_count_stops_the_pilot_when_the_minimum_fills_the_budget() -> None:
    count, world = count_for(0.4, 2)  # the first input alone: 2 x 0.25 s >= 0.4 s
    assert count == 2
    assert world.runs() == ["a", "a"]


# --- interleaved rounds -----------------------------------------------------------------------


def test_round_order_odd_rounds_mirror_the_round_before() -> None:
    items = list("ABCDE")
    for k in range(3):
        assert round_order(items, 2 * k + 1, seed=3) == round_order(items, 2 * k, seed=3)[::-1]


def test_round_order_even_rounds_use_their_own_seeded_permutation() -> None:
    items = list("ABCDEFG")
    assert round_order(items, 0, seed=3) != round_order(items, 2, seed=3)
    assert round_order(items, 0, seed=3) == round_order(items, 0, seed=3)
    assert round_order(items, 0, seed=3) != round_order(items, 0, seed=4)
    assert round_order(items, 4, seed=3) != round_order(items, 2, seed=3)


def test_every_round_visits_every_item_once() -> None:
    items = list("ABCDEFG")
    for r in range(6):
        assert sorted(round_order(items, r, seed=11)) == items


def test_schedule_goes_round_by_round() -> None:
    items = ["A", "B", "C"]
    visits = list(schedule(items, rounds=4, seed=5))
    assert len(visits) == 12
    assert [r for r, _ in visits] == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    for r in range(4):
        assert [item for rr, item in visits if rr == r] == round_order(items, r, seed=5)


class DriftingMachine:
    """Every call is slower than the last: call ``k`` of variant with ``base`` costs base * (1 + 0.01 k)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.calls = 0

    def clock(self) -> float:
        return self.now

    def runner(self, base: float):
        def run(prepared: int) -> None:
            self.now += base * (1 + 0.01 * self.calls)
            self.calls += 1

        return run

    def synchronize(self) -> None:
        pass

    def visit(self, base: float, calls: int) -> tuple[float, ...]:
        """One visit of a variant: one timed pass over ``calls`` inputs, no warm-up."""
        policy = PassPolicy(budget_s=0.0, warmup_passes=0, min_passes=1, max_passes=1)
        inputs = list(range(calls))
        return time_passes(self.runner(base), self.synchronize, inputs, ["s"] * calls, policy, self.clock).passes[0]


BASES = {"A": 1.0, "B": 0.5}  # B is truly 2.0x faster than A


def test_back_to_back_timing_is_biased_by_drift() -> None:
    machine = DriftingMachine()
    a = machine.visit(BASES["A"], 50)  # calls 0..49: median cost 1.0 * (1 + 0.245)
    b = machine.visit(BASES["B"], 50)  # calls 50..99: median cost 0.5 * (1 + 0.745)
    measured = paired_speedup(np.array([a]), np.array([b]))["speedup"]
    assert measured == pytest.approx(1.245 / 0.8725, rel=1e-9)  # 1.427
    assert abs(measured / 2.0 - 1) > 0.20


def test_interleaved_mirrored_rounds_cancel_the_drift() -> None:
    machine = DriftingMachine()
    rows: dict[str, list[tuple[float, ...]]] = {"A": [], "B": []}
    for _, variant in schedule(["A", "B"], rounds=4, seed=1):
        rows[variant].append(machine.visit(BASES[variant], 10))
    assert machine.calls == 4 * 2 * 10
    result = paired_speedup(np.array(rows["A"]), np.array(rows["B"]))
    # every single round is biased (the variant run first looks faster) ...
    assert all(abs(ratio / 2.0 - 1) > 0.05 for ratio in result["speedup_rounds"])
    # ... but a mirrored pair of rounds cancels it to first order
    assert abs(result["speedup"] / 2.0 - 1) < 0.02
    machine = DriftingMachine()
    a, b = machine.visit(1.0, 50), machine.visit(0.5, 50)
    back_to_back = paired_speedup(np.array([a]), np.array([b]))["speedup"]
    assert abs(result["speedup"] - 2.0) < abs(back_to_back - 2.0) / 10


def test_rounds_in_one_fixed_order_do_not_cancel_the_drift() -> None:
    machine = DriftingMachine()
    a_rows, b_rows = [], []
    for _ in range(4):  # A then B every round: no mirroring
        a_rows.append(machine.visit(1.0, 10))
        b_rows.append(machine.visit(0.5, 10))
    # round r: 2 * (1 + 0.01 (20 r + 4.5)) / (1 + 0.01 (20 r + 14.5)), all below 2
    expected = [2 * (1 + 0.01 * (20 * r + 4.5)) / (1 + 0.01 * (20 * r + 14.5)) for r in range(4)]
    result = paired_speedup(np.array(a_rows), np.array(b_rows))
    assert result["speedup_rounds"] == pytest.approx(expected, rel=1e-9)
    assert abs(result["speedup"] / 2.0 - 1) > 0.05
