"""The SD v1 denoising UNet (CompVis `openaimodel.UNetModel` layout, v1 options only).

Keys come straight from the attribute names: `time_embed`, `input_blocks.N.M`, `middle_block`,
`output_blocks.N.M`, `out`. Call it as the reference does: `unet(x, timesteps, context)` -> eps.
"""
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ldm.attention import SpatialTransformer
from ldm.layers import normalization, timestep_embedding

UNET_NORM_EPS = 1e-5  # openaimodel's GroupNorm32 keeps torch's default eps (the attention blocks use 1e-6)


@dataclass
class UNetConfig:
    in_channels: int = 4  # latent channels
    out_channels: int = 4  # eps has the latent's shape
    model_channels: int = 320  # width of the first stage; later stages multiply it
    channel_mult: tuple[int, ...] = (1, 2, 4, 4)  # one entry per resolution stage
    num_res_blocks: int = 2  # ResBlocks per stage on the way down (one more on the way up)
    attention_resolutions: tuple[int, ...] = (4, 2, 1)  # downsample factors whose stages get a SpatialTransformer
    num_heads: int = 8
    context_dim: int = 768  # width of the text encoder's hidden states


class ResBlock(nn.Module):
    """Two 3x3 convs with the timestep embedding added in between; 1x1 skip when widths differ."""

    def __init__(self, channels: int, emb_channels: int, out_channels: int):
        super().__init__()
        self.in_layers = nn.Sequential(normalization(channels, UNET_NORM_EPS), nn.SiLU(),
                                       nn.Conv2d(channels, out_channels, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, out_channels))
        self.out_layers = nn.Sequential(normalization(out_channels, UNET_NORM_EPS), nn.SiLU(), nn.Dropout(0.0),
                                        nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.skip_connection = nn.Identity() if channels == out_channels else nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers(x) + self.emb_layers(emb)[:, :, None, None].to(x.dtype)
        return self.skip_connection(x) + self.out_layers(h)


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(nn.functional.interpolate(x, scale_factor=2.0, mode="nearest"))


class TimestepEmbedSequential(nn.Sequential):
    """Sequential that hands each layer what it needs: emb to ResBlocks, context to transformers."""

    gradient_checkpointing = False

    def forward(self, x: torch.Tensor, emb: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        if self.gradient_checkpointing and torch.is_grad_enabled():
            return checkpoint(self._run, x, emb, context, use_reentrant=False)
        return self._run(x, emb, context)

    def _run(self, x, emb, context):
        for layer in self:
            if isinstance(layer, ResBlock):
                x = layer(x, emb)
            elif isinstance(layer, SpatialTransformer):
                x = layer(x, context)
            else:
                x = layer(x)
        return x


class UNetModel(nn.Module):
    def __init__(self, cfg: UNetConfig):
        super().__init__()
        self.cfg = cfg
        mc, emb_dim = cfg.model_channels, cfg.model_channels * 4
        self.time_embed = nn.Sequential(nn.Linear(mc, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))

        def stage(ch_in: int, ch_out: int, ds: int) -> list[nn.Module]:
            layers = [ResBlock(ch_in, emb_dim, ch_out)]
            if ds in cfg.attention_resolutions:
                layers.append(SpatialTransformer(ch_out, cfg.num_heads, cfg.context_dim))
            return layers

        # Encoder: stem conv, then per stage `num_res_blocks` blocks and a downsample (not after the last).
        self.input_blocks = nn.ModuleList([TimestepEmbedSequential(nn.Conv2d(cfg.in_channels, mc, 3, padding=1))])
        skips, ch, ds = [mc], mc, 1
        for level, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_res_blocks):
                self.input_blocks.append(TimestepEmbedSequential(*stage(ch, mult * mc, ds)))
                ch = mult * mc
                skips.append(ch)
            if level != len(cfg.channel_mult) - 1:
                self.input_blocks.append(TimestepEmbedSequential(Downsample(ch)))
                skips.append(ch)
                ds *= 2

        self.middle_block = TimestepEmbedSequential(
            ResBlock(ch, emb_dim, ch), SpatialTransformer(ch, cfg.num_heads, cfg.context_dim),
            ResBlock(ch, emb_dim, ch))

        # Decoder: mirror image, each block eats one skip; upsample at the end of every stage but the last.
        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.channel_mult))):
            for i in range(cfg.num_res_blocks + 1):
                layers = stage(ch + skips.pop(), mult * mc, ds)
                ch = mult * mc
                if level and i == cfg.num_res_blocks:
                    layers.append(Upsample(ch))
                    ds //= 2
                self.output_blocks.append(TimestepEmbedSequential(*layers))

        self.out = nn.Sequential(normalization(ch, UNET_NORM_EPS), nn.SiLU(),
                                 nn.Conv2d(mc, cfg.out_channels, 3, padding=1))

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        for block in self.modules():
            if isinstance(block, TimestepEmbedSequential):
                block.gradient_checkpointing = enabled

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        if timesteps.ndim == 0:
            timesteps = timesteps.expand(x.shape[0])
        emb = self.time_embed(timestep_embedding(timesteps, self.cfg.model_channels).to(x.dtype))
        h, hs = x, []
        for block in self.input_blocks:
            h = block(h, emb, context)
            hs.append(h)
        h = self.middle_block(h, emb, context)
        for block in self.output_blocks:
            h = block(torch.cat([h, hs.pop()], dim=1), emb, context)
        return self.out(h)
