r"""The config model of a grid over Θ (``methods.<grid method>.grid``): :class:`GridSpec`.

A description only (validated by pydantic, no arrays): a parametrization turns it into a
geometry (:meth:`mfjko.parametrizations.Parametrization.build_grid`).
"""

from __future__ import annotations

import typing

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["GridSpec"]


class GridSpec(BaseModel):
    r"""Support of a grid method's measure (``methods.jko.grid``), in Θ of the parametrization.

    Built by :meth:`mfjko.parametrizations.Parametrization.build_grid`:

    - ``cartesian`` (neuron): box ``ranges`` [[lo, hi], ...] × ``sizes`` over all D = d + 1
      coordinates (w_1..w_d, α);
    - ``signed`` / ``pm``: box over w (d coordinates), two components (positive/negative);
    - ``sphere_line`` (sphere): ``n_dirs`` directions on S^{d−1} × ``n_beta`` values of β in
      ``beta_range``;
    - ``scales``: optional multi-scale copies of the grid's points (research note §2.3.1);
      ``separable_scales``: the separable surrogate cost (a product with a scale axis,
      O(N) memory; :func:`mfjko.geometry.multiscale`) instead of the exact point-set cost.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: typing.Literal["cartesian", "signed", "pm", "sphere_line"] = "cartesian"
    ranges: list[tuple[float, float]] | None = None
    sizes: list[typing.Annotated[int, Field(ge=2)]] | None = None
    n_dirs: typing.Annotated[int, Field(ge=3)] | None = None
    beta_range: tuple[float, float] | None = None
    n_beta: typing.Annotated[int, Field(ge=2)] | None = None
    scales: list[typing.Annotated[float, Field(gt=0, allow_inf_nan=False)]] | None = None
    separable_scales: bool = False
    discretize_samples: typing.Annotated[int, Field(ge=1000)] = 200_000

    @model_validator(mode="after")
    def _consistent(self):
        if self.kind == "sphere_line":
            for key in ("n_dirs", "beta_range", "n_beta"):
                if getattr(self, key) is None:
                    raise ValueError(f"grid kind sphere_line needs grid.{key}")
            if self.ranges is not None or self.sizes is not None:
                raise ValueError("grid kind sphere_line takes n_dirs/beta_range/n_beta, "
                                 "not ranges/sizes")
            lo, hi = self.beta_range
            if not lo < hi:
                raise ValueError(f"grid.beta_range must have lo < hi, got {self.beta_range}")
            return self
        if self.ranges is None or self.sizes is None:
            raise ValueError(f"grid kind {self.kind} needs grid.ranges and grid.sizes")
        if len(self.ranges) != len(self.sizes):
            raise ValueError(f"grid.ranges has {len(self.ranges)} axes but grid.sizes has "
                             f"{len(self.sizes)}")
        for i, (lo, hi) in enumerate(self.ranges):
            if not lo < hi:
                raise ValueError(f"grid.ranges[{i}] must have lo < hi, got {(lo, hi)}")
        for key in ("n_dirs", "beta_range", "n_beta"):
            if getattr(self, key) is not None:
                raise ValueError(f"grid.{key} is only used with kind sphere_line")
        return self
