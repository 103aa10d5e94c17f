"""dajax: Depth Anything in JAX/Flax."""

__version__ = "0.1.0"
