"""The command line as a user meets it: `streamer ...` as a subprocess, real files.

Pipes and exit codes are the point: stdout carries only data, everything else goes to
stderr as one clear line, and the exit code tells the truth.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from streamer import __version__
from streamer.devtools.synth import synthesise
from tests.test_tickfile import truncated_sample, with_bad_lines

ROOT = Path(__file__).parents[2]


def streamer(*args: str, timeout: float = 180, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streamer.cli", *args], cwd=ROOT,
                          env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=timeout)


def json_lines(stdout: str) -> list[dict[str, object]]:
    """Every stdout line parsed as strict JSON (no NaN): fails on any other line."""
    def strict(token: str) -> None:
        raise ValueError(f"not strict JSON: {token}")
    return [json.loads(line, parse_constant=strict) for line in stdout.splitlines()]


def no_traceback(stderr: str) -> None:
    assert "Traceback" not in stderr, stderr[-3000:]


def test_version_prints_the_package_version() -> None:
    proc = streamer("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"streamer {__version__}"


def test_help_lists_every_command_and_names_nothing_internal() -> None:
    top = streamer("--help").stdout
    for command in ("run", "ingest", "calibrate", "replay", "serve-replay", "record", "synth",
                    "plot", "schema"):
        assert f"\n    {command}" in top, top
    internal = ("``", "MemorySink", "replay_file", "DynamicsTracker", "read_history",
                "synth_market", "synth_updates", "synth_deribit", "half_spread_vol",
                "AppConfig", "SurfaceUpdate", "core.hedging", "replay_servers")
    for command in ("", "run", "ingest", "calibrate", "replay", "serve-replay", "record",
                    "plot", "synth", "schema", "backtest", "view"):
        text = streamer(*([command] if command else []), "--help").stdout
        assert text, command
        assert not [name for name in internal if name in text], (command, text)
        if command:  # each command says what it does, not only its options
            after_usage = text.split("\n\n")[1]
            assert not after_usage.startswith(("positional arguments:", "options:")), command


@pytest.mark.parametrize(("args", "message"), [
    (["run", "--speed", "0"], "argument --speed: must be > 0"),
    (["run", "--speed", "-2"], "argument --speed: must be > 0"),
    (["run", "--duration", "-5"], "argument --duration: must be a number of seconds > 0"),
    (["record", "--underlying", "BTC", "--out", "x.ndjson", "--duration", "0"],
     "argument --duration: must be a number of seconds > 0"),
])
def test_a_zero_speed_or_a_negative_duration_is_refused_before_anything_starts(
        args: list[str], message: str) -> None:
    proc = streamer(*args, timeout=60)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize("what", ["surface", "config"])
def test_schema_is_strict_json(what: str) -> None:
    proc = streamer("schema", what)
    assert proc.returncode == 0
    def strict(token: str) -> None:
        raise ValueError(f"not strict JSON: {token}")
    schema = json.loads(proc.stdout, parse_constant=strict)
    assert schema["$defs"]


def test_replay_of_a_truncated_gzip_publishes_what_was_read_and_says_where_it_broke(
        tmp_path: Path) -> None:
    path = truncated_sample(tmp_path)
    proc = streamer("replay", str(path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    no_traceback(proc.stderr)
    rows = json_lines(proc.stdout)
    assert len(rows) > 10
    damaged = [line for line in proc.stderr.splitlines() if "damaged" in line]
    assert len(damaged) == 1
    assert f"{path} is damaged at line " in damaged[0]


def test_replay_skips_a_garbage_line_and_a_bad_timestamp_and_counts_them(
        tmp_path: Path) -> None:
    path = with_bad_lines(tmp_path, 3000, {100: b"garbage", 200: b"yesterday {}"})
    proc = streamer("replay", str(path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    no_traceback(proc.stderr)
    assert json_lines(proc.stdout)
    assert f"{path} line 101: bad_tickfile_line: garbage (skipped)" in proc.stderr
    assert f"{path} line 201: bad_timestamp: yesterday (skipped)" in proc.stderr
    assert ("3000 lines read, 2 bad lines skipped (bad_tickfile_line 1, bad_timestamp 1)"
            in proc.stderr)


def test_replay_whose_every_fit_is_refused_says_so_and_exits_1(tmp_path: Path) -> None:
    # It used to say "no surface to publish (is FILE a deribit recording?)": the file was
    # fine, the calibrator had refused every fit, and nothing said so.
    path = with_bad_lines(tmp_path, 3000, {})
    proc = streamer("replay", str(path), STREAMER_CALIBRATION__MAX_RMSE_VOL="0.00001")
    assert proc.returncode == 1
    no_traceback(proc.stderr)
    assert proc.stdout == ""
    last = proc.stderr.strip().splitlines()[-1]
    assert "fits refused: rmse_too_high" in last
    assert "FAILED: no surface to publish: every fit was refused (rmse_too_high" in last
    assert "calibration.max_rmse_vol is 1e-05" in last
    assert "recording?" not in last


def test_replay_of_a_mostly_garbage_file_stops_with_one_line_exit_1(tmp_path: Path) -> None:
    path = with_bad_lines(tmp_path, 200, {i: b"junk" for i in range(0, 200, 2)})
    proc = streamer("replay", str(path))
    assert proc.returncode == 1
    no_traceback(proc.stderr)
    assert "of the lines are bad (tickfile.max_bad_share)" in proc.stderr


def test_replay_of_another_venues_file_names_the_venue_and_replays_with_venue(
        tmp_path: Path) -> None:
    okx = tmp_path / "okx.ndjson"
    synthesise(okx, tmp_path / "okx.truth.json", duration_s=3.0, underlyings=("ETH",),
               venue="okx")
    proc = streamer("replay", str(okx))
    assert proc.returncode == 2
    no_traceback(proc.stderr)
    assert proc.stdout == ""
    assert (f"streamer: {okx} holds no deribit market data: it looks like a okx recording "
            "(--venue okx)") in proc.stderr
    proc = streamer("replay", str(okx), "--venue", "okx")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json_lines(proc.stdout)
    assert rows
    assert {r["venue"] for r in rows} == {"okx"}


def _listening_socket() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def test_a_metrics_port_in_use_is_one_line_naming_port_and_setting_exit_2() -> None:
    with _listening_socket() as busy:
        port = busy.getsockname()[1]
        proc = streamer("run", "--sink", "stdout", "--metrics-port", str(port),
                        "--duration", "30")
    assert proc.returncode == 2
    no_traceback(proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if str(port) in line]
    assert lines == [f"streamer: the metrics endpoint cannot listen on 127.0.0.1:{port}: "
                     "already in use; choose another port with metrics.port (--metrics-port, "
                     "STREAMER_METRICS__PORT) (0 = any free port)"]


def test_a_replay_port_in_use_is_one_line_naming_port_and_flag_exit_2(tmp_path: Path) -> None:
    recording = tmp_path / "deribit.ndjson"
    synthesise(recording, tmp_path / "truth.json", duration_s=1.0, underlyings=("ETH",))
    with _listening_socket() as busy:
        port = busy.getsockname()[1]
        proc = streamer("serve-replay", str(recording), "--port", str(port))
    assert proc.returncode == 2
    no_traceback(proc.stderr)
    assert proc.stderr.strip().splitlines()[-1] == (
        f"streamer: the replay server cannot listen on 127.0.0.1:{port}: already in use; "
        "choose another port with --port (0 = any free port)")


def test_run_with_sink_stdout_prints_only_json_lines_progress_on_stderr(tmp_path: Path) -> None:
    recording = tmp_path / "deribit.ndjson"
    synthesise(recording, tmp_path / "truth.json", duration_s=20.0)
    env = {"STREAMER_REPLAY__FILE": str(recording)}
    proc = streamer("run", "--sink", "stdout", "--metrics-port", "0", "--speed", "5", **env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json_lines(proc.stdout)
    assert rows
    assert all(r["schema_version"] == 1 for r in rows)
    assert "underlyings deribit:" in proc.stderr
    quiet = streamer("run", "--sink", "stdout", "--metrics-port", "0", "--speed", "5",
                     "--quiet", **env)
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    assert json_lines(quiet.stdout)
    assert "underlyings" not in quiet.stderr
