"""Results storage of one run folder, written incrementally and crash-consistently.

Layout of DIR: ``.mfjko-run`` (marker, written first), ``config.yaml``, ``metrics.csv``,
``trajectories.zarr/`` (per method: records, solver diagnostics, per-step figures),
``state/<method>.npz`` (checkpoints), ``timings.json``, ``figures/``, ``report.html``.
Every file is written durably (temporary name, fsync, rename, fsync of the folder),
zarr chunks and metadata included (:class:`DurableStore`). The checkpoint is the commit
point: it records the length of every array its method appended; arrays beyond it are
uncommitted, cut back on resume (:meth:`RunStore.truncate_to`) and invisible to readers
of :meth:`RunStore.committed_view`. ``docs/STORAGE.md`` states the protocol and its test;
its write points are counted by :data:`mfjko.faults.CRASH` (fault injection).
"""

from __future__ import annotations

import csv
import io as _io
import json
import math
import os
import re
import shutil
from pathlib import Path

import numpy as np
import yaml
import zarr
from zarr.storage import LocalStore

from mfjko.columns import METRIC_COLUMNS  # re-exported: its historical home
from mfjko.errors import RunFolderError
from mfjko.faults import (  # re-exported: their historical home (tests arm mfjko.io.CRASH)
    CRASH,
    CRASH_ENV,
    CRASH_EXIT_CODE,
    CrashPoints,
    SimulatedCrash,
)

__all__ = ["RunStore", "DurableStore", "METRIC_COLUMNS", "read_metrics", "atomic_write_text",
           "durable_write", "CRASH", "CrashPoints", "SimulatedCrash", "CRASH_ENV",
           "CRASH_EXIT_CODE", "RUN_MARKER", "RUN_FORMAT", "RUN_ENTRIES", "is_run_folder",
           "dimension_names", "open_run"]

#: the marker file that makes a folder a run folder (written before anything else)
RUN_MARKER = ".mfjko-run"
#: version of the run-folder layout, stored in the marker
RUN_FORMAT = 1
#: every entry a run writes at the top of its folder (--overwrite removes exactly these)
RUN_ENTRIES = (RUN_MARKER, "config.yaml", "metrics.csv", "trajectories.zarr", "state",
               "figures", "report.html", "timings.json")
#: temporary files of durable_write: ".<name>.<pid>.tmp"
_TMP = re.compile(r"^\..+\.\d+\.tmp$")


#: dimension names of the fixed arrays of trajectories.zarr
_FIXED_DIMS = {"data/X": ("sample", "input"), "data/y": ("sample",),
               "data/X_test": ("test_sample", "input"), "data/y_test": ("test_sample",),
               "init/particles": ("particle", "coord"), "init/p0": ("grid_point",),
               "jko/support": ("grid_point", "grid_coord")}
#: dimension names of a method's per-record arrays after the leading "record"
_RECORD_DIMS = {"t": (), "loss": (), "pred_train": ("sample",), "pred_test": ("test_sample",),
                "particles": ("saved_particle", "coord"),
                # GD's whole reference measure: init.m sampled particles, or the grid-matched
                # weighted particles (their own count, hence their own dimension)
                "support_full": ("reference_particle", "coord"),
                "weights_full": ("reference_particle",)}


def dimension_names(path: str, ndim: int) -> tuple[str, ...]:
    """The dimension names of the array ``path`` of trajectories.zarr (docs/STORAGE.md).

    Fixed arrays have their own (``data/X``: sample × input, ``jko/support``: grid_point ×
    grid_coord, ...); a method's records lead with ``record`` (``jko/weights``: record ×
    grid_point, ``gd/particles``: record × saved_particle × coord); its per-step
    diagnostics with ``<method>_step``. Anything else: ``<path>_<axis>`` names.
    """
    parts = path.split("/")
    generic = tuple(f"{path.replace('/', '_')}_{i}" for i in range(ndim))
    if path in _FIXED_DIMS:
        dims = _FIXED_DIMS[path]
    elif len(parts) >= 3 and parts[1] == "steps":
        dims = (f"{parts[0]}_step",) + generic[1:]
    elif len(parts) >= 3 and parts[1] == "diag":
        dims = ("record",) + generic[1:]
    elif len(parts) == 2 and parts[1] == "weights":
        dims = ("record", "grid_point" if parts[0] == "jko" else f"{parts[0]}_point")
        dims = dims + generic[2:]
    elif len(parts) == 2 and parts[1] in _RECORD_DIMS:
        dims = ("record",) + _RECORD_DIMS[parts[1]]
    else:
        dims = generic
    return dims if len(dims) == ndim else generic


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def durable_write(path: str | os.PathLike, data: bytes) -> None:
    """Replace ``path`` by ``data`` atomically and durably.

    The bytes go to ``.<name>.<pid>.tmp`` beside it, are fsync'ed, renamed over ``path``
    (atomic on POSIX) and the folder is fsync'ed, so after a crash the file holds either
    its old or its new content. The write point is just before the rename: a crash there
    leaves the new bytes under the temporary name and the old file in place (a crash
    before the temporary file is the previous write point's state without that file).

    Args:
      path: the file to write (its folder is created if missing).
      data: its new content.
    """
    path = Path(path)
    CRASH.alive()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    CRASH.hit(f"write {path}")
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """:func:`durable_write` of a UTF-8 text."""
    durable_write(path, text.encode("utf-8"))


