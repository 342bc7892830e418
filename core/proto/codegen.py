"""Regenerate the protobuf/gRPC modules beside ``events.proto`` with grpcio-tools.

The generated ``events_pb2*.py`` files are committed, so ``pip install .`` needs no
build step; run ``make proto`` (``python -m dataflow_playground.core.proto.codegen``) after
editing ``events.proto``. ``tests/core/test_proto.py`` fails when they disagree.
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

import dataflow_playground

PACKAGE = "dataflow_playground/core/proto"
# The folder holding the import root: src/ in a checkout, site-packages once installed.
ROOT = Path(dataflow_playground.__file__).parent.parent
PROTO_DIR = ROOT / PACKAGE


def protoc_args(out: Path, proto: Path) -> list[str]:
    """The protoc command line; the proto folder is mapped onto the package path so the
    generated imports are absolute (``from dataflow_playground.core.proto import events_pb2``)."""
    well_known = str(resources.files("grpc_tools") / "_proto")
    return ["protoc", f"-I{PACKAGE}={proto.parent}", f"-I{well_known}", f"--python_out={out}",
            f"--pyi_out={out}", f"--grpc_python_out={out}", f"{PACKAGE}/{proto.name}"]


def generate(out: Path = ROOT) -> list[Path]:
    from grpc_tools import protoc

    for proto in sorted(PROTO_DIR.glob("*.proto")):
        if protoc.main(protoc_args(out, proto)) != 0:
            raise SystemExit(f"protoc failed for {proto}")
    return sorted((out / PACKAGE).glob("*_pb2*.py*"))


if __name__ == "__main__":
    for path in generate():
        print(f"generated {path.relative_to(ROOT)}")
    sys.exit(0)
