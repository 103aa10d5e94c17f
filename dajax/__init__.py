"""dajax: Depth Anything in JAX/Flax."""

from dajax import platforms as _platforms

__version__ = "0.1.0"

_platforms.choose_quietly()  # no libtpu start-up noise on machines without a TPU
