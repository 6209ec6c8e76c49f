"""Scratch: a trivial new grid method with its own grid (a clone of wfr_jko), to count files."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from pydantic import create_model

from mfjko.methods.base import MethodInfo
from mfjko.methods.wfr_jko import WFRJKO, WFRJKOConfig

__all__ = ["WFRClone", "WFRCloneConfig", "METHOD"]


@dataclass(frozen=True)
class WFRClone(WFRJKO):
    """The WFR JKO under the name ``wfr_clone``."""

    name = "wfr_clone"


WFRCloneConfig = create_model("WFRCloneConfig", __base__=WFRJKOConfig,
                              __doc__="``methods.wfr_clone``: as ``methods.wfr_jko``.")


def _build(mc, setup) -> WFRClone:
    st = mc.stepper(setup.law)
    return WFRClone(**{f.name: getattr(st, f.name) for f in dataclasses.fields(st)})


METHOD = MethodInfo("wfr_clone", WFRClone, WFRCloneConfig, _build, color="tab:brown",
                    summary="scratch clone of wfr_jko", directional=True)
