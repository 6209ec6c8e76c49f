"""Command line: ``mfjko run | report | compare | examples``.

- ``mfjko run CONFIG [--out DIR] [--set key=value ...] [--resume] [--overwrite]``: run every
  method of CONFIG against GD and write the run folder (mfjko.runner, mfjko.report).
- ``mfjko report DIR``: re-render figures and report.html from the stored results.
- ``mfjko compare DIR DIR... [--out DIR]``: overlay F(t) and the gaps of several runs.
- ``mfjko examples``: the shipped configs, one line each.

Invalid configs exit with status 2 and a message naming the key; an existing run folder
is never overwritten silently (status 3).
"""

from __future__ import annotations

from pathlib import Path

import typer
import yaml
from rich.console import Console

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Entropic JKO on fixed grids vs gradient descent for two-layer ReLU "
                       "networks in the mean-field regime.")
err = Console(stderr=True)
out = Console()


def examples_dir() -> Path:
    """The repository's configs/ folder (the package is installed editable from it)."""
    here = Path(__file__).resolve().parents[2] / "configs"
    return here if here.is_dir() else Path.cwd() / "configs"


@app.command()
def run(
    config: Path = typer.Argument(..., help="YAML config (see `mfjko examples`)"),
    out_dir: Path | None = typer.Option(None, "--out", help="run folder (default: config's out)"),
    set_: list[str] = typer.Option([], "--set", help="override, e.g. methods.jko.eps=0.01"),
    resume: bool = typer.Option(False, "--resume", help="continue an interrupted run"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing run folder"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="progress bars"),
):
    """Run every configured method against GD and write metrics, trajectories, report."""
    from mfjko.config import ConfigError, load_config
    from mfjko.runner import RunExistsError
    from mfjko.runner import run as run_

    if resume and overwrite:
        err.print("[red]error:[/red] --resume and --overwrite exclude each other")
        raise typer.Exit(2)
    try:
        cfg = load_config(config, set_)
        folder = run_(cfg, out_dir, resume=resume, overwrite=overwrite, progress=progress)
    except ConfigError as e:
        err.print(f"[red]config error:[/red] {e}", markup=True, highlight=False)
        raise typer.Exit(2) from None
    except RunExistsError as e:
        err.print(f"[red]error:[/red] {e}", highlight=False)
        raise typer.Exit(3) from None
    out.print(f"run folder: {folder}\nreport: {folder / 'report.html'}")


@app.command()
def report(run_dir: Path = typer.Argument(..., help="a run folder")):
    """Re-render figures and report.html of a run folder from its stored results."""
    from mfjko.report import render

    try:
        path = render(run_dir)
    except FileNotFoundError as e:
        err.print(f"[red]error:[/red] {e}", highlight=False)
        raise typer.Exit(2) from None
    out.print(f"report: {path}")


@app.command()
def compare(
    run_dirs: list[Path] = typer.Argument(..., help="two or more run folders"),
    out_dir: Path = typer.Option(Path("compare"), "--out", help="where compare.html goes"),
):
    """Overlay F(t) and the gaps to GD of several runs in one figure and page."""
    from mfjko.report import compare as compare_

    try:
        path = compare_(run_dirs, out_dir)
    except (FileNotFoundError, ValueError) as e:
        err.print(f"[red]error:[/red] {e}", highlight=False)
        raise typer.Exit(2) from None
    out.print(f"comparison: {path}")


@app.command()
def examples():
    """List the shipped configs with a one-line description each."""
    folder = examples_dir()
    files = sorted(folder.glob("*.yaml"))
    if not files:
        err.print(f"no configs found in {folder}")
        raise typer.Exit(1)
    for f in files:
        try:
            desc = (yaml.safe_load(f.read_text()) or {}).get("description", "")
        except yaml.YAMLError:
            desc = "(unreadable YAML)"
        out.print(f"{f.relative_to(folder.parent)}: {desc}", highlight=False, soft_wrap=True)


@app.command()
def sweep(
    spec: Path = typer.Argument(..., help="sweep YAML (base config + axes, see docs/STUDY.md)"),
    out_dir: Path | None = typer.Option(None, "--out", help="sweep folder"),
    workers: int = typer.Option(1, "--workers", min=1, help="local Dask worker processes"),
    scheduler: str | None = typer.Option(None, "--scheduler",
                                         help="address of a running Dask scheduler"),
    resume: bool = typer.Option(False, "--resume", help="skip the finished points"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing sweep"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="progress bar"),
):
    """Run every point of a sweep on Dask; write results.parquet and results.zarr."""
    from mfjko.config import ConfigError
    from mfjko.sweep import SweepExistsError, run_sweep

    try:
        folder = run_sweep(spec, out_dir, workers=workers, scheduler=scheduler, resume=resume,
                           overwrite=overwrite, progress=progress)
    except ConfigError as e:
        err.print(f"[red]config error:[/red] {e}", highlight=False)
        raise typer.Exit(2) from None
    except SweepExistsError as e:
        err.print(f"[red]error:[/red] {e}", highlight=False)
        raise typer.Exit(3) from None
    out.print(f"sweep folder: {folder}")


@app.command()
def study(sweep_dir: Path = typer.Argument(..., help="a finished sweep folder")):
    """Render a sweep's study: phase diagrams, regimes, fitted rates, study.html."""
    from mfjko.study.render import render_study

    try:
        page = render_study(sweep_dir)
    except FileNotFoundError as e:
        err.print(f"[red]error:[/red] {e}", highlight=False)
        raise typer.Exit(2) from None
    out.print(f"study: {page}")


if __name__ == "__main__":
    app()
