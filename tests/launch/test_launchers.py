"""The cluster launchers (launch/): dry runs print the right commands, bad usage is a one-line error, and
launch/local.sh really starts cooperating processes (cross-process collectives on CPU), stops them all when one
fails and forwards SIGTERM."""
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LOCAL = os.path.join(ROOT, "launch", "local.sh")
TPU = os.path.join(ROOT, "launch", "tpu_vm.sh")
SLURM = os.path.join(ROOT, "launch", "slurm.sbatch")
GPU_BENCH = os.path.join(ROOT, "launch", "gpu_bench.sh")
BASH = shutil.which("bash")

# ARGS that must come through verbatim: a space, a quote, shell metacharacters.
ARGS = ["--config=configs/imagenet_lt.py:ltkd,resnet34-resnet18,10", "--workdir=gs://bucket/runs/inet ltkd",
        "--config.dataset.data_dir=gs://bucket/it's data", "--config.batch_size=512", "--config.note=$HOME;*"]
LOCAL_ARGS = [arg.replace("gs://bucket/runs", "/tmp/runs") for arg in ARGS]


def launch(script, *args, env=None, timeout=60, **kwargs):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    for key, value in (env or {}).items():  # None: unset
        if value is None:
            full_env.pop(key, None)
        else:
            full_env[key] = value
    return subprocess.run([BASH, script, *args], capture_output=True, text=True, env=full_env, timeout=timeout,
                          **kwargs)


def command_lines(stdout):
    return [shlex.split(line) for line in stdout.splitlines() if line.strip() and not line.startswith("#")]


def split_env(tokens):
    """`env A=1 B=2 cmd ...` -> ({A: 1, B: 2}, [cmd, ...])."""
    assignments = {}
    if tokens and tokens[0] == "env":
        tokens = tokens[1:]
        while tokens and "=" in tokens[0] and not tokens[0].startswith("-"):
            key, value = tokens[0].split("=", 1)
            assignments[key] = value
            tokens = tokens[1:]
    return assignments, tokens


def assert_usage_error(result, prog):
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), result.stderr


