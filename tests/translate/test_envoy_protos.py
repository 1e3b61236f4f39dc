"""The one walk over a Listener's HTTP connection managers, and the package's layout rules."""

from __future__ import annotations

import ast
from pathlib import Path

from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from sut.translate.envoy_protos import (
    connection_manager_filter,
    connection_managers,
    packed,
    with_connection_managers,
)

PACKAGE = Path(__file__).resolve().parents[2] / "sut" / "translate"


def _listener() -> listener_pb2.Listener:
    """Two HCMs (a filter chain and the default one) and a TCP proxy that is no HCM."""
    listener = listener_pb2.Listener(name="l")
    listener.filter_chains.append(
        listener_components_pb2.FilterChain(
            name="sni",
            filters=[
                listener_components_pb2.Filter(
                    name="tcp", typed_config=packed(tcp_proxy_pb2.TcpProxy(stat_prefix="tcp"))
                ),
                connection_manager_filter(hcm_pb2.HttpConnectionManager(stat_prefix="sni")),
            ],
        )
    )
    listener.default_filter_chain.filters.append(
        connection_manager_filter(hcm_pb2.HttpConnectionManager(stat_prefix="default"))
    )
    return listener


def test_every_chain_is_walked_the_default_one_included() -> None:
    prefixes = [manager.stat_prefix for _, manager in connection_managers(_listener())]
    assert prefixes == ["sni", "default"]


def test_the_type_name_decides_not_the_url_prefix() -> None:
    listener = _listener()
    listener.default_filter_chain.filters[0].typed_config.type_url = (
        "example.com/" + hcm_pb2.HttpConnectionManager.DESCRIPTOR.full_name
    )
    assert len(list(connection_managers(listener))) == 2


def test_with_connection_managers_changes_a_copy() -> None:
    original = _listener()

    def rename(manager: hcm_pb2.HttpConnectionManager) -> None:
        manager.stat_prefix += "-changed"

    changed = with_connection_managers(original, rename)
    assert [m.stat_prefix for _, m in connection_managers(changed)] == [
        "sni-changed",
        "default-changed",
    ]
    assert [m.stat_prefix for _, m in connection_managers(original)] == ["sni", "default"]
    assert changed.filter_chains[0].filters[0] == original.filter_chains[0].filters[0]


def _imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
        elif isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
    return modules


def test_stage_two_reads_only_the_ir_and_shared_leaves() -> None:
    allowed = {
        "sut.translate.ir",
        "sut.translate.options",
        "sut.translate.regex",
        "sut.translate.envoy_protos",
        "sut.translate.xds_routes",
    }
    for name in ("xds.py", "xds_routes.py"):
        ours = {m for m in _imported_modules(PACKAGE / name) if m.startswith("sut")}
        assert ours <= allowed, f"{name} imports {sorted(ours - allowed)}"


def test_no_module_is_over_500_lines() -> None:
    sizes = {path.name: len(path.read_text().splitlines()) for path in PACKAGE.glob("*.py")}
    assert {name: size for name, size in sizes.items() if size > 500} == {}
