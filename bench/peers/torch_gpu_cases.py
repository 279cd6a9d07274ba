"""The PyTorch peer on a GPU for the cases tfpipe's CUDA bench runs (native/gpu-check.sh): one
JSON line per case, the same models, batches and precisions as `vit_bench --device cuda --bench`.

  python3 torch_gpu_cases.py [--models cifar_vit,cpu_hour] [--batches 128,512]
      [--precisions fp32,tf32,bf16] [--attn sdpa,manual] [--compile bf16:512,tf32:512] [--budget 240]

fp32 is PyTorch's default (no TF32), tf32 sets allow_tf32, bf16 runs the forward and loss under
autocast (weights and AdamW state in fp32), as torch_vit_bench.py does. --compile adds
torch.compile cases (precision:batch, for the first model) while the time budget (seconds, for
the whole script) lasts; a case that would start past it is reported as skipped.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_vit_bench  # noqa: E402

MODELS = {"cifar_vit": (384, 7, 12, 384), "cpu_hour": (64, 6, 4, 256), "small": (64, 4, 4, 128)}


def case(model, batch, precision, attn, compile_=False, steps=20):
    dim, depth, heads, mlp = MODELS[model]
    r = torch_vit_bench.run(patch=4, dim=dim, depth=depth, heads=heads, mlp=mlp, dropout=0.0, batch=batch, steps=steps,
                            device="cuda", dtype="bf16" if precision == "bf16" else "fp32", tf32=precision == "tf32",
                            compile=compile_, arch="vit", attn=attn, optimizer="adamw")
    r.update(model=model, precision=precision, peer="pytorch")
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="cifar_vit,cpu_hour")
    ap.add_argument("--batches", default="128,512")
    ap.add_argument("--precisions", default="fp32,tf32,bf16")
    ap.add_argument("--attn", default="sdpa,manual")
    ap.add_argument("--compile", default="")
    ap.add_argument("--budget", type=float, default=240)
    a = ap.parse_args()
    start = time.time()
    todo = [(m, int(b), p, at, False) for m in a.models.split(",") for b in a.batches.split(",")
            for p in a.precisions.split(",") for at in a.attn.split(",")]
    first = a.models.split(",")[0]
    todo += [(first, int(c.split(":")[1]), c.split(":")[0], "sdpa", True) for c in a.compile.split(",") if c]
    for model, batch, precision, attn, comp in todo:
        label = dict(model=model, batch=batch, precision=precision, attn=attn, compile=comp, peer="pytorch")
        if time.time() - start > a.budget:
            print(json.dumps(dict(label, skipped=f"past the {a.budget:.0f} s budget")), flush=True)
            continue
        try:
            print(json.dumps(case(model, batch, precision, attn, comp)), flush=True)
        except Exception as e:  # a failed case must not hide the others
            print(json.dumps(dict(label, error=str(e).splitlines()[0] if str(e) else type(e).__name__)), flush=True)


if __name__ == "__main__":
    main()
