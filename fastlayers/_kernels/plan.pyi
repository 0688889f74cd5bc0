# Stubs for fastlayers._kernels.plan (csrc/plan.pyx).
from typing import Any, Dict, List, Optional

import numpy as np

OP_KINDS: Dict[str, int]
LOSS_KINDS: Dict[str, int]
OPT_KINDS: Dict[str, int]


class TrainPlan:
    bad_labels: bool
    def __init__(
        self,
        dtype: Any,  # float32 or float64
        specs: List[Dict[str, Any]],  # one dict per op: kind, d_in, d_out, arrays, flags
        loss: str,  # "mse", "mae", "bce", "ce", "sparse_ce"
        from_logits: bool,
        optimizer: str,  # "sgd", "momentum", "nesterov", "adam"
        momentum: float = ...,
        beta_1: float = ...,
        beta_2: float = ...,
        epsilon: float = ...,
    ) -> None: ...
    def describe(self) -> List[Dict[str, Any]]: ...
    def forward(self, X: np.ndarray, training: bool = ...) -> Optional[np.ndarray]: ...
    def last_output(self, n: int, training: bool = ...) -> Optional[np.ndarray]: ...

# Every kernel module includes csrc/_team.pxi:
def get_team() -> int: ...
def _team_bound() -> bool: ...
def _omp_max_threads() -> int: ...
def _observe_split(region_ns: int, first_slice_ns: int) -> None: ...
