#!/usr/bin/env bash
# Every check of the GPU path that needs a GPU, in one run (about 5 minutes on an H200), with no
# Node: the device, cuBLASLt through our row-major mapping, the parity of a training step, the
# optimizers and the eval forward against the CPU kernels (fp32, TF32, bf16), compute-sanitizer
# (memcheck, racecheck) on a tiny problem, the speed of tfpipe's CUDA step and of the PyTorch peer
# (eager and torch.compile) on the same models, batches and precisions, and a per-operation
# profile. Writes OUTDIR/gpu-check.json (one document: every result line by section) and
# OUTDIR/gpu-check.log.
#
#   bash native/gpu-check.sh [OUTDIR]        OUTDIR defaults to $OUT, else outputs/gpu-check
#
# Uses native/build/vit_bench when it runs here (build it anywhere with nvcc: sh
# native/build-bench.sh), else builds it for this GPU. TFPIPE_GPU_CHECK_BUDGET (seconds, default
# 330) bounds the whole run: each step has its own timeout, and the PyTorch peer gets what is left.
# TFPIPE_GPU_CHECK_STEPS names the steps to run (default: all of "info parity memcheck racecheck
# bench profile peer").
set -u
cd "$(dirname "$0")/.."
out=${1:-${OUT:-outputs/gpu-check}}
parts=$(mktemp -d)  # per-step outputs; only the two files above go to OUTDIR
mkdir -p "$out"
log="$out/gpu-check.log"
sanitizer=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
budget=${TFPIPE_GPU_CHECK_BUDGET:-330}
start=$(date +%s)
elapsed() { echo $(($(date +%s) - start)); }
bench=native/build/vit_bench

# step NAME SECONDS COMMAND...: runs COMMAND with a timeout, its stdout to $parts/NAME.out, both
# streams to the log; the exit status goes to $parts/NAME.rc.
steps=" ${TFPIPE_GPU_CHECK_STEPS:-info parity memcheck racecheck bench profile peer} "
step() {
  local name=$1 secs=$2
  shift 2
  case "$steps" in *" $name "*) ;; *) return ;; esac
  echo "== $name (at $(elapsed) s, timeout ${secs} s): $*" | tee -a "$log"
  timeout -k 5 "$secs" "$@" > "$parts/$name.out" 2>> "$log"
  local rc=$?
  echo "$rc" > "$parts/$name.rc"
  cat "$parts/$name.out" >> "$log"
  echo "== $name: exit $rc after $(elapsed) s" | tee -a "$log"
}

{
  echo "date: $(date -u +%FT%TZ)"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,compute_cap --format=csv,noheader 2>&1
  nvcc --version 2>&1 | tail -n 2
  lscpu 2>/dev/null | grep -E '^(Model name|CPU\(s\)|Flags)' | cut -c1-200
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)' 2>&1
} > "$parts/meta.out" 2>&1
cat "$parts/meta.out" >> "$log"

if ! "$bench" --device cuda --help > /dev/null 2>&1; then
  echo "== building vit_bench here ($bench missing or not runnable)" | tee -a "$log"
  TFPIPE_CUDA_ARCH="-gencode arch=compute_90,code=sm_90" sh native/build-bench.sh >> "$log" 2>&1
fi

step info 45 "$bench" --device cuda --info --gemm-check
# Synchronising after every launch pins an asynchronous fault to the operation that made it.
step parity 90 env TFPIPE_CUDA_SYNC=1 "$bench" --device cuda --parity
step memcheck 80 "$sanitizer" --tool memcheck --error-exitcode 9 "$bench" --device cuda --parity --small --precisions fp32,bf16
step racecheck 45 "$sanitizer" --tool racecheck --error-exitcode 9 "$bench" --device cuda --parity --small --precisions fp32
step bench 100 "$bench" --device cuda --bench --steps 30
step profile 40 env TFPIPE_CUDA_PROFILE=1 "$bench" --device cuda --bench --profile --steps 10 --batches 128,512 --precisions tf32,bf16
left=$((budget - $(elapsed)))
if [ "$left" -gt 20 ]; then
  step peer $((left + 30)) python3 bench/peers/torch_gpu_cases.py --budget $((left - 15)) --compile bf16:512,bf16:128,tf32:512
fi

python3 - "$out" "$parts" <<'EOF'
import json, os, sys
out, parts = sys.argv[1], sys.argv[2]
doc = {"sections": {}}
for name in sorted(os.listdir(parts)):
    if not name.endswith(".out"):
        continue
    key = name[:-4]
    rows = []
    for line in open(os.path.join(parts, name), errors="replace"):
        line = line.rstrip("\n")
        if not line:
            continue
        try:
            rows.append(json.loads(line))
        except ValueError:
            rows.append(line)
    rc = os.path.join(parts, key + ".rc")
    doc["sections"][key] = {"exit": int(open(rc).read()) if os.path.exists(rc) else None, "rows": rows}
json.dump(doc, open(os.path.join(out, "gpu-check.json"), "w"), indent=1)
print("wrote", os.path.join(out, "gpu-check.json"))
EOF
echo "== done after $(elapsed) s" | tee -a "$log"
