"""Generates the Python stubs of the Leadscore contract from ../../proto with grpcio-tools.

Usage: python generate.py [OUT_DIR]   (default: ./generated, which git ignores)
"""

import sys
from pathlib import Path

import grpc_tools
from grpc_tools import protoc

here = Path(__file__).resolve().parent
proto = here.parent.parent / "proto"
out = Path(sys.argv[1]) if len(sys.argv) > 1 else here / "generated"
out.mkdir(parents=True, exist_ok=True)
well_known = Path(grpc_tools.__file__).parent / "_proto"
files = sorted(str(p.relative_to(proto)) for p in proto.rglob("*.proto"))
status = protoc.main(
    ["protoc", f"-I{proto}", f"-I{well_known}", f"--python_out={out}", f"--grpc_python_out={out}", *files]
)
if status != 0:
    sys.exit(f"protoc failed ({status})")
print(f"stubs for {len(files)} files in {out}")
