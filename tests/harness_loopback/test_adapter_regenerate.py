"""The committed adapter stubs are exactly what `python -m harness.loopback.adapter.regenerate`
produces, and the extension's stubs still come out of the shared recipe unchanged."""

from __future__ import annotations

from harness.loopback.adapter import regenerate


def test_regenerating_reproduces_the_committed_files_byte_for_byte(tmp_path):
    written = regenerate.regenerate(tmp_path)
    produced = {path.name: path.read_bytes() for path in written}
    committed = {
        path.name: path.read_bytes()
        for path in regenerate.GENERATED_DIR.iterdir()
        if path.is_file() and path.suffix in {".py", ".pyi"}
    }
    assert set(produced) == {
        "__init__.py",
        "adapter_pb2.py",
        "adapter_pb2.pyi",
        "adapter_pb2_grpc.py",
    }
    assert produced.keys() == committed.keys(), "run `make protos` and commit the result"
    for name, content in produced.items():
        assert content == committed[name], f"{name} is stale: run `make protos`"


def test_generated_code_imports_itself_from_the_adapter_package():
    grpc_text = (regenerate.GENERATED_DIR / "adapter_pb2_grpc.py").read_text()
    assert "from harness.loopback.adapter.generated import adapter_pb2" in grpc_text
    text = (regenerate.GENERATED_DIR / "adapter_pb2.py").read_text()
    assert "from google.protobuf import any_pb2" in text
