"""Walking traced programs in tests: the equations of given primitives in a jaxpr."""

import jax


def equations(jaxpr, primitives: tuple[str, ...]):
    """Every equation of `jaxpr` whose primitive is named in `primitives`, nested ones
    (custom gradients, loops, pjit) included, in program order."""
    for eqn in jaxpr.eqns:
        if eqn.primitive.name in primitives:
            yield eqn
        for value in eqn.params.values():
            for item in value if isinstance(value, (list, tuple)) else (value,):
                if isinstance(item, jax.extend.core.ClosedJaxpr):
                    yield from equations(item.jaxpr, primitives)
                elif isinstance(item, jax.extend.core.Jaxpr):
                    yield from equations(item, primitives)
