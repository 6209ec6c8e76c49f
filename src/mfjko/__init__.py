"""mfjko: does an entropic JKO scheme on a fixed grid of neurons behave like gradient descent?

Mean-field training dynamics of two-layer ReLU networks, simulated as particles
(GD, implicit steps, gradient flow, mean-field Langevin) and as grid measures
(entropic JKO, Peyré 2015). Conventions: ../shared/MATH.md (copied in docs/MATH.md).

Importing the package enables float64 in JAX: the science runs in double precision.
"""

import jax

jax.config.update("jax_enable_x64", True)

__version__ = "0.1.0"
