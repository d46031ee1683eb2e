#!/usr/bin/env bash
# Two 60-step `hf-custom-lm train` runs started together on the same two CPUs (taskset -c 0,1), three ways:
#   unset    OMP_WAIT_POLICY unset, torch loaded before the command runs (what the command did before it
#            chose a policy itself)
#   passive  OMP_WAIT_POLICY=PASSIVE in the environment
#   command  the console entry point (hf_custom_lm_cli) with nothing set: it picks PASSIVE for training
# Prints each run's `train_runtime` (the Trainer's loop, the evaluation and checkpoint at step 60 included).
# A first lone run fills the datasets cache so that tokenisation is not timed. Usage, from the repository root:
#   bash benchmarks/omp_wait_policy.sh [rounds]          (PY=python to use another interpreter than .venv's)
set -u
PY=${PY:-.venv/bin/python}
ROUNDS=${1:-1}
OUT=$(mktemp -d)
unset OMP_NUM_THREADS
OLD='import sys, hf_custom_lm; from hf_custom_lm.cli import main; sys.exit(main(sys.argv[1:]))'
NEW='import sys, hf_custom_lm_cli; sys.exit(hf_custom_lm_cli.main(sys.argv[1:]))'
FLAGS=(train --config_name tiny --block_size 128 --max_eval_samples 128 --max_steps 60 --eval_steps 60
       --save_steps 60 --logging_steps 20 --per_device_train_batch_size 32 --per_device_eval_batch_size 32
       --learning_rate 3e-3 --warmup_steps 0.1 --report_to none --seed 42
       --config_overrides hidden_size=128,intermediate_size=352,num_hidden_layers=4,num_attention_heads=4,num_key_value_heads=4)

one() {  # label index python-code env-arguments...
  local label=$1 i=$2 code=$3; shift 3
  env "$@" taskset -c 0,1 "$PY" -c "$code" "${FLAGS[@]}" --output_dir "$OUT/$label-$i" > "$OUT/$label-$i.log" 2>&1
  echo "$label run $i: exit $?, $(grep -o 'train_runtime *= *[0-9:.]*' "$OUT/$label-$i.log" | tail -1)"
}
pair() { one "$1" 1 "$2" "${@:3}" & one "$1" 2 "$2" "${@:3}" & wait; }

echo "$(lscpu | grep 'Model name'), load $(cut -d' ' -f1-3 /proc/loadavg)"
one warmup 0 "$NEW"
for _ in $(seq "$ROUNDS"); do
  pair unset "$OLD" -u OMP_WAIT_POLICY
  pair passive "$OLD" OMP_WAIT_POLICY=PASSIVE
  pair command "$NEW" -u OMP_WAIT_POLICY
done
echo "logs in $OUT"
