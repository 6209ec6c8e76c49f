"""Scratch: a trivial new grid method (a clone of jko under another name), to count files."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import create_model

from mfjko.methods.base import MethodInfo
from mfjko.methods.jko import EntropicJKO, JKOConfig

__all__ = ["JKOClone", "JKOCloneConfig", "METHOD"]


@dataclass(frozen=True)
class JKOClone(EntropicJKO):
    """The entropic JKO under the name ``jko_clone``."""

    name = "jko_clone"


JKOCloneConfig = create_model("JKOCloneConfig", __base__=JKOConfig,
                              __doc__="``methods.jko_clone``: as ``methods.jko``.")


def _build(mc, setup) -> JKOClone:
    return JKOClone(tau=mc.tau, eps=mc.eps, options=mc.solver_options())


METHOD = MethodInfo("jko_clone", JKOClone, JKOCloneConfig, _build, color="tab:pink",
                    summary="scratch clone of jko")
