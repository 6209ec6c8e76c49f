"""Data sets: shapes, bias column, determinism, loader round trips and errors."""

import numpy as np
import pytest

from mfjko import data


@pytest.mark.parametrize("target", sorted(data.REGRESSION_1D_TARGETS))
def test_regression_1d_shapes_bias_and_target(target):
    ds = data.regression_1d(n_train=15, n_test=40, target=target, seed=3)
    assert ds.X.shape == (15, 2) and ds.y.shape == (15,)
    assert ds.X_test.shape == (40, 2) and ds.y_test.shape == (40,)
    assert ds.X.dtype == np.float64
    np.testing.assert_array_equal(ds.X[:, -1], 1.0)
    np.testing.assert_array_equal(ds.X_test[:, -1], 1.0)
    assert ds.has_bias and ds.d == 2 and ds.n == 15
    assert np.all(np.abs(ds.X[:, 0]) <= 1.0)
    # Noiseless labels are the target function itself (independent re-evaluation).
    f = data.REGRESSION_1D_TARGETS[target]
    np.testing.assert_allclose(ds.y, f(ds.X[:, 0]), atol=0)
    np.testing.assert_allclose(ds.X_test[:, 0], np.linspace(-1, 1, 40))


def test_regression_1d_explicit_values_and_noise():
    ds = data.regression_1d(n_train=30, target="sin", noise=0.1, seed=1)
    clean = np.sin(np.pi * ds.X[:, 0])
    noise = ds.y - clean
    assert 0.03 < noise.std() < 0.2  # noise of std 0.1 on 30 points
    np.testing.assert_allclose(ds.y_test, np.sin(np.pi * ds.X_test[:, 0]), atol=1e-15)
    ds_abs = data.regression_1d(target="abs")
    np.testing.assert_allclose(ds_abs.y, np.abs(ds_abs.X[:, 0]))


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("regression_1d", dict(n_train=10, noise=0.1)),
        ("teacher", dict(d_in=3, width=2, n_train=12, n_test=7, noise=0.05)),
        ("orthogonal", dict(n=3, d=5, random_rotation=True)),
        ("digits", dict(n_components=2, n_train=50, n_test=20)),
    ],
)
def test_generators_deterministic_by_seed(name, kwargs):
    a = data.make_dataset(name, seed=0, **kwargs)
    b = data.make_dataset(name, seed=0, **kwargs)
    c = data.make_dataset(name, seed=1, **kwargs)
    for attr in ("X", "y", "X_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, attr), getattr(b, attr))
    assert not (np.array_equal(a.X, c.X) and np.array_equal(a.y, c.y))


def test_teacher_labels_from_stored_teacher():
    ds = data.teacher(d_in=4, width=3, n_train=20, n_test=9, noise=0.0, seed=5)
    assert ds.X.shape == (20, 5) and ds.X_test.shape == (9, 5)
    np.testing.assert_array_equal(ds.X[:, -1], 1.0)
    W, a = ds.meta["teacher_W"], ds.meta["teacher_a"]
    np.testing.assert_allclose(np.linalg.norm(W, axis=1), 1.0)
    # Independent evaluation of Σ_k a_k max(0, w_k·x), loop over neurons.
    ref = sum(a[k] * np.maximum(ds.X @ W[k], 0.0) for k in range(3))
    np.testing.assert_allclose(ds.y, ref, atol=1e-14)


def test_orthogonal_inputs():
    ds = data.orthogonal()
    np.testing.assert_array_equal(ds.X, np.eye(4))
    np.testing.assert_array_equal(ds.y, [1, 1, -1, -1])
    np.testing.assert_array_equal(ds.X_test, ds.X)
    assert not ds.has_bias
    rot = data.orthogonal(n=3, d=6, labels=[1, -1, 1], random_rotation=True, seed=2)
    np.testing.assert_allclose(rot.X @ rot.X.T, np.eye(3), atol=1e-13)
    assert not np.allclose(np.abs(rot.X), np.eye(6)[:3])
    with pytest.raises(ValueError, match="n <= d"):
        data.orthogonal(n=5, d=4)
    with pytest.raises(ValueError, match="labels"):
        data.orthogonal(labels=[1, -1])


@pytest.mark.parametrize("task", ["regression", "binary"])
def test_digits(task):
    ds = data.digits(n_components=3, task=task, n_train=100, n_test=40, seed=0)
    assert ds.X.shape == (100, 4) and ds.X_test.shape == (40, 4)
    np.testing.assert_array_equal(ds.X[:, -1], 1.0)
    np.testing.assert_allclose(ds.X[:, :3].mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(ds.X[:, :3].std(axis=0), 1.0, atol=1e-12)
    from sklearn.datasets import load_digits

    _, labels = load_digits(return_X_y=True)
    lab = labels[ds.meta["train_index"]].astype(float)
    if task == "binary":
        np.testing.assert_array_equal(ds.y, np.where(lab < 5, 1.0, -1.0))
    else:
        np.testing.assert_allclose(ds.y, (lab - lab.mean()) / lab.std(), atol=1e-13)
    with pytest.raises(ValueError, match="exceeds"):
        data.digits(n_train=1500, n_test=500)


def test_npz_and_csv_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((25, 3)), rng.standard_normal(25)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    np.savetxt(tmp_path / "d.csv", np.column_stack([X, y]), delimiter=",",
               header="a,b,c,y", comments="")
    for fname in ("d.npz", "d.csv"):
        ds = data.load(tmp_path / fname, test_fraction=0.2, seed=4)
        assert ds.X.shape == (20, 4) and ds.X_test.shape == (5, 4)
        np.testing.assert_array_equal(ds.X[:, -1], 1.0)
        # The union of the split reproduces the file's rows exactly (as a set of rows).
        rows = np.vstack([np.column_stack([ds.X[:, :-1], ds.y]),
                          np.column_stack([ds.X_test[:, :-1], ds.y_test])])
        ref = np.column_stack([X, y])
        order = np.lexsort(rows.T[::-1])
        order_ref = np.lexsort(ref.T[::-1])
        np.testing.assert_allclose(rows[order], ref[order_ref], rtol=1e-15 if fname.endswith(
            "npz") else 1e-12)
    nob = data.load(tmp_path / "d.npz", test_fraction=0.0, add_bias=False)
    assert nob.X.shape == (25, 3) and nob.meta["test_is_train"]
    ds = data.make_dataset("file", path=str(tmp_path / "d.npz"), test_fraction=0.4)
    assert ds.X.shape == (15, 4)


def test_loader_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        data.load(tmp_path / "nope.npz")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ValueError, match="empty"):
        data.load(tmp_path / "empty.csv")
    (tmp_path / "header_only.csv").write_text("x,y\n")
    with pytest.raises(ValueError, match="no data rows"):
        data.load(tmp_path / "header_only.csv")
    (tmp_path / "nan.csv").write_text("1,2\nnan,3\n")
    with pytest.raises(ValueError, match="NaN or inf"):
        data.load(tmp_path / "nan.csv")
    (tmp_path / "ragged.csv").write_text("1,2,3\n4,5\n")
    with pytest.raises(ValueError, match="different numbers of columns"):
        data.load(tmp_path / "ragged.csv")
    (tmp_path / "onecol.csv").write_text("1\n2\n")
    with pytest.raises(ValueError, match="at least 2 columns"):
        data.load(tmp_path / "onecol.csv")
    np.savez(tmp_path / "mismatch.npz", X=np.ones((4, 2)), y=np.ones(3))
    with pytest.raises(ValueError, match="4 rows but y has 3"):
        data.load(tmp_path / "mismatch.npz")
    np.savez(tmp_path / "badshape.npz", X=np.ones((4, 2, 2)), y=np.ones(4))
    with pytest.raises(ValueError, match="2-D"):
        data.load(tmp_path / "badshape.npz")
    np.savez(tmp_path / "noy.npz", X=np.ones((4, 2)))
    with pytest.raises(ValueError, match="missing arrays"):
        data.load(tmp_path / "noy.npz")
    np.savez(tmp_path / "inf.npz", X=np.array([[1.0], [np.inf]]), y=np.ones(2))
    with pytest.raises(ValueError, match="NaN or inf"):
        data.load(tmp_path / "inf.npz")
    np.savez(tmp_path / "emptyarr.npz", X=np.ones((0, 2)), y=np.ones(0))
    with pytest.raises(ValueError, match="empty"):
        data.load(tmp_path / "emptyarr.npz")
    (tmp_path / "empty.npz").write_bytes(b"")
    with pytest.raises(ValueError, match="cannot read"):
        data.load(tmp_path / "empty.npz")
    (tmp_path / "d.txt").write_text("1,2\n")
    with pytest.raises(ValueError, match=".npz"):
        data.load(tmp_path / "d.txt")


def test_make_dataset_errors():
    with pytest.raises(ValueError, match="unknown data set"):
        data.make_dataset("mnist")
    with pytest.raises(ValueError, match="unknown options"):
        data.make_dataset("teacher", n_points=3)
    with pytest.raises(ValueError, match="unknown regression_1d target"):
        data.regression_1d(target="cube")
    with pytest.raises(ValueError, match="noise"):
        data.regression_1d(noise=-1.0)
    with pytest.raises(ValueError, match="n_train"):
        data.teacher(n_train=0)


def test_loader_errors_are_data_errors_that_say_where(tmp_path):
    """A user file's problems are DataError (exit status 4 on the command line), naming the
    file, the array and the first bad entry."""
    np.savez(tmp_path / "nan.npz", X=np.array([[0.1], [0.2], [np.nan]]), y=np.ones(3))
    with pytest.raises(data.DataError, match=r"nan.npz: X contains NaN or inf \(first at row 2"):
        data.load(tmp_path / "nan.npz")
    np.savez(tmp_path / "ynan.npz", X=np.ones((3, 1)), y=np.array([1.0, np.inf, 0.0]))
    with pytest.raises(data.DataError, match="y contains NaN or inf .first at row 1"):
        data.load(tmp_path / "ynan.npz")
    with pytest.raises(data.DataFileNotFoundError):
        data.load(tmp_path / "nope.csv")
    np.savez(tmp_path / "obj.npz", X=np.array([[1], "a"], dtype=object), y=np.ones(2))
    with pytest.raises(data.DataError, match="array X cannot be read"):
        data.load(tmp_path / "obj.npz")
    np.savez(tmp_path / "str.npz", X=np.array([["1"], ["2"]]), y=np.ones(2))
    with pytest.raises(data.DataError, match="not real numbers"):
        data.load(tmp_path / "str.npz")
    np.save(tmp_path / "single.npy", np.ones(3))
    (tmp_path / "single.npz").write_bytes((tmp_path / "single.npy").read_bytes())
    with pytest.raises(data.DataError, match="single array"):
        data.load(tmp_path / "single.npz")
    (tmp_path / "latin.csv").write_bytes(b"x,y\n1,\xe9\n")
    with pytest.raises(data.DataError, match="UTF-8"):
        data.load(tmp_path / "latin.csv")
    (tmp_path / "dir.csv").mkdir()
    with pytest.raises(data.DataError, match="folder"):
        data.load(tmp_path / "dir.csv")
    with pytest.raises(ValueError, match="n_train"):
        data.regression_1d(n_train="abc")


# --------------------------------------------------------------------------- fuzzing
# Random malformed files never escape as anything but DataError, and what loads is finite.

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

from support import examples  # noqa: E402

_dtypes = st.sampled_from(["f8", "f4", "i8", "u1", "b1", "c16", "U3", "O", "M8[s]"])
_arrays = st.builds(
    lambda dt, shape, fill, bad: _array(dt, shape, fill, bad), _dtypes,
    hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5),
    st.floats(-1e6, 1e6), st.sampled_from([None, np.nan, np.inf, -np.inf]))


