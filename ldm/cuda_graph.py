"""Replay the UNet from a CUDA graph when sampling: one launch per step instead of ~1000.

    denoiser = EpsDenoiser(CUDAGraphUNet(model.unet), alphas_cumprod())

At 512 px a sampling step of the SD v1 UNet is bound by kernel launches, not by the GPU's arithmetic;
a graph captured once per input shape (the first call of each shape pays ~2 eager calls and the
capture) replays all kernels at once. Inference only: with gradients enabled, or off CUDA, the call
goes straight to the UNet. The weights are read at replay time, so in-place updates (an optimizer
step) are seen; replacing a parameter tensor needs a new CUDAGraphUNet.
"""
import torch
from torch import nn

WARMUP_CALLS = 2  # eager calls on a side stream before capturing, so cuDNN / cuBLAS choose their kernels first


class CUDAGraphUNet(nn.Module):
    def __init__(self, unet: nn.Module):
        super().__init__()
        self.unet = unet
        self._graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, list[torch.Tensor], torch.Tensor]] = {}

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cuda" or torch.is_grad_enabled():
            return self.unet(x, timesteps, context)
        timesteps = timesteps.expand(x.shape[0]) if timesteps.ndim == 0 else timesteps
        inputs = (x, timesteps, context)
        key = tuple((t.shape, t.dtype) for t in inputs) + (torch.is_autocast_enabled("cuda"),)
        if key not in self._graphs:
            self._graphs[key] = self._capture(inputs)
        graph, static_inputs, static_out = self._graphs[key]
        for static, value in zip(static_inputs, inputs):
            static.copy_(value)
        graph.replay()
        return static_out.clone()

    def _capture(self, inputs: tuple[torch.Tensor, ...]):
        static_inputs = [t.clone() for t in inputs]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(WARMUP_CALLS):
                self.unet(*static_inputs)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = self.unet(*static_inputs)
        return graph, static_inputs, static_out


class _UNetCall(nn.Module):
    """The UNet behind a module of its own, so make_graphed_callables patches this forward, not the UNet's;
    `trained` (a LoRA whose forward hooks sit on the UNet's layers) makes its parameters this module's too, so that
    the captured backward gives their gradients."""

    def __init__(self, unet: nn.Module, trained: nn.Module | None = None):
        super().__init__()
        self.unet = unet
        self.trained = trained

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return self.unet(x, timesteps, context)


def graphed_training_call(unet: nn.Module, x: torch.Tensor, timesteps: torch.Tensor,
                          context: torch.Tensor, trained: nn.Module | None = None) -> nn.Module:
    """unet(x, timesteps, context) with its forward and its backward each captured as one CUDA graph, for
    inputs shaped like these (torch.cuda.make_graphed_callables; it runs 3 warm-up steps first).

    A training step then launches two graphs instead of thousands of kernels. The parameters must keep
    their storage (in-place optimizers do); gradients come out of static buffers that each replay
    overwrites (zero_grad with set_to_none, the default, is right). Autocast must run without its weight
    cache (Lightning's does). The UNet itself is left untouched: previews keep calling it eagerly. The
    gradients are those of the parameters that require them: the UNet's, or with a frozen UNet those of
    `trained`, the module whose hooks add to its layers (a LoRA).
    """
    return torch.cuda.make_graphed_callables(_UNetCall(unet, trained), (x, timesteps, context))
