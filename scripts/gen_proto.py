"""Regenerates the Python gRPC code beside the .proto files in proto/ (package rescore_sidecar.proto).

The generated modules are checked in, so an install needs no protoc; the test
tests/unit/test_proto_current.py fails when they are stale. Run after editing a .proto:

    .venv/bin/python scripts/gen_proto.py
"""
from __future__ import annotations

import pathlib
import re
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
OUT_DIR = ROOT / "proto"
PROTOS = ["rescore/v1/rescore.proto"]


def generate(out_dir: pathlib.Path) -> list[pathlib.Path]:
    """Writes the generated modules under out_dir and returns their paths."""
    import importlib.resources

    from grpc_tools import protoc  # dev dependency

    # protoc.main does not add the well-known protos (google/protobuf/descriptor.proto, for the
    # error options) that grpc_tools ships; `python -m grpc_tools.protoc` would.
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    args = ["protoc", f"-I{PROTO_DIR}", f"-I{well_known}", f"--python_out={out_dir}", f"--pyi_out={out_dir}",
            f"--grpc_python_out={out_dir}", *PROTOS]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    written = sorted(p for p in out_dir.rglob("*") if p.suffix in (".py", ".pyi"))
    for path in written:
        # protoc writes absolute imports ("from rescore.v1 import ..."); make them
        # absolute within rescore_sidecar.proto so the package needs no sys.path tricks.
        text = re.sub(r"^from rescore\.v1 import", "from rescore_sidecar.proto.rescore.v1 import",
                      path.read_text(), flags=re.M)
        path.write_text(text)
    for pkg in {out_dir, *(p.parent for p in written)}:
        d = pkg
        while d != out_dir.parent and not (d / "__init__.py").exists():
            (d / "__init__.py").write_text("")
            d = d.parent
    return written


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp) / "pb"
        out.mkdir()
        generate(out)
        for src in sorted(out.rglob("*")):
            if src.is_file():
                dst = OUT_DIR / src.relative_to(out)
                dst.parent.mkdir(parents=True, exist_ok=True)
                dst.write_bytes(src.read_bytes())
                print(f"wrote {dst.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
