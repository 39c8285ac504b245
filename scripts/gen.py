"""Regenerate everything derived from protos/ and fenlei.services: Python stubs (+ .pyi), the descriptor set, the OpenAPI document and the Kubernetes manifests.

    python scripts/gen.py            # write into services/ (and the generated files of mesh/k8s)
    python scripts/gen.py --out DIR  # write into DIR, the manifests under DIR/k8s (the drift test compares)
    python scripts/gen.py --release  # at a release: the contract's buf image as protos/released/fenlei-<version>.binpb

The descriptor set (services/fenlei/v1/fenlei.binpb, with imports and source info) is
what Envoy's gRPC-JSON transcoder and `buf lint` read. The OpenAPI (Swagger 2.0) document
(services/fenlei/v1/fenlei.swagger.json, served by the gateway at GET /openapi.json) comes
from protoc-gen-swagger in Debian's golang-grpc-gateway (1.6), installed by
scripts/debian-packages.sh, and is then fitted to what the Envoy gateway really does.

A released image is the contract as a release shipped it; the test suite runs `buf breaking`
against the newest one (see protos/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import grpc_tools
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2
from google.protobuf.compiler import plugin_pb2
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
PACKAGE_DIR = Path("fenlei") / "v1"
DESCRIPTOR_SET = PACKAGE_DIR / "fenlei.binpb"
DESCRIPTOR_EXTRAS = ["google/rpc/status.proto"]
SWAGGER = PACKAGE_DIR / "fenlei.swagger.json"
RELEASED = PROTO_ROOT / "released"
KUBERNETES = ROOT / "mesh" / "k8s"
SWAGGER_PLUGIN = "protoc-gen-swagger"
# One merged file; lowerCamelCase property names, as the transcoder prints (and accepts) them.
SWAGGER_PARAMETER = "allow_merge=true,merge_file_name=fenlei,json_names_for_fields=true"


def include_paths(proto_root: Path = PROTO_ROOT) -> list[Path]:
    # googleapis-common-protos ships google/api/*.proto beside its modules.
    googleapis_root = Path(annotations_pb2.__file__).resolve().parent.parent.parent
    well_known = Path(grpc_tools.__file__).resolve().parent / "_proto"
    return [proto_root, googleapis_root, well_known]


def proto_files(proto_root: Path = PROTO_ROOT) -> list[str]:
    return sorted(str(p.relative_to(proto_root)) for p in (proto_root / PACKAGE_DIR).glob("*.proto"))


def swagger_plugin() -> str:
    plugin = shutil.which(SWAGGER_PLUGIN)
    if plugin is None:
        sys.exit(f"{SWAGGER_PLUGIN} not found: it comes from Debian's golang-grpc-gateway; run `bash scripts/debian-packages.sh` (as root)")
    return plugin


def generate(out_root: Path) -> None:
    plugin = swagger_plugin()  # before anything is deleted
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
    descriptors = descriptor_pb2.FileDescriptorSet.FromString((out_root / DESCRIPTOR_SET).read_bytes())
    document = fit_to_gateway(run_swagger_plugin(plugin, descriptors), http_methods(descriptors))
    (out_root / SWAGGER).write_text(json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    (target / "__init__.py").write_text('"""Generated from protos/fenlei/v1 by scripts/gen.py. Do not edit."""\n')


def run_swagger_plugin(plugin: str, descriptors: descriptor_pb2.FileDescriptorSet) -> dict[str, Any]:
    """Runs protoc-gen-swagger the way protoc would, on the descriptor set just written.

    Not through protoc: protoc refuses plugins that predate proto3 `optional` (1.6 does not
    declare FEATURE_PROTO3_OPTIONAL) for files that use it, and ours do. The plugin itself
    copes: it sees an optional field as a plain field in a synthetic oneof, which the
    document shows as an ordinary property, as the transcoder treats it.
    """
    request = plugin_pb2.CodeGeneratorRequest(file_to_generate=proto_files(), parameter=SWAGGER_PARAMETER, proto_file=descriptors.file)
    result = subprocess.run([plugin], input=request.SerializeToString(), capture_output=True, check=False)
    if result.returncode != 0:
        sys.exit(f"{plugin} failed: {result.stderr.decode(errors='replace')}")
    response = plugin_pb2.CodeGeneratorResponse.FromString(result.stdout)
    if response.error or len(response.file) != 1:
        sys.exit(f"{plugin} failed: {response.error or [f.name for f in response.file]}")
    document: dict[str, Any] = json.loads(response.file[0].content)
    return document


def http_methods(descriptors: descriptor_pb2.FileDescriptorSet) -> dict[tuple[str, str], tuple[str, descriptor_pb2.MethodDescriptorProto]]:
    """(verb, path) of every google.api.http binding of our protos → (service, method)."""
    methods = {}
    wanted = set(proto_files())
    for file in descriptors.file:
        if file.name not in wanted:
            continue
        for service in file.service:
            for method in service.method:
                rule = method.options.Extensions[annotations_pb2.http]
                for binding in (rule, *rule.additional_bindings):
                    verb = binding.WhichOneof("pattern")
                    if verb is not None:
                        path = binding.custom.path if verb == "custom" else getattr(binding, verb)
                        methods[(binding.custom.kind.lower() if verb == "custom" else verb, path)] = (service.name, method)
    return methods


STATUS_DEFINITIONS = {
    "rpcStatus": {
        "type": "object",
        "description": "google.rpc.Status: every error, whatever its HTTP status.",
        "properties": {
            "code": {
                "type": "integer",
                "format": "int32",
                "description": "The google.rpc.Code (3 INVALID_ARGUMENT, 5 NOT_FOUND, 16 UNAUTHENTICATED, ...).",
            },
            "message": {"type": "string", "description": "What went wrong, for a developer."},
            "details": {"type": "array", "items": {"$ref": "#/definitions/protobufAny"}},
        },
    },
    "protobufAny": {
        "type": "object",
        "description": "google.protobuf.Any in JSON: `@type` names the message, its fields sit beside it.",
        "properties": {"@type": {"type": "string"}},
        "additionalProperties": {},
    },
}
ERROR_RESPONSE = {
    "description": (
        "An error as a google.rpc.Status, for every non-2xx answer: from a service, and from the gateway itself "
        "(400 a bad request, 401 no or a bad token, 403 a role too low for the method or a token for another audience, 404 no such path, "
        "413 a body too large, 429 the rate limit, 500, 503 a service down, 504 a timeout)."
    ),
    "schema": {"$ref": "#/definitions/rpcStatus"},
}


def fit_to_gateway(
    document: dict[str, Any], methods: dict[tuple[str, str], tuple[str, descriptor_pb2.MethodDescriptorProto]]
) -> dict[str, Any]:
    """Makes the plugin's document say what our gateway (Envoy's gRPC-JSON transcoder) does.

    protoc-gen-swagger 1.6 describes grpc-gateway's Go proxy, and only partly:
    - info: the first proto's file name and "version not set"; schemes http and https. We
      give a title and version, and no host or schemes: a client uses those it fetched
      /openapi.json with.
    - errors: it emits only the 200 response and no error schema. Every non-2xx answer is a
      JSON google.rpc.Status (convert_grpc_status for the services' errors, local reply
      mappers for Envoy's own), so each operation gets a `default` response with it.
    - auth: it knows none. The gateway takes a JWT as `Authorization: Bearer <token>`.
    - streaming: it only appends "(streaming inputs)" / "(streaming responses)" to the
      descriptions (no x-stream-definitions; later versions added those). The transcoder
      reads a client stream as a JSON array of messages, and, with stream_newline_delimited,
      writes a server stream as one JSON object per line: the body becomes an array; the
      200 keeps one message's schema (one line's) and says so.
    - operationId: the bare method name, so Classifier.Fit and Features.Fit collide, which
      Swagger 2.0 forbids: it becomes Service_Method.
    """
    document["info"] = {
        "title": "fenlei",
        "version": "v1",
        "description": (
            "Chinese text classification. The REST face of the fenlei gRPC services (fenlei.v1), "
            "transcoded by the gateway: JSON names are lowerCamelCase, 64-bit integers are strings, enums are names. "
            "Responses always carry scalar and repeated fields, zero values included; unset message fields "
            "and unset optional fields are left out. Generated from the protos by scripts/gen.py."
        ),
    }
    document.pop("host", None)
    document.pop("schemes", None)
    document["consumes"] = document["produces"] = ["application/json"]
    document["securityDefinitions"] = {
        "bearer": {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "A JWT from the fenlei token authority, as `Bearer <token>`.",
        }
    }
    document["security"] = [{"bearer": []}]
    document.setdefault("definitions", {}).update(STATUS_DEFINITIONS)
    for path, operations in document["paths"].items():
        for verb, operation in operations.items():
            if (verb, path) not in methods:
                raise SystemExit(f"{verb.upper()} {path} in the swagger document is no google.api.http binding")
            service, method = methods[(verb, path)]
            operation["operationId"] = f"{service}_{method.name}"
            operation["responses"]["default"] = ERROR_RESPONSE
            success = operation["responses"]["200"]
            if method.server_streaming:
                success["description"] = "A stream of responses, one JSON object per line (newline-delimited JSON)."
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "body" and method.client_streaming:
                    parameter["schema"] = {"type": "array", "items": parameter["schema"]}
                    parameter["description"] = "The request stream, as a JSON array of messages."
    return document


def buf() -> str:
    """buf from the buf-bin wheel, beside this interpreter."""
    binary = shutil.which("buf", path=str(Path(sys.executable).parent))
    if binary is None:
        sys.exit("buf not found beside this interpreter: it comes from the buf-bin wheel (`bash scripts/setup.sh dev`)")
    return binary


def build_image(proto_root: Path, output: Path) -> None:
    """The contract under proto_root as a buf image, for `buf breaking`. protoc resolves the
    imports (google/api comes from googleapis-common-protos, not from a buf dependency), so
    `buf build` converts its descriptor set, with fenlei/v1 as the image's files and the rest
    as imports."""
    with tempfile.TemporaryDirectory() as scratch:
        descriptors = Path(scratch) / "descriptors.binpb"
        arguments = [f"-I{path}" for path in include_paths(proto_root)]
        arguments += [f"--descriptor_set_out={descriptors}", "--include_imports", "--include_source_info", *proto_files(proto_root)]
        if protoc.main(["protoc", *arguments]) != 0:
            sys.exit("protoc failed")
        subprocess.run([buf(), "build", str(descriptors), "--path", str(PACKAGE_DIR), "--output", str(output)], check=True)


def project_version() -> str:
    return str(tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"])


def release() -> None:
    image = RELEASED / f"fenlei-{project_version()}.binpb"
    if image.exists():
        sys.exit(f"{image.relative_to(ROOT)} exists: a release's contract is never rebuilt; set the new version in pyproject.toml first")
    RELEASED.mkdir(exist_ok=True)
    build_image(PROTO_ROOT, image)
    print(f"wrote {image.relative_to(ROOT)}")


def write_kubernetes(target: Path) -> None:
    """In a fresh interpreter, so that it imports the stubs just written."""
    subprocess.run([sys.executable, "-m", "fenlei.kubernetes", str(target)], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="output root (default: services/, and mesh/k8s for the manifests)")
    parser.add_argument("--release", action="store_true", help="write the released image of the contract for the version in pyproject.toml")
    arguments = parser.parse_args()
    if arguments.release:
        release()
        return
    out = arguments.out
    generate(out or ROOT / "services")
    write_kubernetes(out / "k8s" if out else KUBERNETES)


if __name__ == "__main__":
    main()