def durable_delete(path: str | os.PathLike) -> None:
    """Remove a file, or a folder tree atomically.

    A folder is renamed to a temporary name first (one write point), so a crash leaves it
    whole or gone (a leftover temporary folder is
    removed by :meth:`RunStore.remove_temporaries`).
    """
    path = Path(path)
    CRASH.hit(f"delete {path}")
    if path.is_dir() and not path.is_symlink():
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        os.replace(path, tmp)
        _fsync_dir(path.parent)
        shutil.rmtree(tmp)
    else:
        path.unlink(missing_ok=True)


class DurableStore(LocalStore):
    """A zarr LocalStore whose writes are durable write points.

    A zarr LocalStore whose every write is :func:`durable_write` (fsync + rename) and
    whose writes and deletes are write points of :data:`CRASH`. Writes run in the calling
    event loop, one after the other, so the write points come in a reproducible order.
    """

    async def set(self, key: str, value) -> None:  # noqa: D102 — zarr's Store API
        if not self._is_open:
            await self._open()
        self._check_writable()
        durable_write(self.root / key, value.to_bytes())

    async def set_if_not_exists(self, key: str, value) -> None:  # noqa: D102
        if not (self.root / key).exists():
            await self.set(key, value)

    async def delete(self, key: str) -> None:  # noqa: D102
        self._check_writable()
        path = self.root / key
        if path.exists():
            durable_delete(path)

    async def delete_dir(self, prefix: str) -> None:  # noqa: D102
        self._check_writable()
        path = self.root / prefix
        if path.is_dir():
            durable_delete(path)


def _fmt(v) -> str:
    if isinstance(v, str):
        return v
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return repr(float(v))


def read_metrics(path) -> list[dict]:
    """metrics.csv as a list of dicts (floats; empty cells → NaN)."""
    rows = []
    with open(path, newline="") as fh:
        for r in csv.DictReader(fh):
            rows.append({k: (v if k == "method" else (float(v) if v != "" else math.nan))
                         for k, v in r.items()})
    return rows