def _array(dtype, shape, fill, bad):
    if dtype == "O":
        a = np.empty(shape, dtype=object)
        a[...] = fill
        return a
    a = np.full(shape, fill).astype(dtype) if dtype not in ("U3", "M8[s]") else (
        np.full(shape, "ab", dtype=dtype) if dtype == "U3" else np.zeros(shape, dtype))
    if bad is not None and a.size and dtype in ("f8", "f4", "c16"):
        a.flat[a.size // 2] = bad
    return a


def _check_loaded(ds):
    for a in (ds.X, ds.y, ds.X_test, ds.y_test):
        assert a.dtype == np.float64 and np.isfinite(a).all()
    assert ds.X.shape[0] == ds.y.shape[0] >= 1 and ds.X_test.shape[0] == ds.y_test.shape[0]


@settings(max_examples=examples(200), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(["X", "y", "z"]), _arrays, max_size=3))
def test_fuzz_npz_files_load_finite_or_raise_data_error(tmp_path_factory, arrays):
    path = tmp_path_factory.mktemp("fuzz") / "d.npz"
    np.savez(path, **arrays)
    try:
        ds = data.load(path)
    except data.DataError as e:
        assert str(e) and "\n" not in str(e)
        return
    _check_loaded(ds)


_cell = (st.floats(allow_nan=True, allow_infinity=True).map(repr)
         | st.integers(-10, 10).map(str) | st.sampled_from(["", " ", "x", "1e999", "nan",
                                                            "#", "1,2", '"3"']))
_lines = st.lists(st.lists(_cell, min_size=0, max_size=4).map(",".join), max_size=6)


@settings(max_examples=examples(200), deadline=None)
@given(_lines, st.booleans())
def test_fuzz_csv_files_load_finite_or_raise_data_error(tmp_path_factory, lines, header):
    path = tmp_path_factory.mktemp("fuzz") / "d.csv"
    path.write_text(("x,y\n" if header else "") + "\n".join(lines))
    try:
        ds = data.load(path)
    except data.DataError as e:
        assert str(e) and "\n" not in str(e)
        return
    _check_loaded(ds)


@settings(max_examples=examples(100), deadline=None)
@given(st.binary(max_size=300), st.sampled_from([".npz", ".csv"]))
def test_fuzz_binary_garbage_raises_data_error(tmp_path_factory, content, suffix):
    path = tmp_path_factory.mktemp("fuzz") / f"d{suffix}"
    path.write_bytes(content)
    try:
        ds = data.load(path)
    except data.DataError as e:
        assert str(e) and "\n" not in str(e)
        return
    _check_loaded(ds)
