"""Shared test helpers (plain functions; fixtures live in conftest.py)."""

# True when the run selects the `slow` tests too (`make test-all`, `pytest -m ""`); set by
# conftest.pytest_configure before any test module is imported
FULL = False


def examples(n: int) -> int:
    """Hypothesis examples of a fuzz test: ``n`` in ``make test-all``, a quarter (at least
    10) in ``make test``, whose time is budgeted (CONTRIBUTING.md, "Tests")."""
    return n if FULL else max(10, n // 4)



def tiny_raw() -> dict:
    return {
        "name": "tiny",
        "description": "tiny end-to-end test config",
        "data": {"name": "regression_1d", "kwargs": {"n_train": 8, "n_test": 30, "seed": 1}},
        "model": {"parametrization": "neuron", "lam": 0.01},
        "init": {"law": "gaussian", "scale": 0.5, "m": 60},
        "methods": {
            "gd": {"h": 0.05},
            "langevin": {"h": 0.05, "match_jko": True, "m": 400, "seeds": 2},
            "jko": {"tau": 0.1, "eps": 0.05,
                    "grid": {"kind": "cartesian", "ranges": [[-2, 2]] * 3, "sizes": [7] * 3}},
        },
        "T": 0.4,
        "record_every": 0.2,
        "seed": 0,
        "metrics": {"sinkhorn_eps": 0.1, "max_support": 60, "max_grid_support": 200,
                    "particles_saved": 20},
    }
