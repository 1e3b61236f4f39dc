"""The committed stubs are exactly what `python -m sut.extension.regenerate` (and the adapter's
`python -m harness.loopback.adapter.regenerate`, on the same recipe) produce."""

from __future__ import annotations

import pytest

from harness.loopback.adapter import regenerate as adapter_regenerate
from sut.extension import regenerate


@pytest.mark.parametrize(
    ("generator", "stem"),
    [(regenerate, "extension"), (adapter_regenerate, "adapter")],
    ids=["extension", "adapter"],
)
def test_regenerating_reproduces_the_committed_files_byte_for_byte(tmp_path, generator, stem):
    written = generator.regenerate(tmp_path)
    produced = {path.name: path.read_bytes() for path in written}
    committed = {
        path.name: path.read_bytes()
        for path in generator.GENERATED_DIR.iterdir()
        if path.is_file() and path.suffix in {".py", ".pyi"}
    }
    assert set(produced) == {
        "__init__.py",
        f"{stem}_pb2.py",
        f"{stem}_pb2.pyi",
        f"{stem}_pb2_grpc.py",
    }
    assert produced.keys() == committed.keys(), "run `make protos` and commit the result"
    for name, content in produced.items():
        assert content == committed[name], f"{name} is stale: run `make protos`"


def test_generated_code_imports_envoy_types_as_xds_protos_lays_them_out():
    text = (regenerate.GENERATED_DIR / "extension_pb2.py").read_text()
    assert "from envoy.config.route.v3 import route_components_pb2" in text
    assert "from envoy.extensions.transport_sockets.tls.v3 import secret_pb2" in text
    grpc_text = (regenerate.GENERATED_DIR / "extension_pb2_grpc.py").read_text()
    assert "from sut.extension.generated import extension_pb2" in grpc_text


def test_descriptor_set_holds_every_dependency_before_its_dependents():
    modules = regenerate.imported_modules(regenerate.PROTO_FILE.read_text())
    assert "envoy.config.route.v3.route_components_pb2" in modules
    files = regenerate.descriptor_set(modules).file
    names = [file.name for file in files]
    assert len(names) == len(set(names))
    for expected in (
        "google/protobuf/any.proto",
        "google/protobuf/descriptor.proto",
        "validate/validate.proto",
        "udpa/annotations/status.proto",
        "xds/annotations/v3/status.proto",
        "envoy/config/route/v3/route_components.proto",
        "envoy/extensions/transport_sockets/tls/v3/secret.proto",
    ):
        assert expected in names
    position = {name: index for index, name in enumerate(names)}
    for file in files:
        for dependency in file.dependency:
            assert position[dependency] < position[file.name], (file.name, dependency)


def test_imported_modules_reads_import_lines():
    text = 'syntax = "proto3";\nimport "a/b-c.proto";\n  import public "d/e.proto";\n'
    assert regenerate.imported_modules(text) == ("a.b_c_pb2", "d.e_pb2")


def test_the_adapter_stubs_import_themselves_from_the_adapter_package():
    grpc_text = (adapter_regenerate.GENERATED_DIR / "adapter_pb2_grpc.py").read_text()
    assert "from harness.loopback.adapter.generated import adapter_pb2" in grpc_text
    text = (adapter_regenerate.GENERATED_DIR / "adapter_pb2.py").read_text()
    assert "from google.protobuf import any_pb2" in text
