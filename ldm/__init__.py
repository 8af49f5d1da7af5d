"""Stable Diffusion v1 model code: modules whose attribute names match the CompVis checkpoint keys."""
