"""precision fp8: refused with a clear start-time error where float8 cannot be computed (always on CPU);
the float8 linear layer's arithmetic checked on CPU, where torch's scaled matmul runs (slowly)."""
import pytest
import torch

from rescore_sidecar.sidecar.backends import load_backend
from rescore_sidecar.sidecar.backends.fp8 import Float8Linear, convert_linears, unsupported_reason
from rescore_sidecar.sidecar.config import ModelSpec, SidecarConfig


def test_fp8_on_cpu_is_refused_at_start_saying_why(tiny_cross_encoder):
    with pytest.raises(ValueError, match=r"precision=fp8.*needs a CUDA GPU that computes float8.*device is cpu"):
        load_backend(ModelSpec(source=str(tiny_cross_encoder), backend="torch", precision="fp8"), device="cpu")
    with pytest.raises(ValueError, match="openvino backend runs fp32, bf16 or int8, not fp8"):
        load_backend(ModelSpec(source=str(tiny_cross_encoder), backend="openvino", precision="fp8"), device="cpu")
    assert SidecarConfig(models=f"{tiny_cross_encoder},precision=fp8").models[0].precision == "fp8"


def test_fp8_support_is_decided_by_the_device():
    assert "CUDA" in unsupported_reason(torch.device("cpu"))


def test_float8_linear_is_close_to_the_bf16_layer():
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 32).to(torch.bfloat16)
    x = torch.randn(3, 5, 64, dtype=torch.bfloat16)
    expected = linear(x).float()
    got = Float8Linear(linear)(x)
    assert got.shape == expected.shape and got.dtype == torch.bfloat16
    error = (got.float() - expected).norm() / expected.norm()
    assert error < 0.08, error  # e4m3 keeps ~3 bits of mantissa per value


def test_convert_linears_keeps_layers_float8_cannot_take():
    model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.GELU(),
                                torch.nn.Sequential(torch.nn.Linear(64, 32)), torch.nn.Linear(32, 1))
    assert convert_linears(model) == 2
    assert isinstance(model[0], Float8Linear) and isinstance(model[2][0], Float8Linear)
    assert isinstance(model[3], torch.nn.Linear)  # a 1-logit head: not a multiple of 16
