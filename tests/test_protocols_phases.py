"""Phases are typed and every one of them is counted in exactly one cost group."""

from __future__ import annotations

import pytest

from securevfl.protocols import PHASE_GROUPS, CostGroup, Phase, PhaseTimer, cost_summary


def test_every_phase_belongs_to_exactly_one_cost_group() -> None:
    grouped = [phase for phases in PHASE_GROUPS.values() for phase in phases]
    assert sorted(grouped) == sorted(Phase)
    assert set(PHASE_GROUPS) == set(CostGroup)


def test_the_summary_accounts_for_every_second_of_every_phase() -> None:
    seconds = {phase.value: float(index + 1) for index, phase in enumerate(Phase)}
    summary = cost_summary(seconds)
    assert sum(summary.values()) == pytest.approx(sum(seconds.values()))
    assert summary["encrypted_compute"] == pytest.approx(
        seconds["homomorphic_backprop"] + seconds["top_encrypted"] + seconds["defense_encrypted"]
    )


def test_the_timer_refuses_a_name_that_is_not_a_phase_and_stores_plain_strings() -> None:
    timer = PhaseTimer()
    with pytest.raises(ValueError):
        with timer.phase("defence_encrypted"):  # type: ignore[arg-type]
            pass
    with timer.phase(Phase.DEFENSE_ENCRYPTED):
        pass
    assert list(timer.to_dict()) == ["defense_encrypted"]
    assert type(next(iter(timer.to_dict()))) is str
