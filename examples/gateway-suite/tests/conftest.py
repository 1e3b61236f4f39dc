"""The project's own Hypothesis profile: routeproof takes its examples and steps from it."""

from hypothesis import settings

settings.register_profile(
    "gateway-suite", max_examples=3, stateful_step_count=6, derandomize=True, deadline=None
)
settings.load_profile("gateway-suite")
