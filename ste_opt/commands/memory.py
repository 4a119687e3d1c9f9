"""``ste-opt memory``: the analytic training-memory table of a ViT split (no model is built).

    ste-opt memory --model vit_base_patch16_224 --batch 64 --cut 6 --rank 16
    ste-opt memory --model vit_base_patch32_224 --method tsflora --tokens-kept 38 --bits 8 --json
    ste-opt memory --depth 12 --width 768 --heads 12 --patch 16 --img 224 --method all
"""
from __future__ import annotations

import sys


def register(sub):
    from ..learning_hooks.memory_model import METHODS, OPTIMIZERS, PRECISIONS
    from ._common import add_output

    p = sub.add_parser("memory", help="analytic client/server training memory of a ViT split",
                       description="Predict the bytes one training step holds on the client and the "
                                   "server (params, grads, optimizer, saved activations, comm buffers), "
                                   "from the model's numbers alone. See docs/memory.md.")
    p.add_argument("--model", default="vit_base_patch16_224",
                   help="timm ViT name (vit_{tiny,small,base,large,huge}_patch{P}_{S}, vit_compact, ...)")
    p.add_argument("--depth", type=int, help="override: number of blocks")
    p.add_argument("--width", type=int, help="override: embedding width D")
    p.add_argument("--heads", type=int, help="override: attention heads")
    p.add_argument("--patch", type=int, help="override: patch size")
    p.add_argument("--img", type=int, help="override: image side (px)")
    p.add_argument("--mlp-ratio", type=float, help="override: MLP ratio")
    p.add_argument("--classes", type=int, default=100, help="classes of the new head (default 100)")
    p.add_argument("--method", default="all", choices=["all", *METHODS],
                   help="training method, or 'all' for one column pair per method (default)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--cut", type=int, default=6, help="client blocks L_c (split methods)")
    p.add_argument("--rank", type=int, default=16, help="LoRA rank")
    p.add_argument("--targets", default="qkv", help="LoRA targets, comma-separated (qkv,proj)")
    p.add_argument("--tokens-kept", type=int, default=None,
                   help="patches kept K (st-sflora, tsflora); the wire carries K + 2 tokens")
    p.add_argument("--bits", type=int, default=None, help="uplink bits (tsflora default 8, else 32)")
    p.add_argument("--grad-bits", type=int, default=32)
    p.add_argument("--precision", default="fp32", choices=sorted(PRECISIONS))
    p.add_argument("--optimizer", default="sgd", choices=sorted(OPTIMIZERS))
    p.add_argument("--attention", default="fused", choices=["fused", "eager"])
    p.add_argument("--clients-per-round", type=int, default=1,
                   help="SFL-V1 server adapter copies (and FedLoRA adapters received)")
    p.add_argument("--unit", default="GiB", choices=["B", "KiB", "MiB", "GiB"])
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    add_output(p, help="also write the JSON to this file (.json; '-' for standard output)")
    p.set_defaults(func=run)


def _estimates(args) -> list:
    from ..learning_hooks.memory_model import METHODS, estimate, vit_spec

    spec = vit_spec(args.model, num_classes=args.classes, depth=args.depth, embed_dim=args.width,
                    num_heads=args.heads, patch_size=args.patch, img_size=args.img,
                    mlp_ratio=args.mlp_ratio)
    methods = list(METHODS) if args.method == "all" else [args.method]
    out = []
    for m in methods:
        select = m in ("st-sflora", "tsflora")
        bits = args.bits if args.bits is not None else (8 if m == "tsflora" else None)
        if m in ("fedlora", "locallora"):
            bits = None
        out.append(estimate(spec, method=m, batch=args.batch, cut=args.cut, lora_rank=args.rank,
                            lora_targets=tuple(t for t in args.targets.split(",") if t),
                            tokens_kept=args.tokens_kept if select else None, bits=bits,
                            grad_bits=args.grad_bits, precision=args.precision,
                            optimizer=args.optimizer, attention=args.attention,
                            clients_per_round=args.clients_per_round))
    return out


def run(args) -> int:
    from ._common import STDIO, check_output, dumps_json

    out = check_output(args.output, suffixes=(".json",), stdout_ok=True)   # before any work
    ests = _estimates(args)
    doc = {"model": ests[0].spec.name, "spec": ests[0].as_dict()["spec"],
           "estimates": [{k: v for k, v in e.as_dict().items() if k != "spec"} for e in ests]}
    text = dumps_json(doc) + "\n"
    if out is not None and out != STDIO:
        out.write_text(text)
    if args.json or out == STDIO:
        sys.stdout.write(text)
        return 0
    scale = {"B": 1, "KiB": 2 ** 10, "MiB": 2 ** 20, "GiB": 2 ** 30}[args.unit]
    s = ests[0].spec
    print(f"{s.name}: depth {s.depth}, width {s.embed_dim}, heads {s.num_heads}, patch {s.patch_size}, "
          f"{s.img_size}px ({s.num_patches} patches), {s.num_classes} classes; batch {args.batch}, "
          f"LoRA r={args.rank} on {args.targets}, {args.precision}, {args.optimizer}, "
          f"{args.attention} attention. Unit: {args.unit}.")
    comps = ("params", "grads", "optimizer", "activations", "comm", "peak", "workspace")
    head = ["method", "side", *comps, "tokens", "bits"]
    rows = []
    for e in ests:
        for side in ("client", "server"):
            se = getattr(e, side)
            rows.append([e.method, side, *(f"{getattr(se, c) / scale:.4g}" for c in comps),
                         str(e.settings.get("tokens_on_wire", "-")), str(e.settings.get("bits") or "-")])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    print("  ".join(h.rjust(w) for h, w in zip(head, widths, strict=True)))
    for r in rows:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)))
    print("peak = params + grads + optimizer + activations + comm (what the trainer's meter measures); "
          "workspace = the largest transient forward buffer, not in peak.")
    return 0
