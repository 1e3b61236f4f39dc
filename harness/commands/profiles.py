"""Hypothesis profiles: one place, shared by pytest (via conftest.py) and the CLI."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, Phase, settings

__all__ = [
    "PROFILES",
    "load_profile_from_environment",
    "profile_name_from_environment",
    "register_profiles",
]

PROFILES = ("dev", "ci", "deep")

_SLOW_IS_FINE = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]


def register_profiles() -> None:
    """Register dev, ci and deep; a stateful example against real Envoy is slow by nature."""
    settings.register_profile(
        "dev",
        max_examples=10,
        stateful_step_count=12,
        deadline=None,
        suppress_health_check=_SLOW_IS_FINE,
        print_blob=True,
    )
    settings.register_profile(
        "ci",
        max_examples=25,
        stateful_step_count=12,
        deadline=None,
        derandomize=True,
        database=None,
        print_blob=True,
        suppress_health_check=_SLOW_IS_FINE,
        phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink, Phase.explain],
    )
    settings.register_profile(
        "deep",
        max_examples=2000,
        stateful_step_count=40,
        deadline=None,
        print_blob=True,
        suppress_health_check=_SLOW_IS_FINE,
    )


def profile_name_from_environment() -> str:
    """HYPOTHESIS_PROFILE if set, else `ci` under CI=true, else `dev`."""
    explicit = os.environ.get("HYPOTHESIS_PROFILE")
    if explicit:
        if explicit not in PROFILES:
            raise ValueError(
                f"HYPOTHESIS_PROFILE={explicit!r}: expected one of {', '.join(PROFILES)}"
            )
        return explicit
    return "ci" if os.environ.get("CI", "").lower() in {"true", "1", "yes"} else "dev"


def load_profile_from_environment() -> str:
    name = profile_name_from_environment()
    settings.load_profile(name)
    return name
