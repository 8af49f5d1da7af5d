"""sdtrainer: teach Stable Diffusion v1 a new subject from a few photos, on one home GPU."""
