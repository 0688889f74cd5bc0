"""Launch mpi_checks.py under ``mpirun -n 2`` (skipped without mpirun or mpi4py).

The checks themselves run inside the MPI job (see mpi_checks.py); here we only
start the job and read its exit code and output.  The failure scenarios each end
their job on purpose: rank 1 is killed, hangs, raises, or exits while rank 0 is
exchanging gradients; rank 0 must not hang: the job ends non-zero within 60 s with
a message naming rank 1.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

CHECKS = Path(__file__).with_name("mpi_checks.py")
BOUND = 60  # seconds: the limit for the other ranks to stop


def command(mpirun, *checks, n=2):
    return [mpirun, "-n", str(n), "--oversubscribe", sys.executable, str(CHECKS), *checks]


def test_checks_pass_on_two_ranks(mpirun, mpi_env):
    out = subprocess.run(command(mpirun), capture_output=True, text=True, env=mpi_env(),
                         timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "ALL OK size=2" in out.stdout
    defined = re.findall(r"^@check\ndef (\w+)", CHECKS.read_text(), flags=re.M)
    expected = [name.replace("_", "-") for name in defined if not name.startswith("fail_")]
    assert re.findall(r"^OK (\S+)$", out.stdout, flags=re.M) == expected


def test_a_failing_rank_stops_the_others_naming_it(mpirun, mpi_env):
    scenarios = ["fail-killed", "fail-hung", "fail-raised", "fail-exited"]
    env = dict(mpi_env(), FAIL_TIMEOUT="4")  # seconds, once both ranks have started
    # Run side by side: each mostly waits for its timeout.
    jobs = {s: subprocess.Popen(command(mpirun, s), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, env=env)
            for s in scenarios}
    results = {}
    try:
        for s, job in jobs.items():
            output, _ = job.communicate(timeout=BOUND)
            results[s] = (job.returncode, output)
    finally:
        for job in jobs.values():
            if job.poll() is None:
                job.kill()
                job.wait()
    for s, (code, output) in results.items():
        assert code != 0, f"{s}: the job exited 0\n{output}"
        assert "ALL OK" not in output
        assert re.search(r"\brank 1\b", output), f"{s}: rank 1 is not named\n{output}"
    # Who said it: mpirun for a killed rank, the dying rank's hook for an exception,
    # rank 0's watchdog for a silent one.
    assert "exited on\nsignal 9" in results["fail-killed"][1] or \
        "signal 9" in results["fail-killed"][1]
    assert "rank 1 of 2 raised an uncaught RuntimeError" in results["fail-raised"][1]
    for s in ("fail-hung", "fail-exited"):
        assert "rank 0 of 2 waited" in results[s][1] and "rank 1 did not answer" in results[s][1]


FIT_CHECKS = Path(__file__).with_name("fit_checks.py")


def test_data_parallel_fit_equals_one_process_fit(mpirun, mpi_env):
    """fit_checks.py: SGD, momentum, Adam, frozen layers, a shared layer, dropout, synchronized BatchNormalization and a GAN
    alternation give the one-process weights on two ranks; frozen weights are never sent;
    evaluate/predict sharded over the ranks give the one-process results."""
    out = subprocess.run([mpirun, "-n", "2", "--oversubscribe", sys.executable, str(FIT_CHECKS)],
                         capture_output=True, text=True, env=mpi_env(), timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("ok ") == 20, out.stdout


def test_bench_distributed_runs(mpirun, mpi_env, tmp_path):
    """``python -m bench --distributed`` on a tiny epoch: both jobs run and the 2-rank one
    reports the mlp's gradient bytes per step (no timing is checked)."""
    root = Path(__file__).resolve().parents[2]
    # The fastlayers under test first (installed, or the built checkout), then the
    # checkout for `bench`; run from elsewhere so the source tree cannot shadow it.
    env = mpi_env()
    env["PYTHONPATH"] = env["PYTHONPATH"] + os.pathsep + str(root)
    out = subprocess.run([sys.executable, "-m", "bench", "--distributed", "--rows", "512",
                          "--epochs", "1", "--out", str(tmp_path)], cwd=tmp_path,
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    import json

    results = json.loads((tmp_path / "distributed.json").read_text())["results"]
    assert [r["ranks"] for r in results] == [1, 2]  # threads: capped by the cores
    params = 784 * 256 + 256 + 256 * 256 + 256 + 256 * 10 + 10
    assert results[1]["bytes_per_step"] == 4 * params and results[1]["steps"] == 2
    assert results[0]["bytes_per_step"] == 0
