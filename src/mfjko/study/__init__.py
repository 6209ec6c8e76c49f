r"""The pinning study of a sweep: regimes, rates and the ``mfjko study`` page (docs/STUDY.md).

:mod:`.regime` (the predicted drift ratio ρ(c, ε/δ²) and the rule that classifies a run),
:mod:`.analysis` (one row per sweep point: gaps, drift ratio, regime; rate fits),
:mod:`.render` (figures, numbers and ``study.html``).
"""
