"""`run_hooks` against the reference extension server over real gRPC (no Envoy)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest
from envoy.config.listener.v3.listener_pb2 import Listener
from envoy.config.route.v3.route_components_pb2 import Route

from sut.controlplane.hooks import run_hooks
from sut.extension import (
    MARKER_HEADER,
    Budget,
    ExtensionClient,
    ExtensionServer,
    ExtensionSettings,
    FailureKind,
    Fault,
    Hook,
    ListenerContext,
    TranslateContext,
    TranslateModifyResult,
    marker_value,
)
from sut.translate import TranslateOptions, XdsResources, translate
from tests.controlplane.conftest import SITES
from tests.controlplane.manifests import Site, world

API = Site("api", "HTTP", 8080, "api.example.com")
"""Shares the HTTP port (and so the RouteConfiguration) with WEB: two virtual hosts in one."""


@pytest.fixture(scope="module")
def translated() -> XdsResources:
    return translate(world((*SITES, API)), TranslateOptions(readiness_port=0)).xds


def _routes(resources: XdsResources) -> list[Route]:
    return [
        route
        for config in resources.route_configurations
        for host in config.virtual_hosts
        for route in host.routes
    ]


def _markers(route: Route) -> list[str]:
    return [o.header.value for o in route.response_headers_to_add if o.header.key == MARKER_HEADER]


class RecordingClient(ExtensionClient):
    """The real client, noting which Listeners each listener-level hook was shown."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.listeners_shown: list[str] = []

    def post_http_listener_modify(
        self,
        listener: Listener,
        context: ListenerContext | None = None,
        *,
        budget: Budget | None = None,
    ) -> Listener:
        self.listeners_shown.append(listener.name)
        return super().post_http_listener_modify(listener, context, budget=budget)

    def post_translate_modify(
        self,
        clusters: Iterable[Any],
        secrets: Iterable[Any],
        listeners: Iterable[Listener],
        routes: Iterable[Any],
        context: TranslateContext | None = None,
        *,
        budget: Budget | None = None,
    ) -> TranslateModifyResult:
        listeners = list(listeners)
        self.listeners_shown += [listener.name for listener in listeners]
        return super().post_translate_modify(
            clusters, secrets, listeners, routes, context, budget=budget
        )


@pytest.fixture
def recording_client(extension_client: ExtensionClient) -> RecordingClient:
    client = RecordingClient(extension_client.settings)
    extension_client.close()
    return client


def test_the_shape_of_the_world(translated: XdsResources) -> None:
    # 2 Envoy listeners (443 with two SNI chains, 8080) + readiness, 3 RouteConfigurations, and
    # one of them with two virtual hosts of routes: the calls counted below are not trivial.
    assert len(translated.listeners) == 3
    assert len(translated.route_configurations) == 3
    http = [rc for rc in translated.route_configurations if len(rc.virtual_hosts) == 2]
    assert any(API.hostname in host.domains for rc in http for host in rc.virtual_hosts)
    assert len(_routes(translated)) >= 4


@pytest.mark.parametrize(
    "hooks",
    [
        {Hook.POST_ROUTE_MODIFY},
        {Hook.POST_VIRTUAL_HOST_MODIFY},
        {Hook.POST_HTTP_LISTENER_MODIFY},
        {Hook.POST_TRANSLATE_MODIFY},
        set(Hook),
    ],
    ids=lambda hooks: "+".join(sorted(hook.name for hook in hooks)),
)
def test_each_enabled_hook_is_called_per_route_virtual_host_listener_or_once(
    translated: XdsResources,
    recording_client: RecordingClient,
    extension_server: ExtensionServer,
    hooks: set[Hook],
) -> None:
    with recording_client:
        run = run_hooks(translated, recording_client, hooks)
    assert run.failure is None
    served = len(translated.listeners) - 1
    expected = {
        Hook.POST_ROUTE_MODIFY: len(_routes(translated)),
        Hook.POST_VIRTUAL_HOST_MODIFY: sum(
            len(rc.virtual_hosts) for rc in translated.route_configurations
        ),
        Hook.POST_HTTP_LISTENER_MODIFY: served,
        Hook.POST_TRANSLATE_MODIFY: 1,
    }
    for hook in Hook:
        assert extension_server.calls(hook) == (expected[hook] if hook in hooks else 0), hook
    # The readiness listener is never shown to the extension, and is in the result unchanged.
    assert translated.readiness_listener not in recording_client.listeners_shown
    assert run.resources.listener(translated.readiness_listener) == translated.listener(
        translated.readiness_listener
    )
    # The healthy extension marks every route once, whichever of the two hooks does it.
    marked = {Hook.POST_ROUTE_MODIFY, Hook.POST_TRANSLATE_MODIFY} & hooks
    for route in _routes(run.resources):
        assert _markers(route) == ([marker_value(1)] if marked else [])


