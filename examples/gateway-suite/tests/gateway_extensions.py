"""This project's own operation and invariant, which routeproof runs like its built-in ones.

- Re-creating an HTTPRoute (deleted and applied again, as a GitOps tool that replaces objects
  does) gives it a new creation timestamp. Gateway API breaks ties between routes by creation
  time, oldest first, so a re-created route loses ties it used to win: the model says so, and the
  gateway must agree.
- Every running Envoy reports itself LIVE after every step: a proxy stuck initializing serves
  nothing, whatever its listeners say.
"""

from __future__ import annotations

from collections.abc import Iterator

import attrs

from harness.lockstep.extensions import Extensions, Letter, Operation, Violation, publish_world


@attrs.frozen
class RecreateRoute(Operation):
    kind = "recreate-route"

    name: str
    created: int

    def describe(self) -> str:
        return f"re-create HTTPRoute {self.name} (creation time {self.created})"

    def on_model(self, model):
        route = model.world.route(self.name)
        return model.with_world(model.world.with_route(attrs.evolve(route, created=self.created)))

    def on_stack(self, stack, before, after):
        publish_world(stack, after.world)

    def undo(self, before):
        route = before.world.route(self.name)
        return RecreateRoute(self.name, route.created)


def _recreate_oldest(model):
    routes = sorted(model.world.routes, key=lambda route: (route.created, route.name))
    if len(routes) < 2:
        return None  # no tie to lose
    return RecreateRoute(routes[0].name, routes[-1].created + 1)


def every_envoy_is_live(stack, model) -> Iterator[Violation]:
    for index, proxy in enumerate(stack.proxies):
        if proxy.envoy is not None and (state := proxy.envoy.admin.ready_state()) != "LIVE":
            yield Violation("envoy-live", f"proxy {index}: Envoy reports {state}")


EXTENSIONS = Extensions(
    operations=[RecreateRoute],
    letters=[Letter("re-create the oldest route", "recreate-route", _recreate_oldest)],
    invariants=[every_envoy_is_live],
)
