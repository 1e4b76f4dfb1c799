#!/usr/bin/env bash
# Regenerate meshlib/_protos from protos/ (needs grpcio-tools). Only message
# code is generated: the gRPC stubs are written by hand with generic handlers
# so the generated module has no import-path coupling to this folder layout.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
python -m grpc_tools.protoc -I protos --python_out="$out" --pyi_out="$out" \
  protos/meshlib/registry/v1/registry.proto protos/meshlib/ca/v1/ca.proto
cp "$out/meshlib/registry/v1/registry_pb2.py" meshlib/_protos/registry_v1_pb2.py
cp "$out/meshlib/registry/v1/registry_pb2.pyi" meshlib/_protos/registry_v1_pb2.pyi
cp "$out/meshlib/ca/v1/ca_pb2.py" meshlib/_protos/ca_v1_pb2.py
cp "$out/meshlib/ca/v1/ca_pb2.pyi" meshlib/_protos/ca_v1_pb2.pyi
rm -rf "$out"
