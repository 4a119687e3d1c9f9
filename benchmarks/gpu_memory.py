"""ST-SFLora Table II on a GPU: the analytic client memory model next to what CUDA reports.

For ViT-B/16 at 224 px, B = 64, cut 6, LoRA r = 16 on qkv, 100 classes and the three clients of
Table II — ``fedlora`` (the whole model with LoRA on the device), ``sflora`` (blocks 1–6 with LoRA,
all tokens, backward from the server's gradient) and ``st-sflora`` (frozen blocks 1–6, K = 64
tokens kept, no backward) — it runs client steps through the trainer's own roles on the GPU, with
the server on the CPU (framed bytes between them, as in the trainer), so every CUDA allocation is
the client's. Random weights (memory does not depend on them). For timm's fused attention and for
eager attention it reports, per client:

- ``model_peak`` / ``model_peak_ws``: :func:`ste_opt.learning_hooks.memory_model.estimate`'s client
  peak (parameters + gradients + optimizer + saved activations + messages) and that peak plus the
  forward working set;
- ``allocated``: ``torch.cuda.max_memory_allocated`` over one step (after a warm-up step);
- ``reserved``: ``torch.cuda.max_memory_reserved`` (the caching allocator's pool);
- ``device_used``: total − free of ``torch.cuda.mem_get_info`` after the step: the pool plus the
  CUDA context and library workspaces, what ``nvidia-smi`` shows for the process (the machine runs
  nothing else);
- ``context``: the same reading after CUDA initialisation, before any tensor.

Usage::

    python -m benchmarks.gpu_memory            # needs a CUDA device; writes results/gpu_memory.*
"""
from __future__ import annotations

import argparse
import gc

from benchmarks.common import machine_line, md_table, write_csv, write_section

GIB = 2 ** 30
PAPER_GB = {"fedlora": 9.0, "sflora": 2.3, "st-sflora": 1.4}
ARCH, BATCH, CUT, RANK, CLASSES, TOKENS_KEPT = "vit_base_patch16_224", 64, 6, 16, 100, 64


def _set_attention(module, attention: str) -> None:
    for m in module.modules():
        if hasattr(m, "fused_attn"):
            m.fused_attn = attention == "fused"


def _step_fn(method: str, attention: str, rt, cpu_rt, x, y):
    """Build the client (and CPU server) of ``method``; return a function running one step."""
    import copy

    from ste_opt.learning_hooks._compat import import_timm
    from ste_opt.learning_hooks.client_roles import ClientRole, FedLoRAClientRole
    from ste_opt.learning_hooks.data import ImageDataset
    from ste_opt.learning_hooks.framing import unframe
    from ste_opt.learning_hooks.schedule import ClientPlan
    from ste_opt.learning_hooks.server_role import ServerRole
    from ste_opt.learning_hooks.split import split_vit

    timm = import_timm()
    import torch

    torch.manual_seed(0)
    vit = timm.create_model(ARCH, pretrained=False, num_classes=CLASSES)
    _set_attention(vit, attention)
    optim = {"lr": 0.01, "momentum": 0.9, "weight_decay": 0.0}
    data = ImageDataset(x, y, CLASSES, int(x.shape[-1]))
    plan = ClientPlan(TOKENS_KEPT if method == "st-sflora" else None, 32)
    if method == "fedlora":
        model = split_vit(vit, CUT, CLASSES, lora_rank=RANK, lora_alpha=RANK, client_lora=True,
                          server_lora=True, seed=1)
        model.client.to(rt.device)
        model.server.to(rt.device)
        role = FedLoRAClientRole(0, model.client, model.server, data, batch_size=BATCH, optim=optim,
                                 local_steps=2, runtime=rt)
        role.begin_round(0, plan, None)
        state = {"b": 0}

        def step() -> None:
            role.local_step(0, state["b"] % 2)
            state["b"] += 1
        return step
    model = split_vit(copy.deepcopy(vit), CUT, CLASSES, lora_rank=RANK, lora_alpha=RANK,
                      client_lora=method == "sflora", server_lora=True, seed=1)
    model.client.to(rt.device)
    client = ClientRole(0, model.client, data, batch_size=BATCH, optim=optim, local_steps=2, runtime=rt)
    server = ServerRole(model.server, optim=optim, grad_bits=32, runtime=cpu_rt)
    client.begin_round(0, plan, None)
    server.begin_round(0, None)
    state = {"b": 0}

    def step() -> None:
        msg = client.forward(0, state["b"] % 2)
        header, body = unframe(msg)
        client.backward(server.step(body, header))
        state["b"] += 1
    return step


