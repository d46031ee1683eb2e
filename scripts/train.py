"""Train a language model: the same as `hf-custom-lm train`, as a script for `torchrun` / `accelerate launch`.

    python scripts/train.py --config configs/demo.yaml
    torchrun --nproc_per_node 2 scripts/train.py --config configs/small.yaml
    accelerate launch --config_file configs/accelerate/ddp.yaml scripts/train.py --config configs/base.yaml
"""

import os
import sys

# Before torch loads OpenMP: idle threads sleep instead of spinning, which keeps CPU training fast when
# the cores are shared with other busy processes (see scripts/demo.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from hf_custom_lm.cli.train import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
