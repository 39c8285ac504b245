"""Regenerate everything derived from protos/: Python stubs (+ .pyi) and the descriptor set.

    python scripts/gen.py            # write into services/
    python scripts/gen.py --out DIR  # write into DIR (the drift test compares the two)

The descriptor set (services/fenlei/v1/fenlei.binpb, with imports and source info) is
what Envoy's gRPC-JSON transcoder and `buf lint` read.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

import grpc_tools
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
PACKAGE_DIR = Path("fenlei") / "v1"
DESCRIPTOR_SET = PACKAGE_DIR / "fenlei.binpb"
DESCRIPTOR_EXTRAS = ["google/rpc/status.proto"]


def include_paths() -> list[Path]:
    from google.api import annotations_pb2  # googleapis-common-protos ships google/api/*.proto

    googleapis_root = Path(annotations_pb2.__file__).resolve().parent.parent.parent
    well_known = Path(grpc_tools.__file__).resolve().parent / "_proto"
    return [PROTO_ROOT, googleapis_root, well_known]


def proto_files() -> list[str]:
    return sorted(str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / PACKAGE_DIR).glob("*.proto"))


def generate(out_root: Path) -> None:
    target = out_root / PACKAGE_DIR
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    includes = [f"-I{path}" for path in include_paths()]
    code = [f"--python_out={out_root}", f"--pyi_out={out_root}", f"--grpc_python_out={out_root}", f"--mypy_grpc_out={out_root}"]
    # The transcoder's convert_grpc_status needs google.rpc.Status in the descriptor set.
    descriptor_set = [f"--descriptor_set_out={out_root / DESCRIPTOR_SET}", "--include_imports", "--include_source_info", *DESCRIPTOR_EXTRAS]
    # protoc finds protoc-gen-mypy_grpc (mypy-protobuf) beside this interpreter.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    for outputs in (code, descriptor_set):
        if protoc.main(["protoc", *includes, *outputs, *proto_files()]) != 0:
            sys.exit("protoc failed")
    (target / "__init__.py").write_text('"""Generated from protos/fenlei/v1 by scripts/gen.py. Do not edit."""\n')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "services", help="output root (default: services/)")
    generate(parser.parse_args().out)


if __name__ == "__main__":
    main()
