"""The mutant registry: every bug class beyond BUGS.md is known by name and switched off by
default."""

from __future__ import annotations

import pytest

from sut.mutants import MUTANTS, TRANSPORTS, Mutant, Mutants

PROTOCOL_MONITOR_MUTANTS = {
    "version-from-store": {"delta", "sotw"},
    "versions-restart-with-process": {"delta", "sotw"},
    "unrequested-resources": {"delta", "sotw"},
    "nonce-from-version": {"delta", "sotw"},
    "removals-not-deferred": {"delta", "sotw"},
    "removals-unscoped": {"delta"},
    "request-version-trusted": {"sotw"},
    "empty-snapshot-on-start": {"delta", "sotw"},
    "partial-store-on-start": {"delta", "sotw"},
}


def test_mutants_of_accepts_every_new_name():
    mutants = Mutants.of(sorted(PROTOCOL_MONITOR_MUTANTS))
    assert mutants.names == frozenset(PROTOCOL_MONITOR_MUTANTS)
    for name in PROTOCOL_MONITOR_MUTANTS:
        assert Mutant(name) in mutants
        assert Mutant(name) not in Mutants()


def test_mutants_are_asked_by_member_never_by_string():
    mutants = Mutants.of(["nack-loop"])
    assert Mutant.NACK_LOOP in mutants
    with pytest.raises(TypeError, match="Mutant member"):
        assert "nack-loop" in mutants


@pytest.mark.parametrize("name", sorted(PROTOCOL_MONITOR_MUTANTS))
def test_each_new_mutant_is_described_beyond_bugs_md(name):
    spec = MUTANTS[name]
    assert spec.modes == PROTOCOL_MONITOR_MUTANTS[name]
    assert not spec.listed and spec.layer and spec.mechanism and not spec.equivalent
    assert spec.failure_policy is None and spec.implies == ()


def test_an_unknown_name_is_refused():
    with pytest.raises(ValueError, match="unknown mutant"):
        Mutants.of(["version-from-input"])


def test_transports_follow_the_reason_a_mechanism_is_absent_per_type():
    assert MUTANTS[Mutant.UNORDERED_PUSH].transports == frozenset({"ads"})
    assert MUTANTS[Mutant.NACK_LOOP].transports == TRANSPORTS
    for spec in MUTANTS.values():
        assert spec.transports == (
            frozenset({"ads"}) if spec.not_per_type else frozenset({"ads", "per-type"})
        )
        for implied in spec.implies:
            # A combination exists only where every mechanism it switches on does.
            assert spec.transports <= MUTANTS[implied].transports, spec.name
