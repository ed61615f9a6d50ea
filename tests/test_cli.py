"""The ``guardtrain`` command and its JOB files, end to end.

Pure tier: the JOB parser and the error paths, through ``cli.main`` in this process (no
training). TF tier: the installed console script in a subprocess on the example job
(``examples/tiny-job.yaml`` with its data generated into a temp dir): ``check`` passing
and failing, ``fit`` rescuing a stall, ``fit`` stopping with rescue off, ``report --png``,
and the demo. Ray tier: ``fit --workers 2`` on the local two-node cluster.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from guardtrain.core import errors
from guardtrain.interface import cli
from guardtrain.interface.jobfile import parse_job, parse_override

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
JOB = EXAMPLES / "tiny-job.yaml"


def _make_data(folder: Path, **kwargs) -> Path:
    spec = importlib.util.spec_from_file_location("make_tiny_data", EXAMPLES / "make_tiny_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.write(folder, **kwargs)


@pytest.fixture(scope="module")
def npz(tmp_path_factory) -> Path:
    return _make_data(tmp_path_factory.mktemp("data"))


def _data_args(npz: Path) -> list[str]:
    return ["--set", f"data.npz={npz}", "--set", f"validation.npz={npz}"]


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _main(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def _console(*argv, cwd: Path, env: dict | None = None, timeout: float = 300):
    """Runs the installed ``guardtrain`` script (the entry point pyproject declares)."""
    script = Path(sys.executable).with_name("guardtrain")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "guardtrain.interface.cli"]
    run_env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **(env or {}))
    return subprocess.run(cmd + [str(a) for a in argv], cwd=cwd, env=run_env,
                          capture_output=True, text=True, timeout=timeout)


# -- pure: help, usage, the JOB parser ----------------------------------------------------

@pytest.mark.pure
def test_help_lists_commands_and_the_exit_code_of_every_error_family(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for command in ("check", "fit", "report", "demo"):
        assert command in text
    table = dict(cli.EXIT_CODES)
    for family in (errors.ConfigError, errors.InputSpecError, errors.UnhealthyTrainingError,
                   errors.LaunchError, errors.RescueExhaustedError):
        assert family.__name__ in table[family.exit_code]
        assert f"{family.exit_code}  " in text
    assert table[0].startswith("success")


@pytest.mark.pure
@pytest.mark.parametrize("argv", [["fit"], ["frobnicate"], ["fit", "job.yaml", "--workers", "-1"]])
def test_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    assert "usage:" in capsys.readouterr().err


@pytest.mark.pure
def test_unknown_job_keys_are_errors_with_the_nearest_key(tmp_path, capsys):
    job = _write(tmp_path / "job.yaml", """
model: tiny_model:build_model
data: {npz: tiny.npz}
epoch: 3
guard: {windw_steps: 50}
launch: {worker: 2}
""")
    code, _, err = _main(capsys, "check", job)
    assert code == 2
    assert "[GT131] 3 problems in" in err
    assert "epoch: unknown key" in err and "did you mean 'epochs'?" in err
    assert "guard.windw_steps: unknown key" in err and "did you mean 'window_steps'?" in err
    assert "launch.worker: unknown key" in err and "did you mean 'workers'?" in err
    assert "Traceback" not in err


@pytest.mark.pure
def test_unknown_key_given_by_set_is_caught_too(capsys):
    code, _, err = _main(capsys, "check", JOB, "--set", "guard.window_step=50")
    assert code == 2
    assert "guard.window_step: unknown key" in err and "did you mean 'window_steps'?" in err


@pytest.mark.pure
@pytest.mark.parametrize("text, needle", [
    ("guard.window_steps", "expected key=value"),
    ("=3", "expected key=value"),
    ("data.npz.inner=1", "data.npz is"),
])
def test_malformed_set_is_a_config_error(text, needle, capsys):
    code, _, err = _main(capsys, "check", JOB, "--set", text)
    assert code == 2
    assert "GT135" in err and needle in err


@pytest.mark.pure
def test_set_values_are_yaml_scalars_and_reach_the_configs():
    spec = parse_job(JOB, ["epochs=2", "guard.window_steps=16", "guard.stall_update_ratio=1e-6",
                           "model.args.units=8", "rescue=false", "launch.cpu_replicas=2"])
    assert spec.fit_args["epochs"] == 2
    assert spec.guard.window_steps == 16
    assert spec.guard.stall_update_ratio == 1e-6      # YAML 1.1 would read "1e-6" as text
    assert spec.raw["model"]["args"]["units"] == 8
    assert spec.rescue is False
    assert spec.launch.cpu_replicas == 2
    assert parse_override("run_dir=null") == (("run_dir",), None)


@pytest.mark.pure
def test_the_config_sections_map_one_to_one_to_the_dataclasses(tmp_path):
    job = _write(tmp_path / "job.yaml", """
