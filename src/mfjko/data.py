r"""Data sets for the two-layer ReLU regression problems (MATH.md, "Notation").

Every generator returns a frozen :class:`Dataset` of float64 arrays: ``X`` (n, d), ``y``
(n,) (the data F is built on), ``X_test``, ``y_test`` (held out), ``meta`` (how it was
made). A bias is the constant 1 appended as the LAST column of X, and ``d`` counts it.
Label noise, when asked for, goes to the training labels only, so the test loss measures
the distance to the noiseless target. Generators (deterministic given ``seed``):
:func:`regression_1d` (x ∈ [−1, 1] plus bias), :func:`teacher` (a width-k ReLU teacher),
:func:`orthogonal` (orthonormal inputs, Boursier et al. 2022), :func:`digits`
(scikit-learn's 8×8 digits, PCA), :func:`load` (user ``.npz``/``.csv``), and
:func:`make_dataset` (dispatch by name). A user file that cannot be used raises
:class:`DataError` (a ValueError; a missing file :class:`DataFileNotFoundError`) naming
the file and the fix.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mfjko.errors import DataError, DataFileNotFoundError  # re-exported: their old home

__all__ = [
    "DataError",
    "DataFileNotFoundError",
    "Dataset",
    "regression_1d",
    "teacher",
    "orthogonal",
    "digits",
    "load",
    "make_dataset",
    "DATASETS",
    "REGRESSION_1D_TARGETS",
]


def _relu(z):
    return np.maximum(z, 0.0)


def _first_bad(a: np.ndarray) -> str:
    """Where the first non-finite entry of ``a`` is ("row i" or "row i, column j")."""
    idx = np.argwhere(~np.isfinite(a))[0]
    return f"row {idx[0]}" + (f", column {idx[1]}" if len(idx) > 1 else "")


def _check_xy(X: np.ndarray, y: np.ndarray, what: str) -> None:
    if X.ndim != 2:
        raise DataError(f"{what}: X must be 2-D (n, d), got shape {X.shape}")
    if y.ndim != 1:
        raise DataError(f"{what}: y must be 1-D (n,), got shape {y.shape}")
    if X.shape[0] != y.shape[0]:
        raise DataError(f"{what}: X has {X.shape[0]} rows but y has {y.shape[0]} entries; "
                        "give one label per row of X")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise DataError(f"{what}: empty data, X has shape {X.shape}")
    for name, a in (("X", X), ("y", y)):
        if not np.isfinite(a).all():
            raise DataError(f"{what}: {name} contains NaN or inf (first at {_first_bad(a)} "
                            "of the file's order); remove or fill those entries")


@dataclass(frozen=True)
class Dataset:
    """A regression / classification data set (float64 arrays).

    ``X`` (n, d) and ``X_test`` (n_test, d) include the bias column (last) when
    ``meta["bias"]`` is True; ``y`` (n,) and ``y_test`` (n_test,) are real labels
    (±1 for binary tasks, trained with the same square loss).
    """

    name: str
    X: np.ndarray
    y: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        for attr in ("X", "y", "X_test", "y_test"):
            object.__setattr__(self, attr, np.asarray(getattr(self, attr), dtype=np.float64))
        _check_xy(self.X, self.y, f"dataset {self.name!r} (train)")
        _check_xy(self.X_test, self.y_test, f"dataset {self.name!r} (test)")
        if self.X.shape[1] != self.X_test.shape[1]:
            raise ValueError(
                f"dataset {self.name!r}: train has d = {self.X.shape[1]}, "
                f"test has d = {self.X_test.shape[1]}"
            )

    @property
    def n(self) -> int:
        """Number of training points."""
        return self.X.shape[0]

    @property
    def d(self) -> int:
        """Input dimension, bias column included."""
        return self.X.shape[1]

    @property
    def has_bias(self) -> bool:
        """Whether the last column of X is the constant bias 1."""
        return bool(self.meta.get("bias", False))


def _append_bias(X: np.ndarray) -> np.ndarray:
    return np.concatenate([X, np.ones((X.shape[0], 1))], axis=1)


def _check_positive_int(value, name: str, minimum: int = 1) -> int:
    try:
        ok = not isinstance(value, bool) and int(value) == value and value >= minimum
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_noise(noise: float) -> float:
    try:
        noise = float(noise)
    except (TypeError, ValueError):
        raise ValueError(f"noise must be a finite standard deviation >= 0, got {noise!r}") from None
    if not np.isfinite(noise) or noise < 0:
        raise ValueError(f"noise must be a finite standard deviation >= 0, got {noise}")
    return noise


# ---------------------------------------------------------------------------------------
# 1-D regression (the research note's 2-D pictures: Θ of `neuron` is (w1, w2, α))
# ---------------------------------------------------------------------------------------


def _relu_teacher_1d(x):
    # Two kinks of opposite sign inside [-1, 1]: a target that two or three ReLU
    # neurons represent exactly, so the mean-field limit can fit it.
    return _relu(x - 0.2) * 1.5 - _relu(-x - 0.3) + 0.1


REGRESSION_1D_TARGETS = {
    "relu_teacher": _relu_teacher_1d,
    "sin": lambda x: np.sin(np.pi * x),
    "abs": np.abs,
    "quadratic": lambda x: x * x,
    "step": lambda x: np.where(x > 0.0, 0.5, -0.5),
}


def regression_1d(
    n_train: int = 20,
    n_test: int = 200,
    target: str = "relu_teacher",
    noise: float = 0.0,
    seed: int = 0,
) -> Dataset:
    """1-D regression on x ∈ [−1, 1] with a bias column (d = 2).

    Training inputs are ``n_train`` uniform draws on [−1, 1] (sorted); test inputs are
    the equispaced grid of ``n_test`` points on [−1, 1] (for plotting the predictor).
    Labels y = f(x) + noise·ξ on the training set, y = f(x) on the test set, where
    f is one of ``REGRESSION_1D_TARGETS`` (relu_teacher, sin, abs, quadratic, step).
    """
    n_train = _check_positive_int(n_train, "n_train")
    n_test = _check_positive_int(n_test, "n_test")
    noise = _check_noise(noise)
    if target not in REGRESSION_1D_TARGETS:
        raise ValueError(
            f"unknown regression_1d target {target!r}; choose one of "
            f"{sorted(REGRESSION_1D_TARGETS)}"
        )
    f = REGRESSION_1D_TARGETS[target]
    rng = np.random.default_rng(seed)
    x = np.sort(rng.uniform(-1.0, 1.0, n_train))
    y = f(x) + noise * rng.standard_normal(n_train)
    x_test = np.linspace(-1.0, 1.0, n_test)
    return Dataset(
        name="regression_1d",
        X=_append_bias(x[:, None]),
        y=y,
        X_test=_append_bias(x_test[:, None]),
        y_test=f(x_test),
        meta=dict(target=target, noise=noise, seed=seed, bias=True, d_in=1),
    )


# ---------------------------------------------------------------------------------------
# ReLU teacher
# ---------------------------------------------------------------------------------------


def teacher(
    d_in: int = 5,
    width: int = 3,
    n_train: int = 50,
    n_test: int = 500,
    noise: float = 0.0,
    seed: int = 0,
) -> Dataset:
    """Labels from a width-``width`` ReLU teacher on x ~ N(0, I_{d_in}), bias appended.

    With x̃ = (x, 1) ∈ ℝ^{d_in+1}: y = Σ_k a_k σ(w_kᵀx̃) (+ noise·ξ on the training set),
    teacher directions w_k uniform on the unit sphere of ℝ^{d_in+1}, output weights
    a_k = ±1 with alternating sign (so the target has both signs). The teacher
    (``meta["teacher_W"]`` (width, d), ``meta["teacher_a"]`` (width,)) is stored.
    """
    d_in = _check_positive_int(d_in, "d_in")
    width = _check_positive_int(width, "width")
    n_train = _check_positive_int(n_train, "n_train")
    n_test = _check_positive_int(n_test, "n_test")
    noise = _check_noise(noise)
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((width, d_in + 1))
    W /= np.linalg.norm(W, axis=1, keepdims=True)
    a = np.where(np.arange(width) % 2 == 0, 1.0, -1.0)
    X = _append_bias(rng.standard_normal((n_train, d_in)))
    X_test = _append_bias(rng.standard_normal((n_test, d_in)))
    y = _relu(X @ W.T) @ a + noise * rng.standard_normal(n_train)
    y_test = _relu(X_test @ W.T) @ a
    return Dataset(
        name="teacher",
        X=X,
        y=y,
        X_test=X_test,
        y_test=y_test,
        meta=dict(
            d_in=d_in, width=width, noise=noise, seed=seed, bias=True, teacher_W=W, teacher_a=a
        ),
    )


# ---------------------------------------------------------------------------------------
# Orthogonal inputs (Boursier, Pillaud-Vivien, Flammarion 2022)
# ---------------------------------------------------------------------------------------


def orthogonal(
    n: int = 4,
    d: int = 4,
    labels=None,
    random_rotation: bool = False,
    seed: int = 0,
) -> Dataset:
    """N orthonormal inputs in ℝ^d (n ≤ d), labels ±1, NO bias column.

    X = the first n rows of I_d, or of a Haar-random orthogonal matrix when
    ``random_rotation``. Default labels: +1 for the first ⌈n/2⌉ points, −1 for the rest
    (for n = 4: (1, 1, −1, −1)). The test set is the training set (the paper studies
    the training dynamics only).
    """
    n = _check_positive_int(n, "n")
    d = _check_positive_int(d, "d")
    if n > d:
        raise ValueError(f"orthogonal: need n <= d for orthonormal inputs, got n = {n}, d = {d}")
    if labels is None:
        y = np.where(np.arange(n) < (n + 1) // 2, 1.0, -1.0)
    else:
        y = np.asarray(labels, dtype=np.float64)
        if y.shape != (n,):
            raise ValueError(f"orthogonal: labels must have shape ({n},), got {y.shape}")
    if random_rotation:
        rng = np.random.default_rng(seed)
        Q, R = np.linalg.qr(rng.standard_normal((d, d)))
        # Sign fix makes Q Haar-distributed (QR alone is biased by R's sign convention).
        Q = Q * np.sign(np.diag(R))[None, :]
        X = Q.T[:n]
    else:
        X = np.eye(d)[:n]
    return Dataset(
        name="orthogonal",
        X=X,
        y=y,
        X_test=X.copy(),
        y_test=y.copy(),
        meta=dict(n=n, d=d, random_rotation=random_rotation, seed=seed, bias=False,
                  test_is_train=True),
    )


# ---------------------------------------------------------------------------------------
# scikit-learn digits
# ---------------------------------------------------------------------------------------


def _digit_targets(lab, lab_test, task: str):
    """Targets of the digits task from the train/test labels (see :func:`digits`)."""
    lab, lab_test = lab.astype(np.float64), lab_test.astype(np.float64)
    if task == "regression":  # standardized with the training mean and std
        m, s = lab.mean(), lab.std()
        return (lab - m) / s, (lab_test - m) / s
    return np.where(lab < 5, 1.0, -1.0), np.where(lab_test < 5, 1.0, -1.0)


def digits(
    n_components: int = 3,
    task: str = "regression",
    n_train: int = 200,
    n_test: int = 500,
    seed: int = 0,
) -> Dataset:
    """scikit-learn's shipped 8×8 digits (1797 images), PCA to ``n_components`` dims.

    The images are shuffled with ``seed`` and split into n_train / n_test; PCA and
    standardization (zero mean, unit variance per component) are fitted on the
    training split only; a bias column is appended (d = n_components + 1).
    Targets: ``task="regression"`` — the digit value standardized with the training
    mean and std; ``task="binary"`` — +1 if the digit is < 5, else −1.
    """
    # scikit-learn: heavy, only the digits data set needs it (start-up cost)
    from sklearn.datasets import load_digits
    from sklearn.decomposition import PCA

    n_components = _check_positive_int(n_components, "n_components")
    n_train = _check_positive_int(n_train, "n_train")
    n_test = _check_positive_int(n_test, "n_test")
    if task not in ("regression", "binary"):
        raise ValueError(f"digits: task must be 'regression' or 'binary', got {task!r}")
    images, labels = load_digits(return_X_y=True)
    total = images.shape[0]
    if n_train + n_test > total:
        raise ValueError(
            f"digits: n_train + n_test = {n_train + n_test} exceeds the {total} images"
        )
    if n_components > min(n_train, images.shape[1]):
        raise ValueError(
            f"digits: n_components = {n_components} must be <= min(n_train, 64)"
        )
    perm = np.random.default_rng(seed).permutation(total)
    tr, te = perm[:n_train], perm[n_train : n_train + n_test]
    pca = PCA(n_components=n_components, random_state=seed).fit(images[tr])
    Z, Z_test = pca.transform(images[tr]), pca.transform(images[te])
    mu, sd = Z.mean(axis=0), Z.std(axis=0)
    Z, Z_test = (Z - mu) / sd, (Z_test - mu) / sd
    y, y_test = _digit_targets(labels[tr], labels[te], task)
    return Dataset(
        name="digits",
        X=_append_bias(Z),
        y=y,
        X_test=_append_bias(Z_test),
        y_test=y_test,
        meta=dict(
            n_components=n_components,
            task=task,
            seed=seed,
            bias=True,
            explained_variance_ratio=pca.explained_variance_ratio_,
            train_index=tr,
            test_index=te,
        ),
    )


# ---------------------------------------------------------------------------------------
# User data
# ---------------------------------------------------------------------------------------


def _read_csv(p: Path) -> np.ndarray:
    try:
        text = p.read_text()
    except UnicodeDecodeError:
        raise DataError(f"{p}: not a text file (not UTF-8); save the data as a "
                        "comma-separated .csv or as a .npz with arrays X and y") from None
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise DataError(f"{p}: file is empty (no data rows); add rows x_1,...,x_d,y")
    # A first line that does not parse as numbers is a header; skip it.
    try:
        [float(v) for v in lines[0].split(",")]
        skip = 0
    except ValueError:
        skip = 1
    if len(lines) - skip == 0:
        raise DataError(f"{p}: file has a header but no data rows; add rows x_1,...,x_d,y")
    rows = []
    for i, ln in enumerate(lines[skip:], start=1 + skip):
        try:
            rows.append([float(v) for v in ln.split(",")])
        except ValueError:
            raise DataError(f"{p}: data line {i} is not comma-separated numbers: "
                            f"{ln[:60]!r}; fix or remove it") from None
    widths = {len(r) for r in rows}
    if len(widths) != 1:
        raise DataError(f"{p}: rows have different numbers of columns {sorted(widths)}; "
                        "every row needs the same features and a label")
    arr = np.asarray(rows, dtype=np.float64)
    if arr.shape[1] < 2:
        raise DataError(f"{p}: need at least 2 columns (features..., y), got {arr.shape[1]}")
    return arr


def _read_npz(p: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        z = np.load(p, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 — np.load raises several types on corrupt files
        raise DataError(f"{p}: cannot read as .npz ({type(e).__name__}: "
                        f"{str(e)[:80]}); save it with numpy.savez(path, X=X, y=y)") from None
    if not hasattr(z, "files"):
        raise DataError(f"{p}: holds a single array, not X and y; save it with "
                        "numpy.savez(path, X=X, y=y)")
    with z:
        missing = {"X", "y"} - set(z.files)
        if missing:
            raise DataError(f"{p}: missing arrays {sorted(missing)} (need X and y; found "
                            f"{sorted(z.files)[:5]})")
        out = []
        for name in ("X", "y"):
            try:
                a = z[name]
            except Exception as e:  # noqa: BLE001 — object arrays, truncated members
                raise DataError(f"{p}: array {name} cannot be read ({type(e).__name__}: "
                                f"{str(e)[:80]}); store plain numbers") from None
            if a.dtype.kind not in "biuf":
                raise DataError(f"{p}: array {name} holds {a.dtype} values, not real "
                                "numbers; store it as floats")
            out.append(np.asarray(a, dtype=np.float64))
    return out[0], out[1]


def load(path, test_fraction: float = 0.2, seed: int = 0, add_bias: bool = True) -> Dataset:
    """User data from a ``.npz`` or ``.csv`` file.

    User data from ``.npz`` (arrays ``X`` (n, d_in) or (n,), ``y`` (n,)) or ``.csv``
    (comma-separated, optional header line, last column y).

    The rows are shuffled with ``seed``; round(test_fraction·n) of them form the test
    set (test_fraction ∈ [0, 1); with 0 the test set is the training set,
    ``meta["test_is_train"]``). ``add_bias`` appends the constant-1 column.

    Raises :class:`DataFileNotFoundError` for a missing file, :class:`DataError` for an
    unknown suffix, an unreadable file, missing arrays, empty data, wrong shapes,
    mismatched lengths or NaN/inf, and ValueError for a bad ``test_fraction``.
    """
    p = Path(path)
    test_fraction = float(test_fraction)
    if not (0.0 <= test_fraction < 1.0):
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    if not p.exists():
        raise DataFileNotFoundError(f"data file {p} does not exist; check the path (relative "
                                    "paths are read from the working folder, then from the "
                                    "config's folder)")
    if p.is_dir():
        raise DataError(f"{p} is a folder, not a data file; point to a .npz or .csv file")
    try:
        if p.suffix == ".npz":
            X, y = _read_npz(p)
            if X.ndim == 1:
                X = X[:, None]
        elif p.suffix == ".csv":
            arr = _read_csv(p)
            X, y = arr[:, :-1], arr[:, -1]
        else:
            raise DataError(f"{p}: data must be a .npz (X, y) or .csv (last column y) file")
    except PermissionError:
        raise DataError(f"{p}: permission denied; make the file readable") from None
    _check_xy(X, y, str(p))
    n = X.shape[0]
    n_test = int(round(test_fraction * n))
    if test_fraction > 0 and n - n_test < 1:
        raise DataError(f"{p}: {n} rows leave no training data with test_fraction "
                        f"{test_fraction}; lower data.kwargs.test_fraction")
    perm = np.random.default_rng(seed).permutation(n)
    if n_test == 0:
        tr, te = perm, perm
    else:
        tr, te = perm[n_test:], perm[:n_test]
    Xb = _append_bias(X) if add_bias else X
    return Dataset(
        name="file",
        X=Xb[tr],
        y=y[tr],
        X_test=Xb[te],
        y_test=y[te],
        meta=dict(path=str(p), test_fraction=test_fraction, seed=seed, bias=bool(add_bias),
                  test_is_train=n_test == 0, d_in=X.shape[1]),
    )


DATASETS = {
    "regression_1d": regression_1d,
    "teacher": teacher,
    "orthogonal": orthogonal,
    "digits": digits,
    "file": load,
}


def make_dataset(name: str, **kwargs) -> Dataset:
    """The data set ``name`` built by its generator.

    The data set ``name`` ∈ {regression_1d, teacher, orthogonal, digits, file}, built by
    its generator with ``kwargs`` (for "file": ``path`` and :func:`load`'s options).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; choose one of {sorted(DATASETS)}")
    fn = DATASETS[name]
    allowed = set(inspect.signature(fn).parameters)
    unknown = set(kwargs) - allowed
    if unknown:
        raise ValueError(
            f"data set {name!r} got unknown options {sorted(unknown)}; allowed: {sorted(allowed)}"
        )
    return fn(**kwargs)
