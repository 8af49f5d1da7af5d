"""The SD v1 text encoder: CLIP ViT-L/14's text transformer (transformers' `CLIPTextModel`).

transformers 5 dropped the `text_model.` level from `CLIPTextModel`; checkpoints keep it
(`cond_stage_model.transformer.text_model.*`), so a `TextTransformer` holder puts it back and
the module's keys equal the file's.
"""
from dataclasses import dataclass

import torch
from torch import nn
from transformers import CLIPTextConfig, CLIPTextModel

from ldm.schedule import MAX_TOKENS
from ldm.tokenizer import get_tokenizer

VOCAB_SIZE = 49408


@dataclass
class TextEncoderConfig:
    width: int = 768  # hidden size; the UNet's context_dim must equal it
    layers: int = 12
    heads: int = 12
    mlp_width: int = 3072


class TextTransformer(nn.Module):
    """Holds the CLIP model under the attribute name the checkpoint format uses."""

    def __init__(self, cfg: TextEncoderConfig):
        super().__init__()
        config = CLIPTextConfig(
            vocab_size=VOCAB_SIZE, hidden_size=cfg.width, intermediate_size=cfg.mlp_width,
            num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads, max_position_embeddings=MAX_TOKENS,
            hidden_act="quick_gelu", layer_norm_eps=1e-5, attn_implementation="sdpa")
        self.text_model = CLIPTextModel(config)


class CLIPTextEncoder(nn.Module):
    """Prompts -> last hidden states [B, 77, width], the UNet's cross-attention context."""

    def __init__(self, cfg: TextEncoderConfig):
        super().__init__()
        self.transformer = TextTransformer(cfg)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.transformer.text_model(input_ids=input_ids).last_hidden_state

    def encode(self, prompts: list[str]) -> torch.Tensor:
        device = self.transformer.text_model.embeddings.token_embedding.weight.device
        return self(get_tokenizer()(prompts).to(device))
