"""Profile generation: one ProfileGenerator interface with a transformers and a vLLM backend.

The profile store lives in `lpt_core.generation.store` and is not imported here, so generation
itself works where polars is not installed (the GPU benchmark machine).
"""

from lpt_core.generation.base import GeneratedProfile, ProfileGenerator
from lpt_core.generation.factory import make_generator

__all__ = ["GeneratedProfile", "ProfileGenerator", "make_generator"]
