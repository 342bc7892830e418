"""The committed protobuf modules were generated from the committed ``events.proto``.

protoc (from grpcio-tools) compiles the .proto again into a descriptor set; the message
and service definitions must equal those inside ``events_pb2``. If this fails, run
``make proto`` and commit the result.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from google.protobuf import descriptor_pb2
from grpc_tools import protoc

from dataflow_playground.core.proto import codegen, events_pb2, events_pb2_grpc


def test_committed_modules_match_the_proto(tmp_path: Path) -> None:
    proto = codegen.PROTO_DIR / "events.proto"
    out = tmp_path / "events.desc"
    well_known = str(resources.files("grpc_tools") / "_proto")
    args = ["protoc", f"-I{codegen.PACKAGE}={proto.parent}", f"-I{well_known}",
            f"--descriptor_set_out={out}", f"{codegen.PACKAGE}/{proto.name}"]
    assert protoc.main(args) == 0
    fresh = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file[0]
    committed = descriptor_pb2.FileDescriptorProto.FromString(events_pb2.DESCRIPTOR.serialized_pb)
    for message in fresh.message_type:  # protoc's Python output leaves the JSON names out
        for field in message.field:
            field.ClearField("json_name")
    assert fresh.name == committed.name == f"{codegen.PACKAGE}/events.proto"
    assert fresh.message_type == committed.message_type
    assert fresh.service == committed.service


def test_generated_imports_go_through_the_import_root() -> None:
    text = Path(events_pb2_grpc.__file__).read_text()
    assert "from dataflow_playground.core.proto import events_pb2" in text
