"""AdamW for bf16 weights that keeps every update: the step is computed in fp32, then rounded into bf16
stochastically (up or down, with the probabilities that make the rounding exact on average).

    optimizer = StochasticRoundingAdamW(unet.parameters(), lr=1e-6, optim_bits=8, seed=42)

bf16 keeps 8 significant bits: a weight of 0.02 moves in steps of 1.2e-4, while AdamW at a DreamBooth
learning rate (1e-6) moves it by about 1e-6 a step. Rounded to nearest, every such update is lost and
the model never changes (measured: 0 of the SD v1 UNet's weights moved in 100 steps). Rounded
stochastically, the weight moves a whole bf16 step with probability update/step, so its expected
path is the fp32 one (the recipe of OneTrainer and of "Revisiting BFloat16 Training", Zamirai et al.).

The optimizer is bitsandbytes' AdamW (8-bit states with optim_bits=8, fp32 states with 32): its kernels
run on fp32 copies of the bf16 weights and gradients, chunk by chunk, so a flat parameter of a whole
UNet needs only a chunk's worth of temporaries. Parameters that are not bf16 take bitsandbytes' own
step. The rounding noise is a function of (seed, step, parameter), so a resumed run repeats it exactly.
"""
import math

import bitsandbytes
import bitsandbytes.functional as bnb_functional
import torch

CHUNK = 1 << 23  # elements per fp32 temporary (32 MiB each); a multiple of bitsandbytes' 8-bit block size
BLOCK = 256  # elements per quantization block of bitsandbytes' 8-bit states (absmax1/absmax2 hold one each)


def copy_stochastic_(target: torch.Tensor, source: torch.Tensor, generator: torch.Generator | None = None) -> None:
    """target (bf16) <- source (fp32) rounded stochastically: bf16 is fp32's upper 16 bits, so adding random
    lower bits before truncating rounds up with probability (distance to the lower value) / (bf16 step)."""
    noise = torch.randint(0, 1 << 16, source.shape, dtype=torch.int32, device=source.device, generator=generator)
    bits = source.view(torch.int32).add(noise).bitwise_and_(-(1 << 16))
    target.copy_(bits.view(torch.float32))


class StochasticRoundingAdamW(bitsandbytes.optim.AdamW):
    """bitsandbytes.optim.AdamW whose bf16 parameters are updated in fp32 and stochastically rounded."""

    def __init__(self, params, lr: float, weight_decay: float, optim_bits: int, seed: int):
        super().__init__(params, lr=lr, weight_decay=weight_decay, optim_bits=optim_bits)
        self.seed = seed
        self._generators: dict[torch.device, torch.Generator] = {}

    def generator(self, device: torch.device, *keys: int) -> torch.Generator:
        if device not in self._generators:
            self._generators[device] = torch.Generator(device=device)
        seed = self.seed
        for key in keys:
            seed = (seed * 1_000_003 + key) % (1 << 62)
        return self._generators[device].manual_seed(seed)

    @torch.no_grad()
    def update_step(self, group, p, gindex, pindex):
        if p.dtype != torch.bfloat16:
            return super().update_step(group, p, gindex, pindex)
        state = self.state[p]
        config = self.get_config(gindex, pindex, group)
        state["step"] += 1
        weights, grads = p.data.view(-1), p.grad.contiguous().view(-1)
        generator = self.generator(p.device, state["step"], gindex, pindex)
        for start in range(0, weights.numel(), CHUNK):
            stop = min(start + CHUNK, weights.numel())
            updated = weights[start:stop].float()
            self._update_chunk(state, config, grads[start:stop].float(), updated, start, stop)
            copy_stochastic_(weights[start:stop], updated, generator)

    def _update_chunk(self, state: dict, config: dict, grad: torch.Tensor, weights: torch.Tensor,
                      start: int, stop: int) -> None:
        """bitsandbytes' AdamW kernel on elements [start, stop) of one parameter (fp32 copies)."""
        beta1, beta2 = config["betas"][:2]
        if state["state1"].dtype == torch.float32:
            bnb_functional.optimizer_update_32bit(
                self.optimizer_name, grad, weights, state["state1"].view(-1)[start:stop], beta1, config["eps"],
                state["step"], config["lr"], state["state2"].view(-1)[start:stop], beta2, 0.0, 0.0,
                config["weight_decay"], 1.0, None, max_unorm=0.0, skip_zeros=config["skip_zeros"])
            return
        blocks = slice(start // BLOCK, math.ceil(stop / BLOCK))
        bnb_functional.optimizer_update_8bit_blockwise(
            self.optimizer_name, grad, weights, state["state1"].view(-1)[start:stop],
            state["state2"].view(-1)[start:stop], beta1, beta2, 0.0, 0.0, config["eps"], state["step"],
            config["lr"], state["qmap1"], state["qmap2"], state["absmax1"][blocks], state["absmax2"][blocks],
            config["weight_decay"], gnorm_scale=1.0, skip_zeros=config["skip_zeros"])