def measure(device: str = "cuda") -> list[dict]:
    import torch

    from ste_opt.learning_hooks.device import Runtime
    from ste_opt.learning_hooks.memory_model import estimate

    rt, cpu_rt = Runtime(device, "off"), Runtime("cpu", "off")
    dev = rt.device
    if dev.type != "cuda":
        raise SystemExit("benchmarks.gpu_memory needs a CUDA device (--device cuda)")
    torch.cuda.init()
    torch.zeros(1, device=dev)
    free, total = torch.cuda.mem_get_info(dev)
    context = total - free
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2 * BATCH, 3, 224, 224, generator=g)
    y = torch.randint(0, CLASSES, (2 * BATCH,), generator=g)
    rows = []
    for attention in ("fused", "eager"):
        for method, paper in PAPER_GB.items():
            step = _step_fn(method, attention, rt, cpu_rt, x, y)
            step()                                   # warm-up: lazy init, optimizer state
            torch.cuda.synchronize(dev)
            torch.cuda.reset_peak_memory_stats(dev)
            step()
            torch.cuda.synchronize(dev)
            allocated = torch.cuda.max_memory_allocated(dev)
            reserved = torch.cuda.max_memory_reserved(dev)
            free, total = torch.cuda.mem_get_info(dev)
            used = total - free
            est = estimate(ARCH, method=method, batch=BATCH, cut=CUT, lora_rank=RANK,
                           num_classes=CLASSES, attention=attention,
                           tokens_kept=TOKENS_KEPT if method == "st-sflora" else None).client
            rows.append({"method": method, "attention": attention, "paper_GB": paper,
                         "model_peak_GiB": est.peak / GIB,
                         "model_peak_ws_GiB": est.peak_with_workspace / GIB,
                         "allocated_GiB": allocated / GIB, "reserved_GiB": reserved / GIB,
                         "device_used_GiB": used / GIB, "context_GiB": context / GIB,
                         "allocated_vs_model_ws": allocated / est.peak_with_workspace})
            print(f"{method} {attention}: allocated {allocated / GIB:.2f} GiB, model "
                  f"{est.peak_with_workspace / GIB:.2f} GiB, device {used / GIB:.2f} GiB", flush=True)
            del step
            gc.collect()
            torch.cuda.empty_cache()
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda", help="cuda | cuda:<i>")
    ap.add_argument("--no-write", action="store_true", help="print only (no CSV / RESULTS section)")
    ap.add_argument("--render-only", action="store_true",
                    help="rewrite the RESULTS section from the last run's CSV (no GPU needed)")
    args = ap.parse_args(argv)
    if args.render_only:
        import csv

        from benchmarks.common import results_dir

        with (results_dir() / "gpu_memory.csv").open() as fh:
            rows = [{k: (v if k in ("method", "attention") else float(v)) for k, v in r.items()}
                    for r in csv.DictReader(fh)]
        with (results_dir() / "gpu_memory.md").open() as fh:
            first = fh.read().split("\n")[2]
        gpu = first.split(" on ", 1)[1].split(" — ", 1)[0]
    else:
        import torch

        rows = measure(args.device)
        gpu = f"{torch.cuda.get_device_name(torch.device(args.device))} (torch {torch.__version__})"
    cols = ["method", "attention", "paper_GB", "model_peak_GiB", "model_peak_ws_GiB", "allocated_GiB",
            "reserved_GiB", "device_used_GiB", "allocated_vs_model_ws"]
    table = md_table(rows, cols, fmt={c: ".2f" for c in cols[2:]} | {"allocated_vs_model_ws": ".3f"})
    print(table)
    if args.no_write:
        return 0
    if not args.render_only:
        write_csv("gpu_memory", rows)
    ctx = rows[0]["context_GiB"]
    by = {(r["method"], r["attention"]): r for r in rows}

    def off(m: str, a: str) -> str:
        return f"{by[(m, a)]['allocated_vs_model_ws'] - 1:+.1%}"
    md = ["## Table II on a GPU: client memory model vs CUDA's readings", "",
          f"`python -m benchmarks.gpu_memory` on {gpu} — ViT-B/16, "
          f"224 px, B = {BATCH}, cut {CUT}, LoRA r = {RANK} on qkv, {CLASSES} classes, SGD with "
          f"momentum, fp32, random weights; ST-SFLora keeps K = {TOKENS_KEPT} tokens. Client steps "
          "through the trainer's roles on the GPU, the server on the CPU, so every CUDA allocation "
          "is the client's; one warm-up step, then one measured step. `model_*` = "
          "`ste_opt.learning_hooks.memory_model.estimate` (peak; peak + forward working set), "
          "`allocated` = `torch.cuda.max_memory_allocated`, `reserved` = the caching allocator's "
          "peak pool, `device_used` = total − free of `cudaMemGetInfo` after the step (pool + CUDA "
          f"context; the context alone read {ctx:.2f} GiB). GiB = 2³⁰ bytes; the paper's column is "
          f"its Table II (GB, as printed). {machine_line('gpu_memory' if args.render_only else None)}", "",
          table, "",
          "CUDA's allocator peak relative to the model's peak + working set: FedLoRA "
          f"{off('fedlora', 'fused')} "
          f"(fused) / {off('fedlora', 'eager')} (eager), SFLora {off('sflora', 'fused')} / "
          f"{off('sflora', 'eager')}, ST-SFLora {off('st-sflora', 'fused')} / {off('st-sflora', 'eager')}. "
          "For the training clients the model accounts for what CUDA allocates; for the frozen "
          "ST-SFLora client (weights 0.16 GiB + one block's forward) CUDA allocates about 0.16 GiB "
          "more than the model has: transients of the forward that the model does not list (the "
          "input batch, the [CLS]-attention pass and the compression's copies are candidates; this "
          "benchmark does not break them down). The whole process adds about "
          f"{by[('fedlora', 'fused')]['device_used_GiB'] - by[('fedlora', 'fused')]['allocated_GiB']:.2f}"
          " GiB to the allocator's peak on every client: a GPU reading such as the paper's includes "
          "it, the model does not. docs/REPRODUCTION.md compares the readings with Table II.", ""]
    write_section("gpu_memory", "\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
