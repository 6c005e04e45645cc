"""A study plugin for tests: importing it registers an attack defined outside securevfl (in the study and its workers)."""

from __future__ import annotations

from attack_fixtures import RowsSeen

from securevfl.attacks import ATTACKS, register_attack

if RowsSeen.name not in ATTACKS:
    register_attack(RowsSeen)
