"""Hypothesis profiles for pytest.

`dev` is the default, `ci` is chosen automatically when CI=true, `deep` is for long hunts.
Choose one with HYPOTHESIS_PROFILE=<name> or `pytest --hypothesis-profile <name>`
(the option wins over the variable).
"""

from __future__ import annotations

from harness.profiles import load_profile_from_environment, register_profiles

register_profiles()
load_profile_from_environment()
