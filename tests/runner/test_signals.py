"""SIGINT and SIGTERM stop a run at a safe point (the next record, after its checkpoint),
say how to resume and exit 130; the resumed run equals the uninterrupted one (issue 10.6).
The signal goes to a real process; a second signal stops it at once."""

import importlib
import os
import signal
import subprocess
import sys
import time

import pytest
from runs_support import assert_same_results, crash_raw, write_config

from mfjko.config import parse_config
from mfjko.runner import RunStopped, run
from mfjko.runner import recorder as recorder_mod

run_mod = importlib.import_module("mfjko.runner.run")  # the module (the package exports run())


def _start(config, folder):
    cmd = [sys.executable, "-m", "mfjko.cli", "run", str(config), "--out", str(folder),
           "--no-progress"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(path, proc, timeout=600.0):
    """Poll until the run has committed ``path`` (its progress, not a guessed delay)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)


@pytest.mark.slow
def test_sigint_stops_at_a_record_and_resume_completes(crash_reference, tmp_path):
    ref, _ = crash_reference
    config, folder = write_config(tmp_path, crash_raw()), tmp_path / "run"
    proc = _start(config, folder)
    _wait_for(folder / "state" / "gd.npz", proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 130, err
    lines = err.strip().splitlines()
    assert "Traceback" not in err and len(lines) == 2, err
    assert lines[0].startswith("SIGINT: stopping after the current recording interval")
    assert lines[1].startswith("interrupted at t = ")
    assert f"resume with: mfjko run {config} --out {folder} --resume" in lines[1]
    run(parse_config(crash_raw()), folder, resume=True, progress=False, render=False)
    assert_same_results(folder, ref)


def test_sigterm_stops_after_the_record_it_interrupts(crash_reference, tmp_path,
                                                       monkeypatch):
    """SIGTERM during JKO's second record: that record is committed, then the run stops."""
    ref, _ = crash_reference
    folder = tmp_path / "run"
    record = recorder_mod.Recorder.record
    calls = []

    def record_and_signal(self, name, kind, i, rec):
        calls.append((name, i))
        if (name, i) == ("jko", 1):
            os.kill(os.getpid(), signal.SIGTERM)
        return record(self, name, kind, i, rec)

    monkeypatch.setattr(recorder_mod.Recorder, "record", record_and_signal)
    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(RunStopped) as info:
        run(parse_config(crash_raw()), folder, progress=False, render=False)
    assert signal.getsignal(signal.SIGTERM) is previous  # handlers restored
    assert (info.value.method, info.value.t, info.value.done) == ("jko", 0.2, ("gd",))
    rows = (folder / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["gd"] * 3 + ["jko"] * 2
    monkeypatch.setattr(recorder_mod.Recorder, "record", record)
    run(parse_config(crash_raw()), folder, resume=True, progress=False, render=False)
    assert_same_results(folder, ref)


def test_a_second_signal_stops_at_once(monkeypatch, capfd):
    """The handler: the first signal asks for a stop at the next record; a second one ends
    the process at once with status 130 (what is on disk is crash-consistent: see
    test_crash.py) and says how to resume."""
    exits = []
    monkeypatch.setattr(run_mod.os, "_exit", exits.append)
    stop = run_mod._StopFlag("resume with: mfjko run c.yaml --out r --resume")
    stop(signal.SIGTERM, None)
    assert stop.signum == signal.SIGTERM and exits == []
    stop(signal.SIGINT, None)
    assert exits == [130]
    err = capfd.readouterr().err
    assert "SIGTERM: stopping after the current recording interval" in err
    assert "SIGINT again: stopped now" in err and "resume with: mfjko run" in err
