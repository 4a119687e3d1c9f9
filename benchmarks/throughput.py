"""Throughput and memory of one split-LoRA training step vs a plain (unsplit) timm + peft LoRA step.

For ViT-B/16 and ViT-B/32 at 224 px (random weights), fp32 and bf16 autocast, it times three
training steps on the same images, interleaved in the same run (medians over ``--repeats``):

- ``plain``: the unsplit timm ViT with peft LoRA (rank ``--rank`` on every block's qkv) and a new
  head: forward, loss, backward, SGD step;
- ``split``: ste-opt's split step through the real roles (``ClientRole.forward`` → framed bytes →
  ``ServerRole.step`` → gradient bytes → ``ClientRole.backward``), cut after ``--cut`` blocks,
  the same LoRA on both sides, no compression (all tokens, fp32 on the wire);
- ``split+comp``: the same with TSFLora compression (K = N/2 tokens + [CLS] + merged, 8 bits).

Reported per step: images/s (batch / median step time), the ratio to the plain step, and memory:
on CUDA ``torch.cuda.max_memory_allocated`` of the step (peak after a reset), on the CPU the bytes
autograd saves for backward (``SavedTensorMeter``; the CPU has no allocator statistics).
Target (issue 13): split step without compression ≤ 1.1 × the plain step; on a GPU compression
adds ≤ 5 %.

Usage::

    python -m benchmarks.throughput                      # CPU, batch 2 (what this machine can do)
    python -m benchmarks.throughput --device cuda --batch 64   # the GPU rows
    python -m benchmarks.throughput --quick              # B/32 only, 1 repeat (smoke)
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

from benchmarks.common import machine_line, md_table, write_csv, write_section

MODELS = {"vit_base_patch16_224": "ViT-B/16", "vit_base_patch32_224": "ViT-B/32"}
GPU_COMMAND = "python -m benchmarks.throughput --device cuda --batch 64"


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _plain_model(vit, rank: int, num_classes: int, device):
    import torch

    from ste_opt.learning_hooks.split import add_lora

    m = copy.deepcopy(vit)
    for p in m.parameters():
        p.requires_grad_(False)
    add_lora(m, rank, 2 * rank, ("qkv",), seed=1)
    m.reset_classifier(num_classes)
    for p in m.get_classifier().parameters():
        p.requires_grad_(True)
    m.to(device).train()
    opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
    return m, opt


def _plain_step(model, opt, x, y, rt) -> int:
    import torch.nn.functional as F

    from ste_opt.learning_hooks.memory import SavedTensorMeter

    params = list(model.parameters())
    with SavedTensorMeter(exclude=params) as meter:
        with rt.autocast():
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return meter.bytes


class _Split:
    """The split step through the trainer's own roles (the local backend's loop body)."""

    def __init__(self, vit, *, cut: int, rank: int, num_classes: int, x, y, steps: int, rt,
                 tokens_kept, bits: int):
        from ste_opt.learning_hooks.client_roles import ClientRole
        from ste_opt.learning_hooks.data import ImageDataset
        from ste_opt.learning_hooks.framing import unframe
        from ste_opt.learning_hooks.schedule import ClientPlan
        from ste_opt.learning_hooks.server_role import ServerRole
        from ste_opt.learning_hooks.split import split_vit

        self.unframe = unframe
        model = split_vit(copy.deepcopy(vit), cut, num_classes, lora_rank=rank, lora_alpha=2 * rank,
                          client_lora=True, server_lora=True, seed=1)
        model.client.to(rt.device)
        model.server.to(rt.device)
        optim = {"lr": 0.01, "momentum": 0.9, "weight_decay": 0.0}
        data = ImageDataset(x.cpu(), y.cpu(), num_classes, int(x.shape[-1]))
        self.client = ClientRole(0, model.client, data, batch_size=int(x.shape[0]) // steps,
                                 optim=optim, local_steps=steps, runtime=rt)
        self.server = ServerRole(model.server, optim=optim, grad_bits=32, runtime=rt)
        self.plan = ClientPlan(tokens_kept, bits)
        self.client.begin_round(0, self.plan, None)
        self.server.begin_round(0, None)
        self.b = 0
        self.steps = steps

    def step(self) -> int:
        msg = self.client.forward(0, self.b % self.steps)
        header, body = self.unframe(msg)
        self.client.backward(self.server.step(body, header))
        self.b += 1
        cm = self.client.stats.memory.activations
        sm = self.server.stats[0].memory.activations
        return int(cm + sm)


def measure(arch: str, precision: str, *, batch: int, repeats: int, device: str, rank: int,
            cut: int, threads: int | None) -> list[dict]:
    import torch

    from ste_opt.learning_hooks._compat import import_timm
    from ste_opt.learning_hooks.device import Runtime

    if threads:
        torch.set_num_threads(int(threads))
    rt = Runtime(device, "off" if precision == "fp32" else precision)
    dev = rt.device
    timm = import_timm()
    torch.manual_seed(0)
    vit = timm.create_model(arch, pretrained=False, num_classes=10)
    n_patches = int(vit.patch_embed.num_patches)
    steps = 2
    g = torch.Generator().manual_seed(0)
    x_all = torch.randn(batch * steps, 3, 224, 224, generator=g)
    y_all = torch.randint(0, 10, (batch * steps,), generator=g)
    plain, opt = _plain_model(vit, rank, 10, dev)
    variants = {
        "split": _Split(vit, cut=cut, rank=rank, num_classes=10, x=x_all, y=y_all, steps=steps, rt=rt,
                        tokens_kept=None, bits=32),
        "split+comp": _Split(vit, cut=cut, rank=rank, num_classes=10, x=x_all, y=y_all, steps=steps,
                             rt=rt, tokens_kept=n_patches // 2, bits=8),
    }
    del vit
    xs = [x_all[i * batch:(i + 1) * batch].to(dev) for i in range(steps)]
    ys = [y_all[i * batch:(i + 1) * batch].to(dev) for i in range(steps)]
    times: dict[str, list[float]] = {"plain": [], "split": [], "split+comp": []}
    mem: dict[str, int] = {}

    def run(name: str, i: int) -> tuple[float, int]:
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        _sync(dev)
        t0 = time.perf_counter()
        if name == "plain":
            saved = _plain_step(plain, opt, xs[i % steps], ys[i % steps], rt)
        else:
            saved = variants[name].step()
        _sync(dev)
        dt = time.perf_counter() - t0
        peak = torch.cuda.max_memory_allocated(dev) if dev.type == "cuda" else saved
        return dt, int(peak)

    for name in times:  # warm-up (allocator, autocast caches, lazy init)
        run(name, 0)
    for r in range(repeats):
        order = list(times) if r % 2 == 0 else list(times)[::-1]  # interleaved, alternating order
        for name in order:
            dt, peak = run(name, r + 1)
            times[name].append(dt)
            mem[name] = max(mem.get(name, 0), peak)
    plain_s = statistics.median(times["plain"])
    rows = []
    for name, ts in times.items():
        med = statistics.median(ts)
        rows.append({"model": MODELS.get(arch, arch), "precision": precision, "step": name,
                     "device": str(dev), "batch": batch, "repeats": repeats,
                     "step_ms": 1e3 * med, "step_ms_min": 1e3 * min(ts), "images_per_s": batch / med,
                     "vs_plain": med / plain_s,
                     "memory_MiB": mem[name] / 2**20,
                     "memory_kind": "cuda max_memory_allocated" if dev.type == "cuda" else
                     "saved activations (CPU)"})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", help="cpu | cuda | cuda:<i> | auto")
    ap.add_argument("--batch", type=int, default=None, help="images per step (default: 2 on CPU, 64 on CUDA)")
    ap.add_argument("--repeats", type=int, default=5, help="measured steps per variant (median)")
    ap.add_argument("--models", default=",".join(MODELS), help="timm model names, comma-separated")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--cut", type=int, default=6, help="blocks on the client")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (CPU)")
    ap.add_argument("--quick", action="store_true", help="ViT-B/32 fp32 only, 1 repeat")
    ap.add_argument("--no-write", action="store_true", help="print only (no CSV / RESULTS section)")
    ap.add_argument("--render-only", action="store_true",
                    help="rewrite the RESULTS section from the last run's CSV (no measuring)")
    ap.add_argument("--command", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    import torch

    from ste_opt.learning_hooks.device import resolve_device

    # --render-only reads a CSV back: it needs no device (the CUDA rows render on a CPU machine)
    dev = torch.device(args.device) if args.render_only else resolve_device(args.device)
    batch = args.batch or (64 if dev.type == "cuda" else 2)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    repeats = args.repeats
    if args.quick:
        models, precisions, repeats = ["vit_base_patch32_224"], ["fp32"], 1
    rows = []
    if args.render_only:
        import csv

        from benchmarks.common import results_dir

        name = "throughput" if dev.type == "cpu" else f"throughput_{dev.type}"
        with (results_dir() / f"{name}.csv").open() as fh:
            rows = [{k: (float(v) if k in ("step_ms", "step_ms_min", "images_per_s", "vs_plain",
                                           "memory_MiB") else v) for k, v in r.items()}
                    for r in csv.DictReader(fh)]
        batch, repeats = int(rows[0]["batch"]), int(rows[0]["repeats"])
        models, precisions = [], []
    for arch in models:
        for prec in precisions:
            t0 = time.perf_counter()
            rows += measure(arch, prec, batch=batch, repeats=repeats, device=str(dev), rank=args.rank,
                            cut=args.cut, threads=args.threads)
            print(f"{arch} {prec}: {time.perf_counter() - t0:.1f} s", flush=True)
    cols = ["model", "precision", "step", "batch", "images_per_s", "step_ms", "vs_plain", "memory_MiB"]
    table = md_table(rows, cols, fmt={"images_per_s": ".2f", "step_ms": ".0f", "vs_plain": ".3f",
                                      "memory_MiB": ".0f"})
    print(table)
    if args.no_write:
        return 0
    name = "throughput" if dev.type == "cpu" else f"throughput_{dev.type}"
    if not args.render_only:
        write_csv(name, rows)
    cmd = args.command or ("python -m benchmarks.throughput" + (" --quick" if args.quick else "")
                           + ("" if dev.type == "cpu" else f" --device {args.device} --batch {batch}")
                           + (f" --threads {args.threads}" if args.threads else "")
                           + (f" --repeats {args.repeats}" if args.repeats != 5 and not args.quick else ""))
    split_ratio = {(r["model"], r["precision"]): r["vs_plain"] for r in rows if r["step"] == "split"}
    comp_extra = {}
    for r in rows:
        if r["step"] == "split+comp":
            s = next(q for q in rows if q["model"] == r["model"] and q["precision"] == r["precision"]
                     and q["step"] == "split")
            comp_extra[(r["model"], r["precision"])] = r["step_ms"] / s["step_ms"] - 1
    verdict = ", ".join(f"{m} {p}: {v:.2f}×" for (m, p), v in split_ratio.items())
    comp = ", ".join(f"{m} {p}: {100 * v:+.0f} %" for (m, p), v in comp_extra.items())
    mem_note = ("peak `torch.cuda.max_memory_allocated` of the step" if dev.type == "cuda" else
                "bytes autograd saved for backward in the step (client + server for the split "
                "steps; the CPU has no allocator peak)")
    md = [f"## Throughput: split-LoRA step vs plain timm + peft LoRA step ({dev.type.upper()})", "",
          f"`{cmd}` — random weights, 224 px, LoRA r = {args.rank} on qkv of every block (+ new "
          f"head) in every variant, split after block {args.cut}; `split` = the trainer's roles "
          "with all tokens in fp32 through the framed bytes, `split+comp` = K = N/2 + 8-bit. "
          f"Medians of {repeats} interleaved steps after one warm-up each, batch {batch}; "
          f"memory = {mem_note}. {machine_line(name if args.render_only else None)}", "",
          table, "",
          f"Split step without compression / plain step (target ≤ 1.1): {verdict}.",
          f"Compression's extra time over the uncompressed split step (negative: the compressed "
          f"step is faster, the server then runs K + 2 instead of N + 1 tokens): {comp}.", ""]
    if dev.type == "cpu":
        md += ["The CPU is shared by several jobs here, so step times are noisy (the columns are "
               "medians of interleaved steps). On the CPU the split step also pays the float32 "
               "quantize/pack/unpack of the wire and the explicit [CLS]-attention pass. With bf16 "
               "autocast the saved bytes grow: autograd also keeps the bf16 casts of the frozen "
               "weights it multiplies by.", "",
               f"The GPU rows are the next section (`{GPU_COMMAND}`, batch 64, memory = "
               "`torch.cuda.max_memory_allocated`).", ""]
    else:
        md += ["On a GPU the split step pays for its wire: every step ships the activations and the "
               "gradient as bytes through host memory (ViT-B/16 fp32 without compression: 38.7 MB "
               "each way: a device-to-host copy, the framing, a host-to-device copy), which the plain "
               "step keeps on the GPU. The first GPU run (commit 210a829, same command) measured the "
               "split step at 3.89× (fp32) and 13.2× (bf16) the plain ViT-B/16 step: the wire copied "
               "each message about six times (bytes concatenations and slices). Now a frame is "
               "joined once from the payload's buffers and parsed as views, the device-to-host copy "
               "goes through page-locked memory, the receiver copies the message's bytes straight "
               "to its device, and q ≤ 8 codes cross as bytes and are dequantized on the device. "
               "The ≤ 1.1× target holds on the CPU, where compute dominates, and for ViT-B/16 fp32 "
               "with compression; without compression a GPU would need the activations to stay on "
               "the device (an in-process transport), which would no longer carry the bytes a real "
               "deployment sends.", ""]
    write_section(name, "\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