@pytest.fixture
def fake_gcloud(tmp_path):
    """A `gcloud` first on PATH that records being called (a dry run must never call it)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    marker = tmp_path / "gcloud_called"
    script = bin_dir / "gcloud"
    script.write_text(f"#!/bin/sh\ntouch {shlex.quote(str(marker))}\nexit 1\n")
    script.chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}, marker


# --------------------------------------------------------------------------------------------- local.sh


def test_local_dry_run_prints_one_command_per_process():
    result = launch(LOCAL, "3", "--dry_run", "--", *LOCAL_ARGS, env={"PYTHON": "/opt/py/bin/python3"})
    assert result.returncode == 0, result.stderr
    commands = command_lines(result.stdout)
    assert len(commands) == 3
    coordinators = set()
    for process_id, tokens in enumerate(commands):
        env, tokens = split_env(tokens)
        assert env["JAX_PLATFORMS"] == "cpu" and env["JAX_CPU_COLLECTIVES_IMPLEMENTATION"] == "gloo"
        assert tokens[:3] == ["/opt/py/bin/python3", "-m", "ltkd_jax.main"]
        assert tokens[3:3 + len(LOCAL_ARGS)] == LOCAL_ARGS
        tail = tokens[3 + len(LOCAL_ARGS):]
        assert len(tail) == 3
        coordinator, = [t.split("=", 1)[1] for t in tail if t.startswith("--coordinator_address=")]
        coordinators.add(coordinator)
        assert "--num_processes=3" in tail and f"--process_id={process_id}" in tail
    coordinator, = coordinators
    host, port = coordinator.rsplit(":", 1)
    assert host == "127.0.0.1" and 0 < int(port) < 65536


def test_local_dry_run_port_and_default_python():
    result = launch(LOCAL, "2", "--dry_run", "--", "--workdir=w", env={"PORT": "23456", "PYTHON": ""})
    assert result.returncode == 0, result.stderr
    for tokens in command_lines(result.stdout):
        _, tokens = split_env(tokens)
        venv = os.path.join(ROOT, ".venv", "bin", "python")
        assert tokens[0] == (venv if os.access(venv, os.X_OK) else "python3")
        assert "--coordinator_address=127.0.0.1:23456" in tokens


@pytest.mark.parametrize("args", [
    [], ["0"], ["two"], ["2", "--bogus"], ["2", "3"], ["2", "--", "--distributed"],
    ["2", "--", "--process_id=1"], ["2", "--", "--coordinator_address=h:1"],
])
def test_local_bad_usage_is_one_line(args):
    assert_usage_error(launch(LOCAL, *args), "local.sh")


def test_local_log_dir_that_cannot_be_made_is_one_line(tmp_path):
    (tmp_path / "afile").write_text("")
    result = launch(LOCAL, "2", "--", f"--workdir={tmp_path / 'afile'}")
    assert_usage_error(result, "local.sh")
    assert "cannot create the log directory" in result.stderr


def test_local_bad_environment():
    assert_usage_error(launch(LOCAL, "2", "--dry_run", env={"PORT": "http"}), "local.sh")
    assert_usage_error(launch(LOCAL, "2", "--dry_run", env={"DEVICES_PER_PROCESS": "0"}), "local.sh")
    # A GCS workdir cannot hold the local logs unless LOG_DIR says where they go.
    assert_usage_error(launch(LOCAL, "2", "--dry_run", "--", "--workdir=gs://b/r", env={"LOG_DIR": None}),
                       "local.sh")
    assert launch(LOCAL, "2", "--dry_run", "--", "--workdir=gs://b/r", env={"LOG_DIR": "/tmp/l"}).returncode == 0


def test_local_dry_run_devices_per_process():
    result = launch(LOCAL, "2", "--dry_run", env={"DEVICES_PER_PROCESS": "4", "XLA_FLAGS": "--xla_foo=1"})
    assert result.returncode == 0, result.stderr
    for tokens in command_lines(result.stdout):
        env, _ = split_env(tokens)
        assert env["XLA_FLAGS"] == "--xla_foo=1 --xla_force_host_platform_device_count=4"


ALLGATHER_MAIN = '''
import sys
from absl import app, flags

flags.DEFINE_string("workdir", None, "")
flags.DEFINE_string("coordinator_address", None, "")
flags.DEFINE_integer("num_processes", None, "")
flags.DEFINE_integer("process_id", None, "")
FLAGS = flags.FLAGS


def main(argv):
    import jax
    import numpy as np
    from jax.experimental import multihost_utils
    jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
    gathered = multihost_utils.process_allgather(np.int32(jax.process_index()))
    print("ALLGATHER", jax.process_index(), jax.process_count(), jax.device_count(),
          jax.config.jax_cpu_collectives_implementation, gathered.tolist(), flush=True)


app.run(main)
'''


def test_local_two_processes_allgather_on_cpu(tmp_path):
    """A real 2-process run through local.sh: each process initializes jax.distributed from the flags the
    launcher appends and all-gathers its index over the CPU (gloo) collectives."""
    (tmp_path / "allgather_main.py").write_text(ALLGATHER_MAIN)
    workdir = tmp_path / "wd"
    env = {"LTKD_MAIN": "allgather_main", "PYTHON": sys.executable, "JAX_PLATFORMS": None,  # default: cpu
           "JAX_CPU_COLLECTIVES_IMPLEMENTATION": None, "XLA_FLAGS": None,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    result = launch(LOCAL, "2", "--", f"--workdir={workdir}", env=env, timeout=120)
    assert result.returncode == 0, (result.stdout, result.stderr)
    for process_id in (0, 1):
        log = (workdir / f"process_{process_id}.log").read_text()
        assert f"ALLGATHER {process_id} 2 2 gloo [0, 1]" in log, log
    assert "ALLGATHER 0 2 2 gloo [0, 1]" in result.stdout  # process 0 is also shown on the terminal
    assert "ALLGATHER 1" not in result.stdout


BEHAVE_MAIN = '''
import os, signal, sys, time
process_id = int([a for a in sys.argv if a.startswith("--process_id=")][0].split("=")[1])
mode = os.environ["BEHAVE"]
if mode == "fail":
    if process_id == 1:
        print("process 1 fails", flush=True)
        sys.exit(3)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # stuck (as in a collective): needs SIGKILL
    time.sleep(120)
elif mode == "term":
    def handler(signum, frame):
        print(f"process {process_id} got SIGTERM", flush=True)
        sys.exit(143)
    signal.signal(signal.SIGTERM, handler)
    open(os.path.join(os.environ["READY_DIR"], str(process_id)), "w").close()
    time.sleep(120)
'''


def behave_env(tmp_path, mode, **extra):
    (tmp_path / "behave_main.py").write_text(BEHAVE_MAIN)
    return {"LTKD_MAIN": "behave_main", "PYTHON": sys.executable, "BEHAVE": mode, "PYTHONPATH": str(tmp_path),
            **extra}


def test_local_one_failure_stops_the_others(tmp_path):
    start = time.monotonic()
    result = launch(LOCAL, "2", "--", f"--workdir={tmp_path / 'wd'}",
                    env=behave_env(tmp_path, "fail", KILL_AFTER="1"), timeout=60)
    assert result.returncode == 3, (result.stdout, result.stderr)
    assert time.monotonic() - start < 30
    assert "process 1 failed (exit status 3" in result.stderr
    assert "process 1 fails" in (tmp_path / "wd" / "process_1.log").read_text()


def test_local_forwards_sigterm(tmp_path):
    ready = tmp_path / "ready"
    ready.mkdir()
    env = {k: v for k, v in os.environ.items()}
    env.update(behave_env(tmp_path, "term", READY_DIR=str(ready)))
    proc = subprocess.Popen([BASH, LOCAL, "3", "--", f"--workdir={tmp_path / 'wd'}"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while len(os.listdir(ready)) < 3 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert len(os.listdir(ready)) == 3
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, (stdout, stderr)
    for process_id in range(3):
        assert f"process {process_id} got SIGTERM" in (tmp_path / "wd" / f"process_{process_id}.log").read_text()


# -------------------------------------------------------------------------------------------- tpu_vm.sh


def ssh_commands(commands):
    """The --command= strings of the `gcloud compute tpus tpu-vm ssh` lines, in order."""
    found = []
    for tokens in commands:
        if tokens[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh"]:
            assert "--worker=all" in tokens, tokens
            command, = [t.split("=", 1)[1] for t in tokens if t.startswith("--command=")]
            found.append(command)
    return found


def main_invocations(remote_command):
    """The argument lists given to `-m ltkd_jax.main` in a remote shell command (one per run)."""
    runs = []
    for part in remote_command.split("; "):
        tokens = shlex.split(part)
        if "ltkd_jax.main" in tokens:
            index = tokens.index("ltkd_jax.main")
            assert tokens[index - 1] == "-m"
            runs.append(tokens[index + 1:])
    return runs


def test_tpu_dry_run_creates_installs_and_runs_on_all_workers(fake_gcloud):
    env, marker = fake_gcloud
    result = launch(TPU, "--dry_run", "--name=ltkd-v4", "--zone=us-central2-b", "--accelerator=v4-32",
                    "--project=my-project", "--", *ARGS, env=env)
    assert result.returncode == 0, result.stderr
    assert not marker.exists(), "a dry run must not call gcloud"
    commands = command_lines(result.stdout)
    assert all(t[0] in ("gcloud", "tar") for t in commands), commands
    create, = [t for t in commands if t[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "create"]]
    assert create[5] == "ltkd-v4"
    for flag in ("--zone=us-central2-b", "--accelerator-type=v4-32", "--version=tpu-ubuntu2204-base",
                 "--project=my-project"):
        assert flag in create
    scp, = [t for t in commands if t[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "scp"]]
    assert "--worker=all" in scp
    setup, run = ssh_commands(commands)
    assert "jax[tpu]" in setup and "-e ." in setup
    runs = main_invocations(run)
    assert runs == [ARGS + ["--distributed"]]
    assert run.startswith("cd ltkd_jax && ")


def test_tpu_dry_run_sweep_runs_each_line_in_order(tmp_path, fake_gcloud):
    env, marker = fake_gcloud
    sweep = tmp_path / "sweep.txt"
    lines = ["--config=configs/cifar100_lt.py:kd,resnet32x4-resnet8x4,100 --workdir=gs://b/runs/kd",
             "--config=configs/cifar100_lt.py:ltkd,resnet32x4-resnet8x4,100 --workdir=gs://b/runs/ltkd "
             "'--config.note=with space'"]
    sweep.write_text(f"# the sweep\n{lines[0]}\n\n   {lines[1]}  \n")
    result = launch(TPU, "--dry_run", "--skip_setup", f"--sweep={sweep}", env=env)
    assert result.returncode == 0, result.stderr
    assert not marker.exists()
    runs = [run for command in ssh_commands(command_lines(result.stdout)) for run in main_invocations(command)]
    assert runs == [shlex.split(line) + ["--distributed"] for line in lines]


def test_tpu_dry_run_git_detach_and_delete(fake_gcloud):
    env, _ = fake_gcloud
    result = launch(TPU, "--dry_run", "--git=https://example.org/ltkd_jax.git", "--git_ref=v1", "--spot",
                    "--detach", "--", "--workdir=gs://b/r", env=env)
    assert result.returncode == 0, result.stderr
    commands = command_lines(result.stdout)
    assert "--spot" in [t for t in commands if "create" in t][0]
    setup, run = ssh_commands(commands)
    assert "git clone --quiet https://example.org/ltkd_jax.git ltkd_jax" in setup and "--detach v1" in setup
    assert "nohup bash -c" in run and main_invocations(shlex.split(run.split("nohup bash -c ", 1)[1])[0]) == [
        ["--workdir=gs://b/r", "--distributed"]]

    result = launch(TPU, "--dry_run", "--name=old", "--delete", env=env)
    assert result.returncode == 0, result.stderr
    assert command_lines(result.stdout) == [
        ["gcloud", "compute", "tpus", "tpu-vm", "delete", "old", "--zone=us-central2-b", "--quiet"]]

    result = launch(TPU, "--dry_run", "--skip_setup", "--delete", "--", "--workdir=gs://b/r", env=env)
    commands = command_lines(result.stdout)
    assert commands[-1][:5] == ["gcloud", "compute", "tpus", "tpu-vm", "delete"] and ssh_commands(commands)


def test_tpu_args_without_separator(fake_gcloud):
    """`launch/tpu_vm.sh --config=... --workdir=...` (as the sweep prints it) is the same as with --."""
    env, _ = fake_gcloud
    with_separator = launch(TPU, "--dry_run", "--skip_setup", "--", *ARGS, env=env)
    without = launch(TPU, "--dry_run", "--skip_setup", *ARGS, env=env)
    assert without.returncode == 0, without.stderr
    assert without.stdout == with_separator.stdout


def test_tpu_dry_run_needs_no_gcloud(tmp_path):
    """Only bash builtins are used by a dry run: an empty PATH will do."""
    empty = tmp_path / "empty"
    empty.mkdir()
    result = launch(TPU, "--dry_run", "--", "--workdir=gs://b/r", env={"PATH": str(empty)})
    assert result.returncode == 0, result.stderr
    assert ssh_commands(command_lines(result.stdout))


@pytest.mark.parametrize("args", [
    ["--bogus"], ["--name"], ["--name="], ["--name=Bad_Name"], ["--", "--config=x"],
    ["--", "--workdir=/local/dir"], ["--", "--workdir=gs://b/r", "--process_id=0"],
    ["--sweep=/does/not/exist"], ["--detach", "--delete", "--", "--workdir=gs://b/r"],
    ["--repo=/x", "--git=https://e.org/r.git"], ["--sweep=f", "--", "--workdir=gs://b/r"],
])
def test_tpu_bad_usage_is_one_line(args, fake_gcloud):
    env, marker = fake_gcloud
    assert_usage_error(launch(TPU, "--dry_run", *args, env=env), "tpu_vm.sh")
    assert not marker.exists()


@pytest.mark.parametrize("args", [
    ["--repo=/does/not/exist", "--", "--workdir=gs://b/r"], ["--git_ref=v1", "--", "--workdir=gs://b/r"],
    ["--", "--config=configs/nope.py:ltkd,resnet34-resnet18,10", "--workdir=gs://b/r"],
    ["--", "--config", "configs/nope.py", "--workdir=gs://b/r"], ["--sweep=SWEEP"],
])
def test_tpu_checks_the_checkout_before_any_vm_command(args, tmp_path):
    sweep = tmp_path / "sweep.txt"
    sweep.write_text("--config=configs/imagenet_lt.py --workdir=gs://b/a\n"
                     "--config=configs/nope.py --workdir=gs://b/r\n")  # the second run's file is missing
    result = launch(TPU, "--dry_run", *[arg.replace("SWEEP", str(sweep)) for arg in args])
    assert_usage_error(result, "tpu_vm.sh")
    assert result.stdout == ""  # no `gcloud ... create` printed (or, for real, run) first


def test_tpu_without_gcloud_is_one_line_error(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_usage_error(launch(TPU, "--", "--workdir=gs://b/r", env={"PATH": str(empty)}), "tpu_vm.sh")


def test_tpu_allow_local_workdir():
    result = launch(TPU, "--dry_run", "--skip_setup", "--allow_local_workdir", "--", "--workdir", "/nfs/runs/x")
    assert result.returncode == 0, result.stderr
    assert main_invocations(ssh_commands(command_lines(result.stdout))[0]) == [
        ["--workdir", "/nfs/runs/x", "--distributed"]]


FAKE_GCLOUD = """#!{python}
import json, os, shutil, subprocess, sys
args = sys.argv[1:]
home = os.environ["FAKE_HOME"]
with open(os.environ["GCLOUD_LOG"], "a") as f:
    f.write(json.dumps(args) + "\\n")
