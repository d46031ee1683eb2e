"""Train a language model: the same as `hf-custom-lm train`, as a script for `torchrun` / `accelerate launch`.

    python scripts/train.py --config configs/demo.yaml
    torchrun --nproc_per_node 2 scripts/train.py --config configs/small.yaml
    accelerate launch --config_file configs/accelerate/ddp.yaml scripts/train.py --config configs/base.yaml
"""

import sys

from hf_custom_lm.cli.train import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
