"""How OpenMP threads wait, chosen per job before torch loads (OpenMP reads it once, at start-up).

Training and evaluation run few, large parallel regions: threads that spin while waiting (the OpenMP
default) steal the cores of any other busy process on a small shared machine, and both slow down
(benchmarks/RESULTS.md, "OpenMP wait policy"). Generation runs many tiny ops, where a sleeping thread's
wake-up costs more than the spin: it keeps the default. A policy the user set is never changed.
"""

import os

# subcommand -> OMP_WAIT_POLICY it runs under unless the environment already names one
WAIT_POLICY = {
    "train": "PASSIVE",
    "finetune-classifier": "PASSIVE",
    "finetune-qa": "PASSIVE",
    "finetune-token-classifier": "PASSIVE",
    "evaluate": "PASSIVE",
}


def choose_wait_policy(subcommand: str, environ=os.environ) -> str | None:
    """Set `OMP_WAIT_POLICY` for `subcommand` when the user has not; returns the policy in effect (None: the
    OpenMP default). Must run before torch is imported to have any effect."""
    policy = WAIT_POLICY.get(subcommand)
    if policy is not None and "OMP_WAIT_POLICY" not in environ:
        environ["OMP_WAIT_POLICY"] = policy
    return environ.get("OMP_WAIT_POLICY")