verb = args[3]
if verb == "describe":
    sys.exit(1)  # no such VM
if verb == "scp":
    source, target = args[4], args[5]
    shutil.copy(source, os.path.join(home, target.split(":", 1)[1]))
if verb == "ssh":
    command, = [a.split("=", 1)[1] for a in args if a.startswith("--command=")]
    sys.exit(subprocess.run(["bash", "-c", command], cwd=home, env=dict(os.environ, HOME=home)).returncode)
"""

FAKE_REMOTE_PYTHON = """#!{python}
import json, os, sys
with open(os.path.join(os.environ["HOME"], "runs.jsonl"), "a") as f:
    f.write(json.dumps({{"argv": sys.argv[1:], "cwd": os.getcwd()}}) + "\\n")
sys.exit(5 if "--config.fail=True" in sys.argv else 0)
"""


def fake_tpu_env(tmp_path):
    """gcloud is a fake that runs every ssh --command in a fake worker home (with a fake ~/ltkd_venv python that
    records its arguments), so packing, copying, the remote shell quoting and exit statuses are exercised."""
    bin_dir, home = tmp_path / "bin", tmp_path / "home"
    (home / "ltkd_venv" / "bin").mkdir(parents=True)
    bin_dir.mkdir()
    for path, text in ((bin_dir / "gcloud", FAKE_GCLOUD), (home / "ltkd_venv" / "bin" / "python", FAKE_REMOTE_PYTHON)):
        path.write_text(text.format(python=sys.executable))
        path.chmod(0o755)
    log = tmp_path / "gcloud.jsonl"
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_HOME": str(home), "GCLOUD_LOG": str(log),
           "SETUP_CMD": "true"}
    return env, home, log


def test_tpu_real_flow_with_a_fake_gcloud(tmp_path):
    env, home, log = fake_tpu_env(tmp_path)
    sweep = tmp_path / "sweep.txt"
    sweep.write_text("--workdir=gs://b/r1 --config.fail=True\n" + shlex.join(ARGS) + "\n")
    result = launch(TPU, "--name=t1", f"--sweep={sweep}", env=env)
    assert result.returncode == 5, result.stderr  # the failed run's status; the sweep went on
    assert "1 of 2 run(s) failed" in result.stderr
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert [call[3] for call in calls] == ["describe", "create", "scp", "ssh", "ssh", "ssh"]
    code = home / "ltkd_jax"
    assert (code / "setup.cfg").is_file() and (code / "ltkd_jax" / "main.py").is_file()
    assert (code / "launch" / "tpu_vm.sh").is_file() and not (code / ".venv").exists()
    runs = [json.loads(line) for line in (home / "runs.jsonl").read_text().splitlines()]
    assert [run["argv"] for run in runs] == [
        ["-m", "ltkd_jax.main", "--workdir=gs://b/r1", "--config.fail=True", "--distributed"],
        ["-m", "ltkd_jax.main", *ARGS, "--distributed"]]
    assert all(run["cwd"] == str(code) for run in runs)


def test_tpu_detached_runs_with_a_fake_gcloud(tmp_path):
    env, home, log = fake_tpu_env(tmp_path)
    (home / "ltkd_jax").mkdir()
    result = launch(TPU, "--skip_setup", "--detach", "--", *ARGS, env=env)
    assert result.returncode == 0, result.stderr
    runs_file = home / "runs.jsonl"
    deadline = time.monotonic() + 20
    while not runs_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert json.loads(runs_file.read_text())["argv"] == ["-m", "ltkd_jax.main", *ARGS, "--distributed"]
    assert (home / "ltkd_run.log").exists()


# ----------------------------------------------------------------------------------------- slurm.sbatch


def srun_parts(tokens):
    env, tokens = split_env(tokens)
    assert tokens[0] == "srun"
    index = tokens.index("ltkd_jax.main")
    assert tokens[index - 1] == "-m"
    return env, tokens[:index - 2], tokens[index - 2], tokens[index + 1:]


def test_slurm_dry_run_one_process_per_gpu():
    result = launch(SLURM, "--dry_run", "--", *ARGS, env={"PYTHON": "/venv/bin/python", "NODES": "2"})
    assert result.returncode == 0, result.stderr
    (tokens,) = command_lines(result.stdout)
    env, srun, python, args = srun_parts(tokens)
    assert env == {} and python == "/venv/bin/python"
    assert {"--kill-on-bad-exit=1", "--nodes=2", "--ntasks=16", "--ntasks-per-node=8"} <= set(srun)
    assert args == ARGS + ["--distributed"]


def test_slurm_dry_run_one_process_per_node():
    result = launch(SLURM, "--per_node", "--gpus_per_node=4", "--", "--workdir=/shared/r",
                    env={"DRY_RUN": "1", "NODES": "3"})
    assert result.returncode == 0, result.stderr
    (tokens,) = command_lines(result.stdout)
    env, srun, _, args = srun_parts(tokens)
    assert env == {"JAX_LOCAL_DEVICE_IDS": "0,1,2,3"}
    assert {"--nodes=3", "--ntasks=3", "--ntasks-per-node=1"} <= set(srun)
    assert args == ["--workdir=/shared/r", "--distributed"]


@pytest.mark.parametrize("args, env", [
    (["--dry_run"], {}), (["--bogus", "--", "--workdir=w"], {}), (["--", "--workdir=w"], {}),
    (["--dry_run", "--gpus_per_node=0", "--", "--workdir=w"], {}),
    (["--dry_run", "--", "--workdir=w", "--process_id=1"], {}), (["--", "--workdir=w"], {"DRY_RUN": "yes"}),
    (["--dry_run", "--", "--config=configs/cifar100_lt.py"], {}),  # every rank would stop: no --workdir
    (["--dry_run", "--", "--config=configs/cifar100_lt.py", "--workdir"], {}),  # --distributed would be its value
    (["--dry_run", "--", "--workdir", "--config=configs/cifar100_lt.py"], {}),  # a flag where the value should be
])
def test_slurm_bad_usage_is_one_line(args, env):
    assert_usage_error(launch(SLURM, *args, env=env), "slurm.sbatch")


def test_slurm_dry_run_workdir_as_a_separate_argument():
    result = launch(SLURM, "--dry_run", "--", "--config=configs/cifar100_lt.py", "--workdir", "w")
    assert result.returncode == 0, result.stderr
    (tokens,) = command_lines(result.stdout)
    _, _, _, args = srun_parts(tokens)
    assert args == ["--config=configs/cifar100_lt.py", "--workdir", "w", "--distributed"]


def test_slurm_sbatch_directives_come_first():
    """sbatch reads #SBATCH lines only up to the first command."""
    lines = open(SLURM).read().splitlines()
    first_command = next(i for i, line in enumerate(lines) if line.strip() and not line.startswith("#"))
    directives = [i for i, line in enumerate(lines) if line.startswith("#SBATCH")]
    assert directives and max(directives) < first_command
    assert any(line.startswith("#SBATCH --ntasks-per-node=") for line in lines)


