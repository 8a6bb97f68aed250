"""torch runtime: the Hugging Face model in eager mode (CPU: fp32/bf16; CUDA: fp32/bf16/fp16, and fp8
on GPUs that compute it: backends/fp8.py). On CUDA the queue runs it through `TorchStages`
(backends/torch_stages.py: pinned buffers, side-stream copies, optional shape buckets + CUDA graphs).

Also builds the graph the other runtimes export (`output_module`), so every runtime runs
the same computation: logits for cross-encoders, mean-pooled L2-normalised embeddings
for bi-encoders.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from rescore_sidecar.sidecar.backends.base import CROSS_ENCODER, Engine

TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16,
                "fp8": torch.bfloat16}  # fp8: a bf16 model whose linear layers compute in float8


def _model_mask(model: torch.nn.Module, attention_mask: torch.Tensor, dense: bool) -> torch.Tensor:
    """The mask the model is given. `dense` (set by TorchStages on CUDA, sdpa attention only): the
    4D boolean mask sdpa takes, which transformers passes through as is; from the 2D mask it first
    asks `mask.all()` to skip masking, a device-to-host sync that made each launch wait for the
    previous batch to finish."""
    if not dense:
        return attention_mask
    width = attention_mask.shape[1]
    return attention_mask.bool()[:, None, None, :].expand(-1, 1, width, width)


class _Logits(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.dense_mask = False

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        kwargs = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        mask = _model_mask(self.model, attention_mask, self.dense_mask)
        return self.model(input_ids=input_ids, attention_mask=mask, **kwargs).logits


class _MeanPooled(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.dense_mask = False

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        kwargs = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        mask = _model_mask(self.model, attention_mask, self.dense_mask)
        hidden = self.model(input_ids=input_ids, attention_mask=mask, **kwargs).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled.float(), p=2, dim=1)


def output_module(kind: str, source: str, hub_kwargs: Mapping[str, Any],
                  dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """The checkpoint wrapped so that its output is the sidecar's rows, in eval mode on CPU."""
    from transformers import AutoModel, AutoModelForSequenceClassification

    model_cls = AutoModelForSequenceClassification if kind == CROSS_ENCODER else AutoModel
    model = model_cls.from_pretrained(source, dtype=dtype, **hub_kwargs)
    wrapper = _Logits(model) if kind == CROSS_ENCODER else _MeanPooled(model)
    return wrapper.eval()


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    return device


def load_engine(kind: str, source: str, hub_kwargs: Mapping[str, Any], *, device: torch.device,
                precision: str) -> Engine:
    if precision not in TORCH_DTYPES:
        raise ValueError(f"the torch backend runs fp32, bf16, fp16 or fp8, not {precision}"
                         " (int8: use backend=openvino)")
    if device.type == "cpu" and precision == "fp16":
        raise ValueError("fp16 is not supported on CPU; use fp32 or bf16")
    if precision == "fp8":
        from rescore_sidecar.sidecar.backends import fp8

        reason = fp8.unsupported_reason(device)  # before loading weights: fail fast and say why
        if reason:
            raise ValueError(reason)
    module = output_module(kind, source, hub_kwargs, TORCH_DTYPES[precision])
    if precision == "fp8":
        fp8.convert_linears(module)
    module = module.to(device)

    def run(inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        tensors = {key: torch.from_numpy(value).to(device, non_blocking=True) for key, value in inputs.items()}
        with torch.inference_mode():
            return module(**tensors).float().cpu().numpy()

    run.module = module  # for tests and tools that want the torch module itself
    return run


def cuda_graphs_wanted(setting: str, module: torch.nn.Module, device: torch.device) -> bool:
    """cuda_graphs auto: on for small models on CUDA (a MiniLM-size pass is launch-bound), never on CPU."""
    if setting == "off":
        return False
    if device.type != "cuda":
        if setting == "on":
            raise ValueError(f"cuda_graphs=on needs a CUDA device, not {device}")
        return False
    from rescore_sidecar.sidecar.backends.torch_stages import GRAPH_MAX_PARAMETERS

    return setting == "on" or sum(p.numel() for p in module.parameters()) <= GRAPH_MAX_PARAMETERS


def cuda_stages(engine: Engine, device: torch.device, *, pad_id: int, uses_type_ids: bool, max_length: int,
                cuda_graphs: str = "auto"):
    """The pipeline stages of a torch engine: TorchStages on CUDA (graphs per `cuda_graphs`), None on CPU
    (the eager engine as one call: the CPU path is unchanged)."""
    graphs = cuda_graphs_wanted(cuda_graphs, engine.module, device)
    if device.type != "cuda":
        return None
    from rescore_sidecar.sidecar.backends.torch_stages import ShapePolicy, TorchStages

    shapes = ShapePolicy.bucketed(max_length) if graphs else ShapePolicy()
    enable_dense_mask(engine.module)
    return TorchStages(engine.module, device, pad_id=pad_id, uses_type_ids=uses_type_ids, shapes=shapes,
                       graphs=graphs)


def enable_dense_mask(module: torch.nn.Module) -> bool:
    """Gives the model 4D boolean masks (no host sync per launch) when it attends with sdpa."""
    attention = getattr(getattr(module.model, "config", None), "_attn_implementation", None)
    module.dense_mask = attention == "sdpa"
    return module.dense_mask
