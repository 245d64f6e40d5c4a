#!/usr/bin/env bash
# Every GPU figure the README asks for, in one go (under 10 minutes without Ray):
#
#   bash bench/gpu_checks.sh [LOG_DIR]
#
# One after another, each under a time limit (then killed 10 s after its SIGTERM)
# so that a hang cannot eat the rest:
#   throughput_default   bench/throughput.py with the default model and options
#   throughput_fast      the same with bf16 + channels-last + data.on_device
#   fast                 bench/time_to_accuracy.py experiment=fast on the GPU
#   best                 bench/time_to_accuracy.py experiment=best on the GPU (target 95.5%)
#   sweep                bench/gpu_sweep_check.py (skipped without the sweeps extra: Ray)
# Each writes LOG_DIR/<name>.log (default outputs/gpu_checks/<date_time>/) and
# summary.log lists every check's exit status; the script exits 1 if any failed.
# PYTHON picks the interpreter (default: python). Stops at once without a GPU.
set -u
cd "$(dirname "$0")/.."
python=${PYTHON:-python}
log_dir=${1:-outputs/gpu_checks/$(date +%Y-%m-%d_%H-%M-%S)}
dry_run=${GPU_CHECKS_DRY_RUN:-0} # 1: print the commands only (to check the script itself)

if [ "$dry_run" != 1 ] && ! "$python" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then
    echo "error: torch sees no GPU here; run bench/gpu_checks.sh on a machine with one" >&2
    exit 1
fi
mkdir -p "$log_dir"

summary=()
failed=0
check() { # check NAME SECONDS COMMAND...
    local name=$1 limit=$2
    shift 2
    echo "== $name (limit ${limit} s): $*" | tee "$log_dir/$name.log"
    if [ "$dry_run" = 1 ]; then
        summary+=("$name: not run (dry run)")
        return
    fi
    local start=$SECONDS
    timeout -k 10 "$limit" "$@" 2>&1 | tee -a "$log_dir/$name.log"
    local rc=${PIPESTATUS[0]}
    [ "$rc" = 124 ] && echo "$name: stopped at its ${limit} s limit" | tee -a "$log_dir/$name.log"
    summary+=("$name: exit $rc after $((SECONDS - start)) s")
    [ "$rc" = 0 ] || failed=1
}

if [ "$dry_run" != 1 ]; then
    "$python" -c 'import torch, lightning; print(torch.cuda.get_device_name(0), "| torch",
        torch.__version__, "| lightning", lightning.__version__)' | tee "$log_dir/summary.log"
fi
check throughput_default 120 "$python" bench/throughput.py --device cuda
check throughput_fast 120 "$python" bench/throughput.py --device cuda \
    trainer.precision=bf16-mixed model.channels_last=true data.on_device=true
check fast 90 "$python" bench/time_to_accuracy.py experiment=fast trainer.accelerator=gpu
check best 220 "$python" bench/time_to_accuracy.py experiment=best trainer.accelerator=gpu \
    --targets 0.94 0.945 0.95 0.955 --test-every 4
if "$python" -c 'import ray, hydra_plugins.hydra_ray_launcher' 2>/dev/null; then
    check sweep 300 "$python" bench/gpu_sweep_check.py
else
    summary+=("sweep: skipped (needs the sweeps extra: pip install -e '.[sweeps]')")
fi
printf '%s\n' "${summary[@]}" | tee -a "$log_dir/summary.log"
exit "$failed"
