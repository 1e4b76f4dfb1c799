#!/usr/bin/env bash
# Regenerate gen/ from protos/sessions.proto (needs grpcio-tools).
#
# The proto is compiled under the logical path gen/conference/sessions/v1/, so
# the generated *_grpc.py imports `gen.conference.sessions.v1.sessions_pb2`:
# that resolves from this folder (the scripts' own directory is on sys.path
# when they run), with no sys.path edits and no rewriting of generated code.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src/gen/conference/sessions/v1" "$work/out"
cp "$here/protos/sessions.proto" "$work/src/gen/conference/sessions/v1/sessions.proto"
python -m grpc_tools.protoc -I "$work/src" \
  --python_out="$work/out" --grpc_python_out="$work/out" \
  --mypy_out="$work/out" --mypy_grpc_out="$work/out" \
  gen/conference/sessions/v1/sessions.proto
dest="$here/gen/conference/sessions/v1"
mkdir -p "$dest"
cp "$work/out/gen/conference/sessions/v1/"sessions_pb2.py \
   "$work/out/gen/conference/sessions/v1/"sessions_pb2.pyi \
   "$work/out/gen/conference/sessions/v1/"sessions_pb2_grpc.py \
   "$work/out/gen/conference/sessions/v1/"sessions_pb2_grpc.pyi "$dest/"
for pkg in gen gen/conference gen/conference/sessions gen/conference/sessions/v1; do
  [ -f "$here/$pkg/__init__.py" ] || printf '"""Generated code: run generate.sh."""\n' > "$here/$pkg/__init__.py"
done