model: m:f
data: {npz: d.npz}
guard: {warmup_steps: 5, window_steps: 20}
rescue: {max_attempts: 2, optimizer_ladder: [adam, sgd]}
launch: {workers: 3, gpus_per_worker: 1, address: auto}
""")
    spec = parse_job(job)
    assert (spec.guard.warmup_steps, spec.guard.window_steps) == (5, 20)
    assert spec.rescue.max_attempts == 2 and spec.rescue.optimizer_ladder == ("adam", "sgd")
    assert (spec.launch.workers, spec.launch.gpus_per_worker, spec.launch.address) == (3, 1, "auto")


@pytest.mark.pure
def test_bad_values_are_all_listed_with_the_dataclass_messages(tmp_path, capsys):
    job = _write(tmp_path / "job.yaml", """
model: m:f
data: {npz: d.npz}
batch_size: 0
guard: {window_steps: 3}
launch: {workers: -1}
""")
    code, _, err = _main(capsys, "check", job)
    assert code == 2
    assert "3 problems" in err
    assert "batch_size: expected an int >= 1, found 0" in err
    assert "GuardConfig(window_steps=3)" in err and "[GT110]" in err
    assert "LaunchConfig(workers=...)" in err


@pytest.mark.tf   # resolving tiny_model imports keras
@pytest.mark.parametrize("model, needle", [
    ("tiny_model.build_model", "expected an import path 'package.module:function'"),
    ("tiny_modle:build_model", "no module named 'tiny_modle'"),
    ("tiny_model:build", "'tiny_model' has no attribute 'build'"),
])
def test_a_bad_import_path_gives_a_clear_error(model, needle, npz, tmp_path, capsys):
    job = _write(tmp_path / "job.yaml", f"""
