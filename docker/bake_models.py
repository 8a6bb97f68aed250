"""Downloads models into the image at build time, for clusters that cannot reach a model hub.

    python bake_models.py "[NAME=]SOURCE[@REVISION],..." /opt/rescore/models [LOCAL_ROOT]

Takes the same comma-separated `[NAME=]SOURCE` list as RESCORE_MODELS (plus an optional
`@REVISION`). SOURCE is a hub id (snapshotted from the hub) or `./DIR`, a model folder under
LOCAL_ROOT (the build context's docker/models/, bind-mounted by the Dockerfile), copied as is.
Each lands in DEST/<name>; DEST/models.env holds the RESCORE_MODELS value that points at the
copies, which the image's entrypoint serves when nothing else names models at run time. A token, if needed, comes from HF_TOKEN or the build
secret file /run/secrets/hf_token (never stored in a layer).
"""
from __future__ import annotations

import os
import pathlib
import re
import shutil
import sys
from dataclasses import dataclass
from typing import Sequence

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# Weights in these formats are all the sidecar loads; skipping the rest keeps the layer small.
_SKIP_PATTERNS = ["*.onnx", "onnx/*", "*.h5", "*.msgpack", "*.ot", "openvino/*", "tf_model*", "flax_model*", "rust_model*"]


@dataclass(frozen=True)
class BakeSpec:
    name: str
    repo_id: str
    revision: str | None = None

    @property
    def local(self) -> bool:
        """A folder of the build context (./DIR) rather than a hub id."""
        return self.repo_id.startswith("./")


def parse_specs(text: str) -> list[BakeSpec]:
    """Parses "[NAME=]HUB_ID[@REVISION],..."; raises ValueError with the offending item."""
    specs: list[BakeSpec] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, _, source = item.rpartition("=")
        repo_id, _, revision = source.partition("@")
        if repo_id.startswith("./"):
            folder = repo_id[2:].rstrip("/")
            if not _NAME.match(folder) or revision:
                raise ValueError(f"{item!r}: a local model is ./DIR, one folder under docker/models/, no @revision")
        elif not repo_id or repo_id.startswith(("/", ".")) or repo_id.count("/") > 1:
            raise ValueError(f"{item!r}: expected a hub id like org/model or ./DIR, got {repo_id!r}")
        name = name or repo_id.rsplit("/", 1)[-1]
        if not _NAME.match(name):
            raise ValueError(f"{item!r}: model name {name!r} must match {_NAME.pattern}")
        specs.append(BakeSpec(name=name, repo_id=repo_id, revision=revision or None))
    if not specs:
        raise ValueError("no model given")
    if len({s.name for s in specs}) != len(specs):
        raise ValueError(f"duplicate model names in {text!r}")
    return specs


def models_env(specs: Sequence[BakeSpec], dest: pathlib.Path) -> str:
    """The RESCORE_MODELS value serving the baked copies."""
    return ",".join(f"{s.name}={dest / s.name}" for s in specs)


def _token() -> str | None:
    secret = pathlib.Path("/run/secrets/hf_token")
    if secret.is_file():
        return secret.read_text().strip() or None
    return os.environ.get("HF_TOKEN") or None


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    try:
        specs = parse_specs(args[0])
    except ValueError as exc:
        print(f"bake_models: {exc}", file=sys.stderr)
        return 2
    dest = pathlib.Path(args[1])
    local_root = pathlib.Path(args[2]) if len(args) == 3 else None
    for spec in specs:
        if spec.local:
            source = (local_root / spec.repo_id) if local_root else None
            if source is None or not (source / "config.json").is_file():
                print(f"bake_models: {spec.repo_id}: no model folder (with config.json) under "
                      f"{local_root or 'LOCAL_ROOT'}; put it in docker/models/", file=sys.stderr)
                return 2
            print(f"bake_models: {source} -> {dest / spec.name}", file=sys.stderr)
            shutil.copytree(source, dest / spec.name)
            continue
        from huggingface_hub import snapshot_download  # installed with transformers

        print(f"bake_models: {spec.repo_id}@{spec.revision or 'main'} -> {dest / spec.name}", file=sys.stderr)
        snapshot_download(repo_id=spec.repo_id, revision=spec.revision, local_dir=dest / spec.name,
                          token=_token(), ignore_patterns=_SKIP_PATTERNS)
    (dest / "models.env").write_text(models_env(specs, dest) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
