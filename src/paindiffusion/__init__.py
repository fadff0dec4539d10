"""PainDiffusion: a small diffusion-forcing model that turns a heat-pain stimulus into facial expressions.

Data flows one way: face space → dataset → model → sampler → stream → outputs.
"""

__version__ = "0.1.0"