def test_slurm_in_a_job_runs_srun_from_the_submit_dir(tmp_path):
    """Inside a (simulated) allocation: exec's srun from $SLURM_SUBMIT_DIR with the job's layout."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    srun = bin_dir / "srun"
    srun.write_text(textwrap.dedent(f"""\
        #!{sys.executable}
        import json, os, sys
        print(json.dumps({{"argv": sys.argv[1:], "cwd": os.getcwd(),
                          "ids": os.environ.get("JAX_LOCAL_DEVICE_IDS")}}))
        sys.exit(7)
        """))
    srun.chmod(0o755)
    submit = tmp_path / "submit"
    submit.mkdir()
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "SLURM_JOB_ID": "42", "SLURM_SUBMIT_DIR":
           str(submit), "SLURM_JOB_NUM_NODES": "2", "SLURM_NTASKS_PER_NODE": "4", "SLURM_GPUS_ON_NODE": "4",
           "SLURM_CPUS_PER_TASK": "6", "PYTHON": "python3"}
    result = launch(SLURM, "--", *ARGS, env=env)
    assert result.returncode == 7, result.stderr  # srun's status is the job's
    record = json.loads(result.stdout)
    assert record["cwd"] == str(submit) and record["ids"] is None
    assert record["argv"] == ["--kill-on-bad-exit=1", "--nodes=2", "--ntasks=8", "--ntasks-per-node=4",
                              "--cpus-per-task=6", "python3", "-m", "ltkd_jax.main", *ARGS, "--distributed"]


# ------------------------------------------------------------------------------------------------ style


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_shellcheck_clean():
    result = subprocess.run(["shellcheck", LOCAL, TPU, SLURM, GPU_BENCH], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("script", [LOCAL, TPU, SLURM, GPU_BENCH])
def test_help_prints_usage(script):
    result = launch(script, "--help")
    assert result.returncode == 0 and "Usage:" in result.stdout
    assert os.access(script, os.X_OK)


def test_gpu_bench_script_runs_every_part_with_flags_the_benchmark_accepts(tmp_path):
    """launch/gpu_bench.sh with a stand-in python: every part's flags parse in the real `ltkd_jax.tools.bench`, a
    failing part does not stop the next ones (the exit status reports it), and what lands under $OUT fits what
    the device tool brings back (at most 8 files, none deeper than two folders)."""
    calls = tmp_path / "calls.jsonl"
    stub = tmp_path / "python"
    stub.write_text(textwrap.dedent(f"""\
        #!{sys.executable}
        import json, os, sys
        args = sys.argv[1:]
        if args[:2] != ["-m", "ltkd_jax.tools.bench"]:
            sys.exit(0)  # the version probes
        with open({str(calls)!r}, "a") as f:
            f.write(json.dumps(args[2:]) + "\\n")
        flags = dict(a.split("=", 1) for a in args[2:] if "=" in a)
        if "--profile_dir" in flags:
            os.makedirs(os.path.join(flags["--profile_dir"], "plugins", "profile", "run"))
            open(os.path.join(flags["--profile_dir"], "plugins", "profile", "run", "x.xplane.pb"), "w").close()
        open(flags["--json"], "w").write("{{}}")
        sys.exit(3 if "--step_only" in args and "--dtype=bfloat16" in args else 0)
        """))
    stub.chmod(0o755)
    out = tmp_path / "out"
    result = subprocess.run([BASH, GPU_BENCH], capture_output=True, text=True,
                            env=dict(os.environ, OUT=str(out), PYTHON=str(stub)), timeout=60)
    assert result.returncode == 1, result.stderr
    runs = [json.loads(line) for line in calls.read_text().splitlines()]
    assert len(runs) == 6  # the part after the failing one ran too
    from ltkd_jax.tools import bench
    parsed = [bench.parse_args([a for a in run if not a.startswith("--json=")]) for run in runs]
    assert [(p.teacher, p.student, p.batch_size, p.dtype) for p in parsed] == [
        ("resnet32x4", "resnet8x4", 64, "float32"), ("resnet32x4", "resnet8x4", 512, "bfloat16"),
        ("resnet32x4", "resnet8x4", 64, "float32"), ("resnet32x4", "resnet8x4", 64, "bfloat16"),
        ("resnet34", "resnet18", 256, "bfloat16"), ("resnet34", "resnet18", 256, "float32")]
    assert parsed[0].epoch and parsed[0].steps_per_dispatch == [1, 16] and parsed[4].image_size == 224
    assert parsed[2].population == parsed[3].population == [1, 3, 9]
    log = (out / "bench.log").read_text()
    assert "== imagenet_r34_r18_b256_bf16 FAILED" in log and "== imagenet_r34_r18_b256_fp32:" in log
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) <= 8 and all(len(p.relative_to(out).parts) <= 3 for p in files)
    assert (out / "trace_b64_fp32.tgz").exists() and not (out / "trace").exists()


def test_gpu_bench_relative_out_is_the_callers_and_jax_starts_once(tmp_path):
    """OUT=out, run from another directory than the repository: bench.log lands in that directory's out/. The
    accelerator check's versions line is what bench.log records (jax is not started a second time for it)."""
    stub = tmp_path / "python"
    stub.write_text(textwrap.dedent(f"""\
        #!{sys.executable}
        import sys
        if sys.argv[1] == "-c" and "import jax" in sys.argv[2]:
            print("jax STUB flax STUB")  # the accelerator check passed
        """))  # the torch probe and every part pass, silently
    stub.chmod(0o755)
    result = launch(GPU_BENCH, env={"PYTHON": str(stub), "OUT": "out"}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    log = (tmp_path / "out" / "bench.log").read_text()
    assert "== b64_fp32: python -m ltkd_jax.tools.bench" in log
    assert log.count("jax STUB flax STUB") == 1, log


def test_gpu_bench_puts_wheels_on_the_path_and_names_a_missing_ml_collections(tmp_path):
    """Pure-Python wheels in <repo>/.whl/ are importable by every part (how a host without the network gets
    ml_collections); an interpreter without ml_collections is refused in one line that says how to get it."""
    repo = tmp_path / "repo"
    (repo / "launch").mkdir(parents=True)
    for name in ("gpu_bench.sh", "common.sh"):
        shutil.copy(os.path.join(ROOT, "launch", name), repo / "launch" / name)
    (repo / ".whl").mkdir()
    with zipfile.ZipFile(repo / ".whl" / "fakepkg-1.0-py3-none-any.whl", "w") as wheel:
        wheel.writestr("fakepkg/__init__.py", "VALUE = 7\n")
    seen, stub = tmp_path / "pythonpath", tmp_path / "python"
    stub.write_text(textwrap.dedent(f"""\
        #!{sys.executable}
        import os, sys
        if sys.argv[1] == "-m":
            open({str(seen)!r}, "a").write(os.environ["PYTHONPATH"] + "\\n")
        elif "import jax" in sys.argv[2]:
            print("jax STUB")  # the accelerator check passed
        """))
    stub.chmod(0o755)
    result = launch(str(repo / "launch" / "gpu_bench.sh"), env={"PYTHON": str(stub), "OUT": str(tmp_path / "out"),
                                                                "PYTHONPATH": None})
    assert result.returncode == 0, result.stderr
    paths = set(seen.read_text().splitlines())
    assert len(paths) == 1  # every part the same
    path = paths.pop()
    assert path.split(os.pathsep)[0] == str(repo)
    found = subprocess.run([sys.executable, "-c", "import fakepkg; print(fakepkg.VALUE, fakepkg.__file__)"],
                           capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=path), timeout=60)
    assert found.stdout.split() == ["7", str(repo / ".whl" / "fakepkg-1.0-py3-none-any.whl" / "fakepkg" /
                                             "__init__.py")], found.stderr
    blocker = tmp_path / "block"  # an interpreter with jax but without ml_collections
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text("import sys\nsys.modules['ml_collections'] = None  # not installed\n")
    python = tmp_path / "nomc" / "python"
    python.parent.mkdir()
    python.write_text(f'#!/bin/sh\nPYTHONPATH="{blocker}:$PYTHONPATH" exec {sys.executable} "$@"\n')
    python.chmod(0o755)
    result = launch(GPU_BENCH, env={"PYTHON": str(python), "OUT": str(tmp_path / "out2")}, timeout=120)
    assert_usage_error(result, "gpu_bench.sh")
    assert f"{python} cannot import ml_collections" in result.stderr and "pip download" in result.stderr
    assert not (tmp_path / "out2").exists()


