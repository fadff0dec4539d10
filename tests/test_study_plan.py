"""The study's trial plan: Latin-square balance of cells, sides, serial positions and carry-over; each participant
sees each window once per block; the seed changes the pairing, not the balance."""

from __future__ import annotations

from collections import Counter

import pytest

from paindiffusion.study.plan import (ORDER, REFERENCE, STATIC, Design, conditions, cycle_length, make_trials,
                                      plan_rows, shown, williams_period, williams_row)

GENERATORS = ["PainDiffusion", "rules given the controls", "ridge ARX", "random clip"]


def design(windows: int = 5, seed: int = 0, catch: bool = True, reference: bool = True) -> Design:
    blocks = [b for b in ORDER if reference or b != "realism"]
    return Design([f"w{i + 1}" for i in range(windows)], GENERATORS, reference, blocks,
                  [f"w{windows + 1}"] if catch else [], seed)


def laid(d: Design):
    trials = make_trials(d, lambda block, window, source: f"{window}/{source}/{block == 'diversity'}")
    return {t.id: t for t in trials}, plan_rows(d, trials)


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6, 7])
def test_williams_rows_balance_position_and_carry_over(n):
    rows = [williams_row(n, r) for r in range(williams_period(n))]
    assert all(sorted(r) == list(range(n)) for r in rows)
    positions = Counter((item, k) for r in rows for k, item in enumerate(r))
    pairs = Counter((r[k], r[k + 1]) for r in rows for k in range(n - 1))
    assert len(set(positions.values())) == 1 and len(positions) == n * n  # every item at every place equally often
    assert len(set(pairs.values())) == 1 and len(pairs) == n * (n - 1)  # every ordered neighbour pair equally often


def test_conditions_of_each_block():
    assert conditions("realism", GENERATORS, True) == [(REFERENCE, g) for g in GENERATORS]
    assert conditions("realism", GENERATORS, False) == []
    assert conditions("reaction", GENERATORS, True) == [(REFERENCE,)] + [(g,) for g in GENERATORS]
    assert conditions("overall", GENERATORS, True) == [(GENERATORS[0], b) for b in GENERATORS[1:]]


@pytest.mark.parametrize("windows,seed", [(5, 0), (4, 3), (8, 1)])
def test_full_cycle_sees_every_cell_equally_often_on_both_sides(windows, seed):
    d = design(windows, seed)
    trials, rows = laid(d)
    assert len(rows) == cycle_length({b: len(c) for b, c in d.cells().items()}, windows, True)
    seen = Counter(e["trial"] for r in rows for e in r)
    for block in ORDER:
        cells = [t for t in trials.values() if t.block == block and not t.catch]
        assert len({seen[t.id] for t in cells}) == 1, block  # balanced cells
    sides = Counter((e["trial"], e["flip"]) for r in rows for e in r)
    for t in trials.values():
        if t.block in ("realism", "overall"):
            assert sides[(t.id, True)] == sides[(t.id, False)], t  # every cell shown left and right equally
        else:
            assert sides[(t.id, True)] == 0


def test_each_participant_sees_each_window_once_per_block_and_one_catch():
    trials, rows = laid(design(5))
    for row in rows:
        assert len(row) == 5 * 4 + 1 and len({e["trial"] for e in row}) == len(row)
        for block in ORDER:
            windows = [trials[e["trial"]].window for e in row if trials[e["trial"]].block == block and not trials[e["trial"]].catch]
            assert sorted(windows) == [f"w{i}" for i in range(1, 6)]
        blocks = [trials[e["trial"]].block for e in row]
        assert blocks == sorted(blocks, key=ORDER.index)  # blocks in their fixed order
        catch = [trials[e["trial"]] for e in row if trials[e["trial"]].catch]
        assert len(catch) == 1 and set(catch[0].sources) == {REFERENCE, STATIC} and catch[0].window == "w6"


@pytest.mark.parametrize("participants", [1, 7, 13, 50])
def test_any_participant_count_is_within_one_of_balance(participants):
    trials, rows = laid(design(5))
    first = [rows[n % len(rows)] for n in range(participants)]
    seen = Counter(e["trial"] for r in first for e in r)
    for block in ORDER:
        counts = [seen[t.id] for t in trials.values() if t.block == block and not t.catch]
        assert max(counts) - min(counts) <= 1, block
    serial = Counter((trials[e["trial"]].block, trials[e["trial"]].window, k) for r in first
                     for k, e in enumerate([x for x in r if not trials[x["trial"]].catch]))
    for block in ORDER:
        c = [v for (b, _, _), v in serial.items() if b == block]
        assert max(c) - min(c) <= 2  # Williams rows: every window nearly equally often at every serial place


def test_seed_changes_the_pairing_not_the_cells():
    (t0, r0), (t1, r1) = laid(design(5, seed=0)), laid(design(5, seed=1))
    assert t0 == t1  # the same cells
    assert r0 != r1 and len(r0) == len(r1)


def test_stimulus_file_design_has_no_realism_and_shown_flips():
    trials, rows = laid(design(4, catch=False, reference=False))
    assert {t.block for t in trials.values()} == {"reaction", "diversity", "overall"}
    assert all(REFERENCE not in t.sources for t in trials.values())
    t = next(t for t in trials.values() if t.block == "overall")
    assert shown(t, True) == (t.sources[::-1], t.clips[::-1]) and shown(t, False) == (t.sources, t.clips)