def is_run_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds a run.

    It does if it holds the marker, or (runs written before the marker existed) a
    config.yaml with the ``config`` and ``provenance`` sections a run writes.
    """
    path = Path(path)
    if (path / RUN_MARKER).is_file():
        return True
    cfg = path / "config.yaml"
    if not cfg.is_file():
        return False
    try:
        doc = yaml.safe_load(cfg.read_text())
    except (yaml.YAMLError, OSError, UnicodeDecodeError):
        return False
    return isinstance(doc, dict) and "config" in doc and "provenance" in doc


class RunStore:
    """Reads and writes one run folder (module docstring).

    Args:
      root: the run folder.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.state_dir = self.root / "state"
        self.zarr_path = self.root / "trajectories.zarr"
        self.figures = self.root / "figures"
        self._group: zarr.Group | None = None
        self._arrays: dict[str, zarr.Array] = {}  # handles of appended arrays (writing)
        #: current length of every appended array written or truncated by this process
        self.lengths: dict[str, int] = {}
        #: committed lengths (path → frames) when reading a committed view, else None
        self.view: dict[str, int] | None = None

    # ------------------------------------------------------------------ folder
    def create(self) -> None:
        """Create the folder: the marker first, then state/, figures/ and the zarr group."""
        self.root.mkdir(parents=True, exist_ok=True)
        if not (self.root / RUN_MARKER).exists():
            durable_write(self.root / RUN_MARKER,
                          json.dumps({"format": RUN_FORMAT, "what": "mfjko run folder"})
                          .encode())
        self.state_dir.mkdir(exist_ok=True)
        self.figures.mkdir(exist_ok=True)
        self.group()

    def is_empty(self) -> bool:
        """Whether the folder holds nothing but temporary files of a killed write."""
        return not any(not _TMP.match(p.name) for p in self.root.iterdir())

    def foreign_entries(self) -> list[str]:
        """Names at the top of the folder that a run does not write.

        --overwrite refuses to delete a folder holding any.
        """
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir()
                      if p.name not in RUN_ENTRIES and not _TMP.match(p.name))

    def clear(self) -> None:
        """Delete the run's entries, and nothing else.

        Delete the run's entries (RUN_ENTRIES and temporary files), the marker last;
        anything else in the folder is left alone.
        """
        for p in sorted(self.root.iterdir()):
            if (p.name in RUN_ENTRIES or _TMP.match(p.name)) and p.name != RUN_MARKER:
                durable_delete(p)
        durable_delete(self.root / RUN_MARKER)
        self._group, self._arrays, self.lengths = None, {}, {}

    def remove_temporaries(self) -> None:
        """Delete what a killed write left.

        Temporary files and folders (``.<name>.<pid>.tmp``), then the folders of
        trajectories.zarr left empty, and its group or array folders without their
        zarr.json (a node killed before its metadata write, whose children zarr writes
        concurrently may exist): zarr would warn about both. Neither holds a committed
        frame, since a checkpoint commits only after every metadata write of its arrays.
        """
        for dirpath, dirs, files in os.walk(self.root):
            for f in files:
                if _TMP.match(f):
                    Path(dirpath, f).unlink(missing_ok=True)
            for d in [d for d in dirs if _TMP.match(d)]:
                shutil.rmtree(Path(dirpath, d))
                dirs.remove(d)
        if not self.zarr_path.is_dir():
            return
        for dirpath, dirs, files in os.walk(self.zarr_path):
            meta = Path(dirpath, "zarr.json")
            if "zarr.json" in files and json.loads(meta.read_text()).get("node_type") == "array":
                dirs.clear()  # an array's folders are its chunks
                continue
            for d in list(dirs):
                if not Path(dirpath, d, "zarr.json").exists():
                    shutil.rmtree(Path(dirpath, d))
                    dirs.remove(d)
        for dirpath, _dirs, _files in os.walk(self.zarr_path, topdown=False):
            if Path(dirpath) != self.zarr_path and not any(os.scandir(dirpath)):
                os.rmdir(dirpath)

    def group(self, mode: str = "a") -> zarr.Group:
        """The zarr root group (cached for writing)."""
        if mode == "r":
            return zarr.open_group(store=LocalStore(self.zarr_path, read_only=True), mode="r")
        if self._group is None:
            self._group = zarr.open_group(store=DurableStore(self.zarr_path), mode="a")
        return self._group

    # ------------------------------------------------------------------ config
    def write_config(self, doc: dict) -> None:
        """Write config.yaml (durably)."""
        atomic_write_text(self.root / "config.yaml",
                          yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))

    def read_config(self) -> dict:
        """Read config.yaml."""
        return yaml.safe_load((self.root / "config.yaml").read_text())

    # ------------------------------------------------------------------ arrays
    def put(self, path: str, array) -> None:
        """Store a fixed array (overwritten if present)."""
        g = self.group()
        a = np.asarray(array)
        if path in g:
            del g[path]
        arr = g.create_array(path, shape=a.shape, dtype=a.dtype,
                             chunks=a.shape if a.ndim else None, attributes={"fixed": True},
                             dimension_names=dimension_names(path, a.ndim))
        arr[...] = a

    def append(self, path: str, frame) -> None:
        """Append one frame (a record) along a new leading axis."""
        self.extend(path, np.asarray(frame)[None])

    def extend(self, path: str, frames) -> None:
        """Append several frames (n, ...) along the leading axis."""
        a = np.asarray(frames)
        if a.shape[0] == 0:
            return
        arr = self._arrays.get(path)
        if arr is None:
            g = self.group()
            if path in g:
                arr = g[path]
            else:
                chunks = (max(1, min(64, int(2**22 // max(a[0].size * 8, 1)))),) + a.shape[1:]
                arr = g.create_array(path, shape=(0,) + a.shape[1:], dtype=a.dtype,
                                     chunks=chunks, dimension_names=dimension_names(path, a.ndim))
            self._arrays[path] = arr
        arr.append(a, axis=0)
        self.lengths[path] = int(arr.shape[0])

    def get(self, path: str) -> np.ndarray:
        """The array at ``path`` (in a committed view: its committed frames only)."""
        arr = self.group("r")[path]
        if self.view is not None and not arr.attrs.get("fixed", False):
            return np.asarray(arr[: self.view[path]])
        return np.asarray(arr[...])

    def has(self, path: str) -> bool:
        """Whether ``path`` exists (in a committed view: holds a committed array)."""
        if not (self.zarr_path / "zarr.json").exists():
            return False
        g = self.group("r")
        if path not in g:
            return False
        if self.view is None:
            return True
        return bool(g[path].attrs.get("fixed", False)) or path in self.view

    def appended_arrays(self, prefix: str) -> dict[str, zarr.Array]:
        """Every non-fixed array under ``prefix`` (path → array)."""
        g = self.group()
        if prefix not in g:
            return {}
        out = {}

        def visit(node, path):
            for name, arr in node.arrays():
                if not arr.attrs.get("fixed", False):
                    out[f"{path}/{name}"] = arr
            for name, sub in node.groups():
                visit(sub, f"{path}/{name}")

        visit(g[prefix], prefix)
        return out

    def truncate_to(self, prefix: str, lengths: dict[str, int]) -> None:
        """Undo what was written after a checkpoint.

        Cut every appended array under ``prefix`` to its committed length, delete those the
        checkpoint does not list.
        """
        g = self.group()
        for path, arr in self.appended_arrays(prefix).items():
            keep = lengths.get(path)
            self._arrays.pop(path, None)
            if keep is None:
                del g[path]
                self.lengths.pop(path, None)
                continue
            if arr.shape[0] > keep:
                arr.resize((keep,) + arr.shape[1:])
            self.lengths[path] = int(min(keep, arr.shape[0]))

    def truncate(self, prefix: str, n_records: int, n_steps: int | None = None) -> None:
        """Truncate for checkpoints without committed lengths (format 0).

        Checkpoints without committed lengths (format 0): cut arrays under
        ``prefix/steps`` to ``n_steps`` frames and the others to ``n_records``.
        """
        lengths = {}
        for path, arr in self.appended_arrays(prefix).items():
            keep = n_steps if "/steps/" in path else n_records
            lengths[path] = arr.shape[0] if keep is None else min(keep, arr.shape[0])
        self.truncate_to(prefix, lengths)

    def lengths_under(self, prefix: str) -> dict[str, int]:
        """Current lengths of the arrays this process appended under ``prefix``."""
        return {p: n for p, n in self.lengths.items() if p.startswith(prefix + "/")}

    def committed_view(self) -> RunStore:
        """A reader of the committed state.

        Appended arrays are cut to the lengths their method's checkpoint committed; those of
        methods without one are hidden.
        Checkpoints without lengths (format 0) commit their arrays' full lengths.
        """
        view = RunStore(self.root)
        committed: dict[str, int] = {}
        for method, ck in self.checkpoints().items():
            if ck.get("lengths") is not None:
                committed.update(ck["lengths"])
            elif self.has(method):
                g = self.group("r")
                arrays = {}

                def visit(node, path, arrays=arrays):
                    for name, arr in node.arrays():
                        arrays[f"{path}/{name}"] = arr.shape[0] if arr.ndim else 1
                    for name, sub in node.groups():
                        visit(sub, f"{path}/{name}")

                visit(g[method], method)
                committed.update(arrays)
        view.view = committed
        return view

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, method: str, *, segments: int, state: dict, rows: list[dict],
                        seconds: float, n_steps: int, notes: list[str] = (),
                        lengths: dict[str, int] | None = None) -> None:
        """Commit a method's progress (the commit point of the protocol).

        Args:
          method: the method's name.
          segments: recording intervals done.
          state: the stepper's state arrays.
          rows: its metrics rows so far.
          seconds: wall-clock seconds spent.
          n_steps: steps made.
          notes: solver warnings and failures.
          lengths: path → frames of every array the method appended (the committed
            lengths).
        """
        payload = {f"state__{k}": np.asarray(v) for k, v in state.items()}
        payload["segments"] = np.asarray(segments)
        payload["seconds"] = np.asarray(seconds)
        payload["n_steps"] = np.asarray(n_steps)
        payload["rows"] = np.asarray(json.dumps(rows))
        payload["notes"] = np.asarray(json.dumps(list(notes)))
        if lengths is not None:
            payload["lengths"] = np.asarray(json.dumps(lengths, sort_keys=True))
        buf = _io.BytesIO()
        np.savez(buf, **payload)
        self.state_dir.mkdir(exist_ok=True)
        durable_write(self.state_dir / f"{method}.npz", buf.getvalue())

    def load_checkpoint(self, method: str) -> dict | None:
        """The checkpoint of ``method`` (None if it has none)."""
        path = self.state_dir / f"{method}.npz"
        if not path.exists():
            return None
        with np.load(path) as z:
            state = {k.removeprefix("state__"): np.array(z[k]) for k in z.files
                     if k.startswith("state__")}
            return {
                "segments": int(z["segments"]),
                "seconds": float(z["seconds"]),
                "n_steps": int(z["n_steps"]),
                "rows": json.loads(str(z["rows"])),
                "notes": json.loads(str(z["notes"])) if "notes" in z.files else [],
                "lengths": json.loads(str(z["lengths"])) if "lengths" in z.files else None,
                "state": state,
            }

    def checkpoints(self) -> dict[str, dict]:
        """Every method's checkpoint (method → :meth:`load_checkpoint`)."""
        out = {}
        if self.state_dir.exists():
            for p in sorted(self.state_dir.glob("*.npz")):
                if p.name.startswith("."):
                    continue
                out[p.stem] = self.load_checkpoint(p.stem)
        return out

    # ------------------------------------------------------------------ metrics
    def write_metrics(self, rows_by_method: dict[str, list[dict]], order: list[str]) -> None:
        """Rewrite metrics.csv (durably) from every method's rows, methods in ``order``."""
        buf = _io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(METRIC_COLUMNS)
        for m in order:
            for r in rows_by_method.get(m, []):
                w.writerow([_fmt(r.get(c)) for c in METRIC_COLUMNS])
        atomic_write_text(self.root / "metrics.csv", buf.getvalue())

    def write_timings(self, timings: dict) -> None:
        """Write timings.json: wall-clock seconds per method."""
        atomic_write_text(self.root / "timings.json", json.dumps(timings, indent=2))

    def read_timings(self) -> dict:
        """timings.json as a dict (empty if absent)."""
        p = self.root / "timings.json"
        return json.loads(p.read_text()) if p.exists() else {}


def open_run(run_dir):
    """The committed arrays of a run folder's trajectories.zarr as an xarray Dataset.

    One variable per array, named by its path (``gd/loss``, ``jko/weights``,
    ``jko/steps/t``, ``data/X``, ...), with the dimension names stored in the zarr arrays
    (:func:`dimension_names` for runs written before they were). Arrays cut by an
    interrupted run keep only their committed frames; where a method has fewer records
    than the others, its ``record`` dimension is named ``<method>_record``.

    Args:
      run_dir: a run folder.

    Returns:
      The Dataset; the run's parametrization and mass_outside are its attributes.
    """
    import xarray as xr  # only open_run needs it (start-up cost)

    store = RunStore(run_dir)
    if not (store.zarr_path / "zarr.json").exists():
        raise RunFolderError(f"{run_dir} has no trajectories.zarr: not a run folder")
    view = store.committed_view()
    root = view.group("r")
    paths = []

    def visit(node, prefix):
        for name, _ in node.arrays():
            paths.append(f"{prefix}{name}")
        for name, sub in node.groups():
            visit(sub, f"{prefix}{name}/")

    visit(root, "")
    variables, sizes = {}, {}
    for path in sorted(paths):
        arr = root[path]
        fixed = bool(arr.attrs.get("fixed", False))
        if not fixed and path not in view.view:
            continue  # a method without a checkpoint: nothing committed
        data = view.get(path)
        dims = tuple(getattr(arr.metadata, "dimension_names", None) or ())
        if len(dims) != data.ndim or not all(dims):
            dims = dimension_names(path, data.ndim)
        if dims and dims[0] == "record" and sizes.setdefault("record", data.shape[0]) != \
                data.shape[0]:
            dims = (f"{path.split('/')[0]}_record",) + dims[1:]
        variables[path] = xr.Variable(dims, data)
    ds = xr.Dataset(variables)
    ds.attrs.update({k: v for k, v in root.attrs.items()})
    return ds
