"""sdtrainer: teach Stable Diffusion v1 a new subject from a few photos, on one home GPU."""
import os
import sys

# Before anything touches CUDA: PyTorch's allocator grows and shrinks segments instead of keeping many
# fixed-size ones, which keeps the reserved memory close to what is in use (with the CUDA graphs of the
# 8gb preset: 7.4 GiB reserved instead of 8.3 on an H200). Linux only: elsewhere PyTorch warns that it
# cannot; a value the user has set is kept.
if sys.platform == "linux":
    os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
