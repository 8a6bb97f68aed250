"""precision fp8 (torch on CUDA, opt-in): the model in bf16 with its linear layers in float8 (e4m3).

Weights are quantised once, per output row (one scale per row); activations per token at run time;
the product is torch's scaled matmul (`torch._scaled_mm`, row-wise scales, bf16 out, bias fused).
Only GPUs that compute float8 take it (compute capability 8.9+: Ada, Hopper, Blackwell); anywhere
else the model refuses to load with a message saying why, so `serve` fails at start. Kept only with
rank agreement to bf16 (bench/gpu.py reports the per-query Spearman median on its requests).
"""
from __future__ import annotations

import torch

FP8 = getattr(torch, "float8_e4m3fn", None)
FP8_MAX = float(torch.finfo(FP8).max) if FP8 is not None else 448.0
MIN_CAPABILITY = (8, 9)


def unsupported_reason(device: torch.device) -> str | None:
    """Why `device` cannot run precision fp8, or None when it can."""
    if FP8 is None or not hasattr(torch, "_scaled_mm"):
        return f"this torch ({torch.__version__}) has no float8 scaled matmul"
    if device.type != "cuda":
        return (f"precision fp8 needs a CUDA GPU that computes float8 (compute capability "
                f"{MIN_CAPABILITY[0]}.{MIN_CAPABILITY[1]}+: Ada, Hopper, Blackwell); this model's device is "
                f"{device}: use bf16 or fp32 (or backend=openvino precision=int8 on CPU)")
    capability = torch.cuda.get_device_capability(device)
    if capability < MIN_CAPABILITY:
        return (f"precision fp8 needs compute capability {MIN_CAPABILITY[0]}.{MIN_CAPABILITY[1]}+; "
                f"{torch.cuda.get_device_name(device)} is {capability[0]}.{capability[1]}: use bf16")
    return None


def _row_scales(x: torch.Tensor) -> torch.Tensor:
    """One float32 scale per row, mapping the row's largest magnitude to float8's largest value."""
    return (x.abs().amax(dim=-1, keepdim=True).float() / FP8_MAX).clamp(min=1e-12)


class Float8Linear(torch.nn.Module):
    """A linear layer computed as float8 x float8 with per-row scales; same inputs and outputs as the
    bf16 layer it replaces."""

    def __init__(self, linear: torch.nn.Linear) -> None:
        super().__init__()
        weight = linear.weight.detach().float()
        scales = _row_scales(weight)  # (out, 1)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("weight", (weight / scales).to(FP8))
        self.register_buffer("weight_scale", scales.t().contiguous())  # (1, out), as _scaled_mm wants
        bias = linear.bias.detach().to(torch.bfloat16) if linear.bias is not None else None
        self.register_buffer("bias", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        rows = x.reshape(-1, self.in_features)
        scales = _row_scales(rows)  # (tokens, 1)
        quantised = (rows.float() / scales).to(FP8)
        out = torch._scaled_mm(quantised, self.weight.t(), scale_a=scales, scale_b=self.weight_scale,
                               bias=self.bias, out_dtype=torch.bfloat16)
        return out.reshape(*shape[:-1], self.out_features)


def convert_linears(module: torch.nn.Module) -> int:
    """Replaces, in place, every linear layer whose sizes float8 matmuls take (multiples of 16) with a
    Float8Linear; the rest (a 1-logit classifier head) stay bf16. Returns how many were replaced."""
    replaced = 0
    for name, child in list(module.named_children()):
        if isinstance(child, torch.nn.Linear) and child.in_features % 16 == 0 and child.out_features % 16 == 0:
            setattr(module, name, Float8Linear(child))
            replaced += 1
        else:
            replaced += convert_linears(child)
    return replaced
