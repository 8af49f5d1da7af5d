"""Many parameters as views of one buffer, their gradients as views of another, for a per-tensor optimizer.

    flat = flatten_(list(unet.parameters()))    # every p is now a view of flat, p.grad a view of flat.grad
    optimizer = bitsandbytes.optim.AdamW8bit([flat], lr=1e-6)
    ...backward...; optimizer.step(); optimizer.zero_grad(set_to_none=False)   # zero, keep the views

bitsandbytes' AdamW8bit steps each parameter tensor from Python (~0.3 ms each on an H100); the SD v1
UNet has 686 of them, so its step costs more than the UNet's forward and backward together. On one flat
tensor it is one kernel. Backward accumulates into the existing gradient views in place, so nothing is
copied; the module, its state_dict and the model files see ordinary parameters.
"""
import torch
from torch import nn


def flatten_(params: list[nn.Parameter]) -> nn.Parameter:
    """Move `params` (one dtype and device) into one new flat Parameter with a zeroed flat gradient."""
    first = params[0]
    if any(p.dtype != first.dtype or p.device != first.device for p in params):
        raise ValueError("flatten_ needs parameters of one dtype and device; flatten each group separately.")
    total = sum(p.numel() for p in params)
    flat = nn.Parameter(torch.empty(total, dtype=first.dtype, device=first.device))
    flat.grad = torch.zeros_like(flat)
    offset = 0
    with torch.no_grad():
        for p in params:
            n = p.numel()
            flat[offset:offset + n].copy_(p.reshape(-1))
            p.data = flat.data[offset:offset + n].view_as(p)
            p.grad = flat.grad[offset:offset + n].view_as(p)
            offset += n
    return flat