def _shell_function(path, name):
    """The text of shell function `name` in `path` (from `name() {` to its closing `}` line)."""
    lines = open(path).read().splitlines()
    start = lines.index(f"{name}() {{")
    return "\n".join(lines[start:lines.index("}", start) + 1])


def test_slurm_keeps_an_exact_copy_of_the_shared_helpers():
    """sbatch runs a spooled copy of slurm.sbatch, so it cannot source common.sh; its copies must not drift
    (usage differs on purpose: it stops at the #SBATCH lines)."""
    common = os.path.join(ROOT, "launch", "common.sh")
    for name in ("die", "quote"):
        assert _shell_function(SLURM, name) == _shell_function(common, name), name


def test_gpu_bench_refuses_an_interpreter_without_jax_and_stray_arguments(tmp_path):
    advice = "set PYTHON to an interpreter with jax for the accelerator, flax, optax and orbax\n"
    result = launch(GPU_BENCH, env={"PYTHON": "false", "OUT": str(tmp_path / "out")})
    assert result.returncode == 2 and result.stderr == f"gpu_bench.sh: error: false does not run; {advice}"
    # this machine's jax has no accelerator: benchmarking its CPU for 9 minutes would be no GPU check
    result = launch(GPU_BENCH, env={"PYTHON": sys.executable, "OUT": str(tmp_path / "out"), "JAX_PLATFORMS": "cpu"})
    assert result.returncode == 2 and result.stderr == (
        f"gpu_bench.sh: error: {sys.executable} has a jax that sees no accelerator; {advice}")
    missing = tmp_path / "nojax" / "python"  # an interpreter that lacks a package, named relative to the caller
    missing.parent.mkdir()
    missing.write_text(f"#!/bin/sh\nexec {sys.executable} -S \"$@\"\n")
    missing.chmod(0o755)
    result = launch(GPU_BENCH, env={"PYTHON": "nojax/python", "OUT": "out"}, cwd=tmp_path)
    assert result.returncode == 2 and result.stderr == (
        f"gpu_bench.sh: error: {tmp_path}/nojax/python cannot import jax; {advice}")
    result = launch(GPU_BENCH, "--out=x", env={"OUT": str(tmp_path / "out")})
    assert result.returncode == 2 and "unexpected argument '--out=x'" in result.stderr
    assert not (tmp_path / "out").exists()