model: {model}
data: {{npz: {npz}, x: x_train, y: y_train}}
""")
    (tmp_path / "tiny_model.py").write_text((EXAMPLES / "tiny_model.py").read_text())
    code, _, err = _main(capsys, "check", job)
    assert code == 2
    assert "[GT134]" in err and needle in err and "1 problem in" in err
    if "modle" in model:
        assert "did you mean 'tiny_model'?" in err
    if model.endswith(":build"):
        assert "did you mean 'tiny_model:build_model'?" in err
    assert "Traceback" not in err


@pytest.mark.pure
def test_a_module_that_raises_on_import_names_the_line(tmp_path, capsys):
    (tmp_path / "broken.py").write_text("x = 1\nraise RuntimeError('no GPU here')\n")
    job = _write(tmp_path / "job.yaml", "model: broken:build\ndata: {npz: d.npz}\n")
    code, _, err = _main(capsys, "check", job)
    assert code == 2
    assert "importing 'broken' raised RuntimeError: no GPU here" in err
    assert "broken.py, line 2" in err


@pytest.mark.pure
def test_nothing_in_a_job_file_is_evaluated(tmp_path, capsys):
    marker = tmp_path / "pwned"
    job = _write(tmp_path / "job.yaml",
                 f"model: !!python/object/apply:os.system ['touch {marker}']\ndata: {{}}\n")
    code, _, err = _main(capsys, "check", job)
    assert code == 2 and "[GT130]" in err and "not valid YAML" in err
    assert not marker.exists()


@pytest.mark.pure
def test_npz_object_arrays_are_refused_not_unpickled(tmp_path, capsys):
    np.savez(tmp_path / "d.npz", x=np.array([{"a": 1}, None], dtype=object), y=np.zeros(2))
    (tmp_path / "m.py").write_text("def f():\n    return None\n")
    job = _write(tmp_path / "job.yaml", "model: m:f\ndata: {npz: d.npz}\n")
    code, _, err = _main(capsys, "check", job)
    assert code == 2
    assert "[GT136]" in err and "object arrays, which would need unpickling" in err


@pytest.mark.pure
def test_missing_arrays_and_files_are_named(tmp_path, capsys):
    np.savez(tmp_path / "d.npz", features=np.zeros((4, 2)), labels=np.zeros(4))
    (tmp_path / "m.py").write_text("def f():\n    return None\n")
    job = _write(tmp_path / "job.yaml", "model: m:f\ndata: {npz: d.npz, x: feature}\n"
                                        "validation: {npz: nowhere.npz}\n")
    code, _, err = _main(capsys, "check", job)
    assert code == 2
    assert "data.x: no array 'feature' in d.npz" in err and "did you mean 'features'?" in err
    assert "data.y: no array 'y' in d.npz" in err
    assert "validation.npz: no file" in err


@pytest.mark.pure
def test_duplicate_keys_and_missing_sections(tmp_path, capsys):
    job = _write(tmp_path / "job.yaml", "epochs: 1\nepochs: 2\n")
    code, _, err = _main(capsys, "check", job)
    assert code == 2 and "found the key 'epochs' twice" in err
    job = _write(tmp_path / "job2.yaml", "epochs: 1\n")
    code, _, err = _main(capsys, "check", job)
    assert code == 2 and "model: required key missing" in err and "data: required key" in err


@pytest.mark.pure
def test_report_of_a_folder_that_is_not_a_run(tmp_path, capsys):
    code, _, err = _main(capsys, "report", tmp_path)
    assert code == 2 and "[GT140]" in err


# -- TF tier: the console script on the example job --------------------------------------

@pytest.mark.tf   # the example JOB splits the CPU, which loads TensorFlow
def test_fit_refuses_a_run_dir_that_is_not_empty_before_reading_the_data(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "history").mkdir(parents=True)
    (run / "events.jsonl").write_text("")
    code, out, err = _main(capsys, "fit", JOB, "--set", "data.npz=nowhere.npz",
                           "--run-dir", run)
    assert code == 2, err
    assert "[GT152]" in err and "events.jsonl, history/ (0 files)" in err
    assert "Fix:" in err and "--resume" in err
    assert "nowhere.npz" not in err                   # refused before the data is read



@pytest.mark.tf
def test_check_passes_on_the_example_job(npz, tmp_path):
    out = _console("check", JOB, *_data_args(npz), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "[check] OK  2,560 samples (arrays), batch 64" in out.stdout


@pytest.mark.tf
def test_check_reads_the_parquet_example(tmp_path, capsys):
    npz = _make_data(tmp_path, parquet=True)
    code, out, err = _main(capsys, "check", EXAMPLES / "tiny-parquet-job.yaml",
                           "--set", f"data.parquet={tmp_path}/tiny-*.parquet",
                           "--set", f"validation.npz={npz}")
    assert code == 0, err
    assert "[check] OK  2,560 samples (parquet)" in out


@pytest.mark.tf
def test_check_fails_with_exit_3_and_every_problem(npz, tmp_path):
    (tmp_path / "cnn.py").write_text(
        "import keras\n\n"
        "def build():\n"
        "    model = keras.Sequential([keras.Input((2, 2, 2)), keras.layers.Conv2D(4, 1),\n"
        "                              keras.layers.Flatten(), keras.layers.Dense(3)])\n"
        "    model.compile(optimizer='adam', loss=keras.losses.SparseCategoricalCrossentropy("
        "from_logits=True))\n"
        "    return model\n")
    job = _write(tmp_path / "job.yaml", f"model: cnn:build\n"
                                        f"data: {{npz: {npz}, x: x_train, y: y_train}}\n")
    out = _console("check", job, cwd=tmp_path)
    assert out.returncode == errors.InputSpecError.exit_code == 3, out.stderr
    assert "[GT201]" in out.stderr and "x.reshape(-1, 2, 2, 2)" in out.stderr   # 8 = 2*2*2
    assert "[GT205]" in out.stderr                       # labels 0..3 for 3 outputs
    assert "Traceback" not in out.stderr


@pytest.mark.tf
def test_fit_rescues_a_stall_then_report_draws_it(npz, tmp_path):
    run = tmp_path / "run"
    out = _console("fit", JOB, *_data_args(npz), "--set", "model.args.learning_rate=1e-6",
                   "--run-dir", run, cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    text = out.stdout
    assert "[rescue] ADJUST  attempt 2 of 4" in text and "reason: STALLED" in text
    assert "guardtrain run: rescued" in text
    assert "on this process, 2 logical CPUs" in text
    assert f"run dir: {run}" in text and (run / "report.png").exists()

    png = tmp_path / "look.png"
    out = _console("report", run, "--png", png, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "RESCUED (healthy after 1 rescue)" in out.stdout
    assert "STALLED" in out.stdout and "evidence" in out.stdout
    _assert_readable_png(png)


def _assert_readable_png(path: Path) -> None:
    from PIL import Image

    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == (1100, 1050)
        pixels = np.asarray(image.convert("RGB"), dtype=np.int32)
    not_white = (pixels < 245).any(axis=2).mean()
    assert 0.05 < not_white < 0.8, not_white                     # drawn, not blank, not a blot
    red = ((pixels[..., 0] > 200) & (pixels[..., 1] < 60) & (pixels[..., 2] < 60)).sum()
    assert red > 500, red                                        # the rescue marker
    assert len(np.unique(pixels.reshape(-1, 3) // 32, axis=0)) > 12   # several colours


@pytest.mark.tf
def test_fit_with_rescue_off_stops_with_exit_4_and_reports(npz, tmp_path):
    run = tmp_path / "run"
    out = _console("fit", JOB, *_data_args(npz), "--set", "model.args.learning_rate=1e-6",
                   "--set", "rescue=false", "--set", "epochs=2", "--run-dir", run,
                   cwd=tmp_path)
    assert out.returncode == errors.UnhealthyTrainingError.exit_code == 4, out.stderr[-2000:]
    assert "[GT301] STALLED" in out.stderr and "Fix:" in out.stderr
    assert "FAILED" in out.stdout                                # the report of what ran
    assert (run / "report.png").exists()


@pytest.mark.tf
def test_demo_shows_the_three_situations(tmp_path, capsys):
    code, out, _ = _main(capsys, "demo", "--run-root", tmp_path)
    assert code == 0
    assert "[GT201]" in out and "x.reshape(-1, 8, 8, 1)" in out
    summary = out.split("summary (")[1]
    assert "refused before start: GT201" in summary
    assert "STALLED at step" in summary and "lr 1.0e-06 ->" in summary
    assert "OSCILLATING at step" in summary or "DIVERGED at step" in summary
    assert len(list(tmp_path.glob("demo-*/*/report.png"))) == 3


# -- Ray tier --------------------------------------------------------------------------------

@pytest.mark.ray
def test_fit_on_two_ray_workers(ray_cluster, npz, tmp_path):  # noqa: F811
    if importlib.util.find_spec("guardtrain.ray.runner") is None:
        pytest.skip("gt.fit(launch=LaunchConfig(workers=2)) has not landed (guardtrain.ray.runner)")
    run = tmp_path / "run"
    # One epoch = 40 steps: exactly the guard's warm-up (10) + window (30), so the run is
    # judged (healthy) once, at its end, and validated once. Starting the workers is most
    # of the cost; more epochs would prove nothing more here.
    out = _console("fit", JOB, *_data_args(npz), "--workers", 2, "--address", ray_cluster,
                   "--set", "epochs=1", "--run-dir", run, cwd=tmp_path,
                   env={"RAY_AUTH_MODE": "token"}, timeout=600)   # token path: the fixture's
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "launch.cpu_replicas 2 dropped" in out.stdout and "on 2 Ray workers at" in out.stdout
    assert "sending tiny_model to the workers by value" in out.stdout
    assert "guardtrain run: healthy" in out.stdout
    assert (run / "report.png").exists() and (run / "model.keras").exists()