def test_no_hooks_change_nothing(
    translated: XdsResources, extension_client: ExtensionClient, extension_server: ExtensionServer
) -> None:
    run = run_hooks(translated, extension_client, [])
    assert run.failure is None
    assert run.resources == translated
    assert all(extension_server.calls(hook) == 0 for hook in Hook)


def test_a_failed_post_translate_keeps_what_the_earlier_hooks_made(
    translated: XdsResources, extension_client: ExtensionClient, extension_server: ExtensionServer
) -> None:
    extension_server.set_fault(Fault.INTERNAL, Hook.POST_TRANSLATE_MODIFY)
    run = run_hooks(
        translated, extension_client, [Hook.POST_ROUTE_MODIFY, Hook.POST_TRANSLATE_MODIFY]
    )
    assert run.failure is not None
    assert run.failure.hook == Hook.POST_TRANSLATE_MODIFY
    assert run.failure.kind == FailureKind.ERROR
    # PostRouteModify completed: its markers are in the result, which the failure policy rewrites.
    assert all(_markers(route) == [marker_value(1)] for route in _routes(run.resources))
    assert run.resources.listeners == translated.listeners


def test_a_failed_first_stage_leaves_the_translation(
    translated: XdsResources, extension_client: ExtensionClient, extension_server: ExtensionServer
) -> None:
    extension_server.set_fault(Fault.INTERNAL, Hook.POST_ROUTE_MODIFY)
    run = run_hooks(
        translated, extension_client, [Hook.POST_ROUTE_MODIFY, Hook.POST_TRANSLATE_MODIFY]
    )
    assert run.failure is not None and run.failure.hook == Hook.POST_ROUTE_MODIFY
    assert run.resources == translated
    assert extension_server.calls(Hook.POST_TRANSLATE_MODIFY) == 0


class ReadinessReturningClient(ExtensionClient):
    """The real client, with PostTranslateModify's answer also naming the readiness listener: a
    broken extension the reference server cannot play."""

    def __init__(self, settings: ExtensionSettings, readiness: str) -> None:
        super().__init__(settings)
        self.readiness = readiness

    def post_translate_modify(
        self,
        clusters: Iterable[Any],
        secrets: Iterable[Any],
        listeners: Iterable[Listener],
        routes: Iterable[Any],
        context: TranslateContext | None = None,
        *,
        budget: Budget | None = None,
    ) -> TranslateModifyResult:
        result = super().post_translate_modify(
            clusters, secrets, listeners, routes, context, budget=budget
        )
        impostor = Listener(name=self.readiness)
        return TranslateModifyResult(
            result.clusters, result.secrets, (*result.listeners, impostor), result.routes
        )


def test_an_extension_cannot_return_the_readiness_listener(
    translated: XdsResources, extension_client: ExtensionClient
) -> None:
    readiness = translated.readiness_listener
    with ReadinessReturningClient(extension_client.settings, readiness) as client:
        run = run_hooks(translated, client, [Hook.POST_ROUTE_MODIFY, Hook.POST_TRANSLATE_MODIFY])
    assert run.failure is not None
    assert run.failure.kind == FailureKind.INVALID_OUTPUT
    assert "readiness" in run.failure.reason
    assert run.resources.listener(translated.readiness_listener) == translated.listener(
        translated.readiness_listener
    )
