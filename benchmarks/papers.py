"""The four papers side by side: every published figure/table we can check, regenerated from code.

Writes ``docs/REPRODUCTION.md`` (and ``benchmarks/results/papers.csv``, one row per item): for
ST-SFLora, TSFLora, SFLAM and GenFL, one row per published figure or table in the research notes,
with the paper's value, ours, the command that produces ours, a verdict (matches / differs /
cannot run here) and why. Nothing in the "ours" column is typed by hand: cheap quantities
(solver sweeps, the analytic memory model, payload formulas) are recomputed here; training
results are read from the CSVs that the other benchmarks wrote (``benchmarks/results/*.csv``),
and each row names that benchmark's command.

    python -m benchmarks.papers            # full (about 2 min: 10 seeds per solver sweep)
    python -m benchmarks.papers --quick    # 3 seeds per sweep (about 30 s)
"""
from __future__ import annotations

import argparse
import csv
import math
import time
from pathlib import Path

import numpy as np

from benchmarks.common import ROOT, md_table, results_dir, write_csv

DOC = ROOT.parent / "docs" / "REPRODUCTION.md"
MATCH, DIFFER, CANNOT, PARTIAL = "matches", "differs", "cannot run here", "shape matches"
GB, GIB = 1e9, 2 ** 30


def _read(name: str) -> list[dict]:
    path = results_dir() / f"{name}.csv"
    if not path.is_file():
        return []
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _f(x) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def row(paper, item, paper_value, ours, command, verdict, why=""):
    return {"paper": paper, "item": item, "paper value": paper_value, "ours": ours, "command": command,
            "verdict": verdict, "why": why}


# =========================================================================== ST-SFLora
def _ste_sweep(seeds, **preset):
    """Mean STE and mean K (admitted devices) of alternating, the ablations and global."""
    from ste_opt import STEProblem, solve
    from ste_opt.errors import InfeasibleError
    from ste_opt.scenarios import make_scenario

    denom = preset.pop("denominator", "round")
    fixed_w = preset.pop("fixed_power_w", None)
    out = {}
    for seed in seeds:
        scen = make_scenario("st-sflora", n_devices=10, seed=seed, **preset)
        try:
            pr = STEProblem(scen, denominator=denom)
        except InfeasibleError:   # not even K_min for the admitted devices fits the budget
            for m in ("alternating", "fixed_power", "equal_bandwidth", "all_tokens", "global"):
                out.setdefault(m, {})[seed] = None
            continue
        for m in ("alternating", "fixed_power", "equal_bandwidth", "all_tokens", "global"):
            try:
                sol = solve(pr, method=m, **({"power_w": fixed_w} if m == "fixed_power" and fixed_w else {}))
                tok = np.asarray(sol.tokens, dtype=float)
                out.setdefault(m, {})[seed] = (float(sol.objective), float(np.mean(tok[tok > 0])))
                if m == "alternating":   # why the ablations lose little: power at p_max, shares ≈ equal
                    on = tok > 0
                    pw, bw = np.asarray(sol.power, dtype=float)[on], np.asarray(sol.bandwidth, dtype=float)[on]
                    pmax = np.broadcast_to(np.asarray(scen.p_max_w, dtype=float), tok.shape)[on]
                    out.setdefault("_evidence", {})[seed] = (float(np.mean(pw >= pmax * (1 - 1e-6))),
                                                             float(np.mean(np.abs(bw / np.mean(bw) - 1))))
            except InfeasibleError:
                out.setdefault(m, {})[seed] = None
    return out


def _losses(sweep):
    """Relative STE loss of each ablation against alternating over the seeds where all are feasible."""
    names = ("fixed_power", "equal_bandwidth", "all_tokens")
    common = [s for s in sweep["alternating"] if all(sweep[m].get(s) for m in ("alternating", *names))]
    res = {}
    for m in names:
        if not common:
            res[m] = (math.nan, 0)
            continue
        full = np.array([sweep["alternating"][s][0] for s in common])
        ab = np.array([sweep[m][s][0] for s in common])
        res[m] = (float(np.mean(1 - ab / full)) * 100, len(common))
    infeas = {m: sum(1 for v in sweep[m].values() if v is None) for m in names}
    return res, infeas, len(sweep["alternating"])


def st_sflora(quick: bool) -> list[dict]:
    P = "ST-SFLora"
    rows = []
    seeds = range(3 if quick else 10)
    sweep_cmd = "python -m benchmarks.papers"

    # ---- Fig. 6: STE against K, both denominators (benchmarks/ste_scaling.py output)
    ck = _read("ste_scaling_common_k")
    cmd6 = "python -m benchmarks.ste_scaling"
    for denom in ("round", "uplink"):
        pts = {}
        for r in ck:
            if r["denominator"] == denom and r["feasible"] == "True":
                pts.setdefault(int(r["K"]), []).append(_f(r["ste"]))
        if not pts:
            rows.append(row(P, f"Fig. 6 STE vs K ({denom})", "peak at K ≈ 135, STE ≈ 43.45", "no CSV",
                            cmd6, CANNOT, "run the command first"))
            continue
        ks = sorted(pts)
        means = [float(np.mean(pts[k])) for k in ks]
        kbest = ks[int(np.argmax(means))]
        ours = (f"mean over seeds peaks at K = {kbest} (STE {max(means):.2f}); K_min={ks[0]}: {means[0]:.2f}, "
                f"K={ks[-1]}: {means[-1]:.2f}")
        if denom == "round":
            verdict = MATCH if abs(kbest - 135) <= 20 else DIFFER
            why = ("interior peak as in the paper (the client's forward time T0 in the straggler time makes "
                   "the first tokens cheap); the STE value depends on the preset's units and scale "
                   "(retention summed over B = 64, the preset's path loss), so only K is compared")
        else:
            verdict = DIFFER if kbest == ks[0] else PARTIAL
            why = ("with the upload time alone in the denominator T^U is affine in K and the retention "
                   "concave, so STE(K) falls from K_min: no interior peak. The paper's peak needs a fixed "
                   "term in the denominator, i.e. the \"round\" reading")
        rows.append(row(P, f"Fig. 6 STE vs common K, denominator \"{denom}\"", "peak at K ≈ 135 (STE ≈ 43.45)",
                        ours, cmd6, verdict, why))

    # ---- Fig. 8a: convergence
    conv = _read("ste_scaling_convergence")
    if conv:
        runs = {}
        for r in conv:
            if r["variant"] == "alternating" and r["M"] == "10":
                runs.setdefault(r["seed"], []).append(_f(r["ste"]))
        conv_at = []
        for hist in runs.values():
            h = np.asarray(hist)
            last = h[-1]
            conv_at.append(int(np.argmax(np.abs(h - last) <= 1e-9 * abs(last))))
        rows.append(row(P, "Fig. 8a alternating converges", "≤ 5 outer iterations",
                        f"STE stops changing after ≤ {max(conv_at)} iteration(s) on {len(conv_at)} seeds",
                        cmd6, MATCH, "monotone block-coordinate ascent; the preset's instances settle in 1–2 iterations"))

    # ---- Fig. 8b: ablation at E_max = 0.8 J on the preset and on variants
    paper_loss = {"fixed_power": 100 * (1 - 40.5 / 43.45), "equal_bandwidth": 100 * (1 - 38.1 / 43.45),
                  "all_tokens": 100 * (1 - 35.2 / 43.45)}
    labels = {"fixed_power": "no power control", "equal_bandwidth": "no bandwidth allocation",
              "all_tokens": "no token selection"}
    variants = {"preset (E_max 0.8 J, 50 MHz, \"round\")": {},
                "fixed power p_max/2 (the stub's start)": {"fixed_power_w": 0.1},
                "W_tot 35 MHz": {"bandwidth_per_device_hz": 3.5e6},
                "\"uplink\" denominator": {"denominator": "uplink"},
                "\"uplink\", fixed power p_max/2": {"denominator": "uplink", "fixed_power_w": 0.1},
                "\"uplink\", fixed power p_max/2, W_tot 35 MHz": {"denominator": "uplink", "fixed_power_w": 0.1,
                                                                 "bandwidth_per_device_hz": 3.5e6}}
    ab_rows, ab_loss = [], {}
    for vname, opts in variants.items():
        sw = _ste_sweep(seeds, **dict(opts))
        loss, infeas, n = _losses(sw)
        ab_loss[vname] = loss
        ab_rows.append({"variant": vname, **{labels[m]: f"{-loss[m][0]:+.1f} % ({infeas[m]}/{n} infeasible)"
                                             for m in labels}, "common seeds": loss["all_tokens"][1]})
    pre_name = next(iter(variants))
    pre = ab_loss[pre_name]
    ev = list(_ste_sweep(seeds)["_evidence"].values())
    at_pmax, bw_dev = float(np.mean([e[0] for e in ev])), float(np.mean([e[1] for e in ev]))
    order_paper = sorted(labels, key=lambda m: -paper_loss[m])
    order_ours = sorted(labels, key=lambda m: -pre[m][0])
    same = order_ours == order_paper
    half = max(1, len(list(seeds)) // 2)
    defined = {v: lo for v, lo in ab_loss.items() if v != pre_name and lo["all_tokens"][1] >= half
               and all(np.isfinite(lo[m][0]) for m in labels)}
    big = max(defined, key=lambda v: sum(defined[v][m][0] for m in labels)) if defined else None
    rows.append(row(P, "Fig. 8b ablation (E_max 0.8 J)",
                    " / ".join(f"{labels[m]} {-paper_loss[m]:+.1f} %" for m in labels),
                    " / ".join(f"{labels[m]} {-pre[m][0]:+.1f} %" for m in labels) + f" ({pre['all_tokens'][1]} common seeds)",
                    sweep_cmd, DIFFER,
                    ("same order" if same else "order " + " > ".join(labels[m] for m in order_ours))
                    + f" but much smaller losses: on the preset the full method already transmits at p_max on "
                    f"{at_pmax:.0%} of the admitted devices (the \"round\" denominator's short upload windows give "
                    f"E_max/t ≥ p_max), so fixing the power at p_max changes nothing, and its bandwidth shares "
                    f"differ from the equal split by only {bw_dev:.0%} on average; no token selection is also "
                    "infeasible on some seeds (a device cannot send 196 tokens in its standing window)"))
    if big is not None:
        lo = ab_loss[big]
        rows.append(row(P, "Fig. 8b on a preset variant", " / ".join(f"{-paper_loss[m]:+.1f} %" for m in labels),
                        f"{big}: " + " / ".join(f"{labels[m]} {-lo[m][0]:+.1f} %" for m in labels),
                        sweep_cmd, PARTIAL if all(lo[m][0] > 1 for m in labels) else DIFFER,
                        "the variant (of those in the table below, feasible together on at least half the seeds) with "
                        "the largest total loss. The "
                        "paper does not say at which power its \"no power control\" runs: at p_max (our default) it "
                        "loses nothing because the optimum is p_max; at p_max/2 it loses. The upload-only "
                        "denominator makes the token choice matter much more; where an ablation cannot serve every "
                        "admitted device it is counted infeasible, not as a loss"))

    # ---- Fig. 8c: K against W_tot and E_max, alternating and global
    k_rows = []
    for axis, values in (("W_tot (MHz)", (20, 35, 50, 75, 100)), ("E_max (J)", (0.2, 0.4, 0.6, 0.8, 1.0))):
        for v in values:
            opts = {"bandwidth_per_device_hz": v * 1e5} if axis.startswith("W") else {"energy_max_j": v}
            sw = _ste_sweep(seeds, **opts)
            r = {"axis": axis, "value": v}
            for m in ("alternating", "global"):
                ks = [x[1] for x in sw[m].values() if x]
                r[f"mean K {m}"] = float(np.mean(ks)) if ks else math.nan
                r[f"mean STE {m}"] = float(np.mean([x[0] for x in sw[m].values() if x])) if ks else math.nan
            k_rows.append(r)
    write_csv("papers_fig8c", k_rows)
    for axis in ("W_tot (MHz)", "E_max (J)"):
        sub = [r for r in k_rows if r["axis"] == axis]
        for m in ("alternating", "global"):
            ks = [r[f"mean K {m}"] for r in sub]
            rising = all(b >= a - 1e-9 for a, b in zip(ks, ks[1:], strict=False)) and ks[-1] > ks[0] + 1
            gap = np.mean([1 - r["mean STE alternating"] / r["mean STE global"] for r in sub]) * 100
            ours = ", ".join(f"{r['value']:g}: {r[f'mean K {m}']:.1f}" for r in sub)
            why = ("K rises with the budget" if rising else
                   "K does not rise monotonically: the closed-form token step (Eq. 41) stops at the current "
                   "straggler time, so from a K_min start it stays near K_min when energy or bandwidth is "
                   "tight")
            if m == "alternating":
                lo = sub[0]
                why += (f"; alternating is {gap:.1f} % below the certified optimum on average over this sweep, "
                        f"{100 * (1 - lo['mean STE alternating'] / lo['mean STE global']):.0f} % at "
                        f"{axis.split()[0]} = {lo['value']:g} (mean K {lo['mean K alternating']:.0f} vs "
                        f"{lo['mean K global']:.0f}): the closed-form token step (Eq. 41) only fills K up to the "
                        "current straggler time")
            rows.append(row(P, f"Fig. 8c K_m against {axis}, `{m}`", "chosen K rises with W_tot and with E_max",
                            f"mean K: {ours}", sweep_cmd, MATCH if rising else DIFFER, why))

    # ---- Fig. 10: accuracy against K
    acc = _read("closed_loop_acc_vs_k")
    if acc:
        full = [r for r in acc if r["tokens_kept"] == "all"][0]
        n = int(full["K"])
        pts = ", ".join(f"K={r['K']}/{n}: {_f(r['final_acc_%']):.1f} %" for r in acc)
        half = [r for r in acc if r["tokens_kept"] != "all" and int(r["K"]) >= n / 2]
        drop = min(_f(full["final_acc_%"]) - _f(r["final_acc_%"]) for r in half) if half else math.nan
        rows.append(row(P, "Fig. 10 accuracy against K", "K ∈ [64, 160] of 196; K ≥ 128 (65 %) close to all tokens",
                        pts, "python -m benchmarks.closed_loop --parts acc_vs_k", PARTIAL,
                        f"same saturating shape: at ≥ half the tokens the loss is {drop:.1f} points; compact ViT "
                        "on 8×8 digits (64 patches), 6 rounds, one seed — not ViT-B/16 on ImageNet100"))
    rows.append(row(P, "Table I top-1 accuracy (ViT-B/16, ImageNet100 / Flowers-102 / CUB)",
                    "ST-SFLora 85.81 / 96.43 / 73.69; SFLora 89.09 / 98.69 / 79.84", "–", "–", CANNOT,
                    "needs the three datasets, pretrained ViT-B/16 weights and a GPU (no downloads here)"))
    rows += table2()
    return rows, ab_rows, k_rows


def table2() -> list[dict]:
    """ST-SFLora Table II from the analytic memory model (ViT-B/16, B = 64, cut 6, r 16)."""
    from ste_opt.learning_hooks.memory_model import estimate
    from ste_opt.model.payload import payload_bits

    P = "ST-SFLora"
    cmd = "ste-opt memory --model vit_base_patch16_224 --batch 64 --cut 6 --rank 16 --tokens-kept 64"
    kw = dict(batch=64, lora_rank=16, num_classes=100)
    out = []
    paper = {"fedlora": 9.0, "sflora": 2.3, "st-sflora": 1.4}
    gpu = _read("gpu_memory")

    def est(m, cut=6, **extra):
        return estimate("vit_base_patch16_224", method=m, cut=cut,
                        tokens_kept=64 if m == "st-sflora" else None, **kw, **extra)

    ests = {m: {"fused": est(m), "eager": est(m, attention="eager"),
                "adam": est(m, attention="eager", optimizer="adam")} for m in paper}
    for m, pv in paper.items():
        f, eg = ests[m]["fused"].client, ests[m]["eager"].client
        ours = (f"{f.peak / GIB:.2f} GiB saved-for-backward peak (fused attention, what the meter measures); "
                f"{eg.peak / GIB:.2f} eager; {eg.peak_with_workspace / GIB:.2f} eager + forward workspace")
        if m == "fedlora":
            why = (f"activations are {f.activations / f.peak:.0%} of our peak; eager attention adds "
                   f"{(eg.peak - f.peak) / GIB:.2f} GiB of B·H·T² softmax maps, Adam instead of SGD only "
                   f"{(ests[m]['adam'].client.peak - eg.peak) / GIB:.3f} GiB (LoRA is small); the remaining "
                   f"{pv - eg.peak_with_workspace / GIB:.1f} GiB must be what a GPU reading adds (CUDA context, "
                   "the caching allocator's reserve, cuDNN/cuBLAS workspaces), which the model does not include")
        elif m == "sflora":
            cuts = {c: est(m, cut=c, attention="eager").client.peak_with_workspace / GIB for c in range(1, 12)}
            c_best = min(cuts, key=lambda c: abs(cuts[c] - pv))
            why = (f"ours is above the paper even before any GPU overhead ({f.peak / GIB:.2f} vs {pv}); with "
                   f"eager attention and workspace the paper's {pv} GiB corresponds to a client of {c_best} "
                   f"blocks ({cuts[c_best]:.2f} GiB), so the paper's SFLora client is probably shallower than 6 "
                   "blocks or trains fewer adapters")
        else:
            why = (f"the frozen client saves nothing for backward: our peak is parameters "
                   f"({f.params / GIB:.2f} GiB) + the upload buffer; with the forward working set it is "
                   f"{eg.peak_with_workspace / GIB:.2f} GiB; the rest of the paper's {pv} must again be the GPU "
                   "process overhead")
        verdict = MATCH if abs(eg.peak_with_workspace / GIB - pv) / pv <= 0.15 else DIFFER
        g = {r["attention"]: r for r in gpu if r["method"] == m}
        if set(g) == {"fused", "eager"}:   # benchmarks.gpu_memory: what CUDA reads on a real GPU
            ours += (f"; on a GPU (`python -m benchmarks.gpu_memory`): allocator peak "
                     f"{_f(g['fused']['allocated_GiB']):.2f} fused / {_f(g['eager']['allocated_GiB']):.2f} "
                     f"eager GiB, whole process {_f(g['fused']['device_used_GiB']):.2f} / "
                     f"{_f(g['eager']['device_used_GiB']):.2f} GiB")
            proc = _f(g["fused"]["device_used_GiB"])
            over = proc - _f(g["fused"]["allocated_GiB"])
            off = _f(g["fused"]["allocated_vs_model_ws"]) - 1
            why = (f"measured on a GPU, CUDA's allocator peak is {off:+.0%} off the model's peak + working "
                   f"set (fused attention) and the whole process adds {over:.2f} GiB to it "
                   f"(CUDA context {_f(g['fused']['context_GiB']):.2f} GiB, library handles, the pool's slack); ")
            if m == "fedlora":
                why += (f"the paper's {pv} GB is {pv - proc:.1f} GiB above our whole process: its FedLoRA "
                        "device probably adapts more projections than qkv (its LoRA is larger: see the broadcast row), "
                        "each saving its input for backward")
            elif m == "sflora":
                why += (f"ours is {proc - pv:.1f} GiB above the paper, so the paper's SFLora client is "
                        f"probably shallower than 6 blocks (the model gives {cuts[c_best]:.2f} GiB at {c_best}) or "
                        "trains fewer adapters")
            else:
                why += ("the frozen client's peak is its weights and one block's forward working set; "
                        f"CUDA's reading of the whole process is {proc:.2f} GiB against the paper's {pv}")
            verdict = MATCH if abs(proc - pv) / pv <= 0.15 else DIFFER
        out.append(row(P, f"Table II client GPU memory, {m} (ViT-B/16, B 64)", f"{pv} GB", ours, cmd, verdict, why))
    red_paper = 1 - 1.4 / 9.0
    fed, st = ests["fedlora"]["fused"].client.peak / GIB, ests["st-sflora"]["fused"].client.peak / GIB
    red_ours = 1 - st / fed
    fed_w = ests["fedlora"]["eager"].client.peak_with_workspace / GIB
    st_w = ests["st-sflora"]["eager"].client.peak_with_workspace / GIB
    red_ws = 1 - st_w / fed_w
    x = (1.4 * fed_w - 9.0 * st_w) / (9.0 - 1.4)   # (st + x) / (fed + x) = 1.4 / 9.0
    out.append(row(P, "Table II headline: client memory ST-SFLora vs FedLoRA", f"−{red_paper:.1%}",
                   f"−{red_ours:.1%} (meter's peak); −{red_ws:.1%} with eager attention and forward workspace",
                   cmd, DIFFER,
                   "a frozen forward-only client holds nothing for backward, so against a training client the "
                   f"reduction is larger than the paper's; a constant per-process overhead of {x:.2f} GiB added "
                   "to both sides gives the paper's ratio exactly"))
    tok = payload_bits(64, 196, 768, 32, extra_tokens=0) / 8 / 2 ** 20
    tok64 = payload_bits(64, 64, 768, 32) / 8 / 2 ** 20
    out.append(row(P, "Table II token activations per batch", "3N/16 MB = 36.75 (N = 196); 3K/16 MB (K = 64: 12.0)",
                   f"{tok:.2f} MiB at N = 196; {tok64:.2f} MiB at K = 64 (+[CLS] + merged token)",
                   "python -c 'from ste_opt.model.payload import payload_bits; print(payload_bits(64, 64, 768, 32))'",
                   MATCH, "B·D·32 bits per token = 3/16 MiB (the paper's \"MB\" is MiB); ours adds the 2 extra tokens"))
    e = ests["fedlora"]["fused"]
    lora = (e.client.grads - (768 * 100 + 100) * 4) / 2 ** 20
    whole = e.client.params / 2 ** 20
    out.append(row(P, "Table II model broadcast / LoRA (FedLoRA)", "335.3 MB / 7.9 MB",
                   f"{whole:.1f} MiB whole model incl. LoRA and head; {lora:.2f} MiB LoRA (r 16 on qkv of 12 blocks)",
                   cmd.replace("--tokens-kept 64", "--method fedlora"), DIFFER,
                   f"the paper's LoRA size is {7.9 / lora:.1f}× ours: it adapts more projections than qkv (the "
                   "notes do not say which); the broadcast is close to the whole backbone"))
    return out


# =========================================================================== TSFLora
def tsflora_ratios(batch: int = 64, dim: int = 768, tokens: int = 50) -> list[dict]:
    """Uplink ratio fp32 with all ``tokens`` / b-bit with w tokens on the wire (payload formula:
    tokens × D × bits + fp16 scale/offset per token below 32 bits), ViT-B/32 by default."""
    from ste_opt.model.payload import payload_bits

    base = payload_bits(batch, tokens, dim, 32, extra_tokens=0)
    return [{"tokens on the wire": w, **{f"{b}-bit": base / payload_bits(batch, w, dim, b, extra_tokens=0)
                                         for b in (8, 4, 2)}} for w in range(10, tokens + 1)]


def tsflora() -> tuple[list[dict], list[dict]]:
    from ste_opt.learning_hooks.memory_model import estimate
    from ste_opt.model.payload import payload_bits

    P = "TSFLora"
    rows = []
    B, D = 64, 768
    base = payload_bits(B, 50, D, 32, extra_tokens=0)
    ratio_rows = tsflora_ratios()
    hits = [f"{r['tokens on the wire']} tokens at {b} bits ({r[f'{b}-bit']:.2f}×)"
            for r in ratio_rows for b in (8, 4, 2) if abs(r[f"{b}-bit"] - 6.8) <= 0.1]
    write_csv("papers_tsflora_ratios", ratio_rows)
    at = {w: next(r for r in ratio_rows if r["tokens on the wire"] == w) for w in (29, 30, 40, 42)}
    cmd = "python -m benchmarks.papers"
    best8 = min(ratio_rows, key=lambda r: abs(r["8-bit"] - 6.8))
    rows.append(row(P, "\"up to 6.8× less communication\" (ViT-B/32, B 64, 50 tokens fp32 baseline)", "6.8×",
                    f"within ±0.1 of 6.8: {'; '.join(hits) or 'none'}. 8-bit: 30 tokens {at[30]['8-bit']:.2f}×, "
                    f"40 {at[40]['8-bit']:.2f}×, 42 (40 + [CLS] + merged) {at[42]['8-bit']:.2f}×; 4-bit: 40 tokens "
                    f"{at[40]['4-bit']:.2f}×, 50 tokens {ratio_rows[-1]['4-bit']:.2f}×",
                    cmd, PARTIAL,
                    f"by the payload formula (tokens × D × bits + fp16 scale/offset per token) 6.8× is 8-bit with "
                    f"{best8['tokens on the wire']} tokens on the wire; 8-bit with 30 tokens is "
                    f"{at[30]['8-bit']:.2f}× and with 40 tokens {at[40]['8-bit']:.2f}×, so the paper's headline is "
                    f"the ≈ 30-token operating point ({best8['tokens on the wire']} tokens on the wire give "
                    f"{best8['8-bit']:.2f}×), not the 40-token one; at 4 bits even all 50 tokens give {ratio_rows[-1]['4-bit']:.2f}×"))
    fp32_batch = base / 8 / 1e6
    per = {w: payload_bits(B, w, D, 8, extra_tokens=0) / 8 / 1e6 for w in range(10, 51)}
    n_fp32 = 233.5 / fp32_batch
    w_same = min(per, key=lambda w: abs(34.3 / per[w] - n_fp32))
    rows.append(row(P, "233.5 MB (SFLora fp32) vs 34.3 MB (TSFLora 8-bit, 40 tokens) per round",
                    f"ratio {233.5 / 34.3:.2f}",
                    f"per batch of 64: fp32 50 tokens {fp32_batch:.3f} MB → 233.5 MB = {n_fp32:.1f} batches; "
                    f"8-bit 40 tokens {per[40]:.3f} MB → 34.3 MB = {34.3 / per[40]:.1f} batches; 8-bit "
                    f"{w_same} tokens {per[w_same]:.3f} MB → {34.3 / per[w_same]:.1f} batches", cmd, DIFFER,
                    f"at 40 tokens the two totals would count different numbers of batches ({n_fp32:.1f} vs "
                    f"{34.3 / per[40]:.1f}); the same batch count (≈ {n_fp32 * 64:.0f} samples of activations, no "
                    f"gradients) needs {w_same} tokens at 8 bits — the 30-token point. So the summary's \"40 tokens\" "
                    "label on 34.3 MB is probably wrong, or the totals count more than activations"))

    # ---- memory claim (41 %) against each baseline
    mem_rows = []
    cands = []
    for cut in (2, 4, 6, 7, 8):
        kw = dict(batch=B, cut=cut, lora_rank=32, num_classes=100)
        ref = {m: estimate("vit_base_patch32_224", method=m, **kw) for m in ("fedlora", "splitlora", "sflora")}
        for kept, bits in ((38, 8), (28, 8), (28, 4)):
            ts = estimate("vit_base_patch32_224", method="tsflora", tokens_kept=kept, bits=bits, **kw)
            r = {"cut": cut, "TSFLora": f"{kept + 2} tokens, {bits}-bit", "device GiB": ts.client.peak / GIB,
                 "server GiB": ts.server.peak / GIB}
            for m, side in (("fedlora", "client"), ("splitlora", "client"), ("sflora", "client"),
                            ("splitlora", "server"), ("sflora", "server")):
                red = 1 - getattr(ts, side).peak / getattr(ref[m], side).peak
                r[f"{side} saving vs {m}"] = f"{red:.1%}"
                cands.append((abs(red - 0.41), red, side, m, cut, kept + 2, bits))
            mem_rows.append(r)
    write_csv("papers_tsflora_memory", mem_rows)
    c6 = next(r for r in mem_rows if r["cut"] == 6 and r["TSFLora"].startswith("40"))
    close = sorted(cands)[:3]
    rows.append(row(P, "\"41 % memory saving\" (device peak, against SplitLoRA \"and similar\")", "−41 %",
                    f"cut 6, 40 tokens 8-bit: device saving vs FedLoRA {c6['client saving vs fedlora']}, vs "
                    f"SplitLoRA {c6['client saving vs splitlora']}, vs SFLora {c6['client saving vs sflora']}; "
                    f"server vs SFLora {c6['server saving vs sflora']}. Nearest to 41 %: "
                    + "; ".join(f"{side} vs {m} {red:.1%} (cut {cut}, {w} tokens {b}-bit)"
                                for _, red, side, m, cut, w, b in close),
                    "ste-opt memory --model vit_base_patch32_224 --rank 32 --method all --tokens-kept 38 --bits 8",
                    DIFFER,
                    "token selection and quantization act after the client blocks, so they cannot shrink the "
                    "device's saved activations: against SplitLoRA/SFLora the device saves ≈ 0 %. A saving near "
                    "41 % is the device against FedLoRA with the split after block 7 of 12, or the server side "
                    "with fewer tokens — the claim holds only against FedLoRA/LocalLoRA (or for the server)"))
    tr = _read("training")
    if tr:
        by = {r["config"]: r for r in tr}
        sf, t60 = by.get("sflora_fp32"), by.get("tsflora_8bit_60")
        if sf and t60:
            d = 100 * (_f(t60["final_acc"]) - _f(sf["final_acc"]))
            rows.append(row(P, "Table III accuracy TSFLora 8-bit vs SFLora (CIFAR-100, ViT-B/32)",
                            "89.04 vs 89.97 (40 tokens, −0.93); 87.10 vs 89.97 (30 tokens, −2.87)",
                            f"digits, compact ViT: TSFLora 8-bit 60 % tokens {100 * _f(t60['final_acc']):.2f} vs "
                            f"SFLora fp32 {100 * _f(sf['final_acc']):.2f} ({d:+.2f} points)",
                            "python -m benchmarks.training", PARTIAL,
                            "same small loss; CIFAR-100/TinyImageNet with pretrained ViT-B/32 need downloads and a GPU"))
        t2 = by.get("tsflora_2bit_80")
        if t2 and sf:
            rows.append(row(P, "Fig. 3 \"2-bit is unstable\"", "large drop at 2 bits",
                            f"2-bit 80 % tokens {100 * _f(t2['final_acc']):.2f} vs fp32 {100 * _f(sf['final_acc']):.2f}",
                            "python -m benchmarks.training", DIFFER,
                            "per-token min–max 2-bit codes keep enough of the compact model's 96-d tokens on an easy "
                            "task; the paper's 768-d ViT-B/32 on CIFAR-100 is more sensitive"))
    return rows, mem_rows


# =========================================================================== SFLAM
def sflam() -> list[dict]:
    P = "SFLAM"
    rows = []
    from benchmarks.sflam import compare
    from ste_opt.learning_hooks.sflam_convergence import fitted_preset_options
    from ste_opt.problems.sflam import SFLAMProblem
    from ste_opt.scenarios import make_scenario

    cmd = "python -m benchmarks.papers"
    for label, opts in (("placeholder constants", {}), ("fitted constants", fitted_preset_options())):
        pr = SFLAMProblem(make_scenario("sflam", n_devices=10, seed=0, **opts), omega=0.5)
        c = {r["system"]: r for r in compare(pr)}
        sp, so, fl = c["SFL fp32, no allocation"], c["SFL fp32, optimized matching+power"], c["FL (whole model on device)"]
        rows.append(row(P, f"latency −47 % / energy efficiency ×3.1 ({label})",
                        "−47 % latency, ×3.1 energy efficiency (AI summary only, unverified)",
                        f"SFLAM vs fp32 SFL without allocation: −{sp['latency_reduction']:.0%} latency, "
                        f"×{sp['energy_ratio']:.2f} energy; vs optimized fp32 SFL −{so['latency_reduction']:.0%}, "
                        f"×{so['energy_ratio']:.2f}; vs FL −{fl['latency_reduction']:.0%}, ×{fl['energy_ratio']:.1f} "
                        f"(SFLAM at {c['SFLAM (bcd, omega=0.5)']['bits']} bits, R = {c['SFLAM (bcd, omega=0.5)']['rounds']})",
                        cmd, PARTIAL if abs(sp["energy_ratio"] - 3.1) < 0.5 else DIFFER,
                        "the magnitudes are of the paper's order against an unoptimized fp32 SFL; the paper's "
                        "baseline, parameters and the numbers themselves are not verified (the notes found them "
                        "only in an AI summary); the 32-bit gradient downlink bounds the latency gain"))
    mech = _read("sflam_mechanisms_bits")
    if mech:
        def choice(label, variant):
            out = []
            for w in sorted({float(r["omega"]) for r in mech}):
                bs = [int(r["bits"]) for r in mech if r["constants"] == label and r["variant"] == variant
                      and float(r["omega"]) == w]
                vals, cnt = np.unique(bs, return_counts=True)
                out.append(f"ω={w:g}: " + "/".join(f"{v}b×{n}" for v, n in zip(vals, cnt, strict=True)))
            return ", ".join(out)

        from ste_opt.model.convergence import rounds_to_target
        from ste_opt.scenarios.sflam import SFLAM_DEFAULTS

        def r_of(c):
            vals = []
            for b in (2, 4, 8, 16, 32):
                try:
                    vals.append(str(rounds_to_target(b, c["conv_a"], c["conv_b0"], c["conv_c"], c["epsilon"])))
                except Exception:  # noqa: BLE001 - the target is unreachable at b bits
                    vals.append("∞")
            return " / ".join(vals)

        r_pre, r_fit = r_of(SFLAM_DEFAULTS), r_of(fitted_preset_options())
        pre = choice("preset (placeholder)", "preset")
        fit = choice("fitted from pilots", "preset")
        var = choice("fitted from pilots", "κ = 1e-30")
        pvar = choice("preset (placeholder)", "κ = 1e-30")
        rows.append(row(P, "bit-width responds to the latency–energy weight ω (convergence coupling)",
                        "joint quantization / power / bandwidth trade-off (no numbers published)",
                        f"preset, placeholder constants: {pre}; preset, fitted: {fit}; κ = 1e-30 variant, "
                        f"fitted: {var}; κ = 1e-30, placeholder: {pvar}",
                        "python -m benchmarks.sflam_mechanisms", PARTIAL,
                        f"placeholder constants: R(b) for b = 2, 4, 8, 16, 32 = {r_pre}, so 8 bits wins at every ω on "
                        f"the preset. Fitted from the pilots: R(b) = {r_fit}, so 4 bits wins unless "
                        "the upload energy (which the bits scale) is a large part of a round's energy: on the preset "
                        "the device computation dominates; with 100× cheaper computation (κ = 1e-30) the energy-only "
                        "end (ω = 0) picks 2 bits. Several seeds per ω (\"4b×5\" = 4 bits on 5 seeds)"))
    sca = _read("sflam_mechanisms_sca")
    if sca:
        gaps = [_f(r["bcd_swap_gap_rel"]) for r in sca]
        fails = sum(1 for r in sca if r.get("bcd_swap_sca_error"))
        rows.append(row(P, "SCA power step (the paper's) against the exact τ search",
                        "SCA (no numbers published)",
                        f"bcd with SCA vs exact: median gap {np.nanmedian(gaps):.1e}, worst {np.nanmax(gaps):.1e} "
                        f"over {len(sca)} instances; the conic solver failed in {fails}",
                        "python -m benchmarks.sflam_mechanisms", MATCH,
                        "SCA converges to the exact step's optimum (it is its fixed point); see docs/sflam.md for "
                        "the default"))
    rows.append(row(P, "memory −62 %, scales to > 1000 devices", "AI summary only (unverified)",
                    "bcd solves N = 1000 (see benchmarks/RESULTS.md, SFLAM section)", "python -m benchmarks.sflam",
                    CANNOT, "no verified number to compare with; the paper's text and tables were not available"))
    return rows


# =========================================================================== GenFL
def genfl() -> tuple[list[dict], list[dict]]:
    P = "GenFL"
    pol = _read("genfl_policies")
    rows, table = [], []
    if not pol:
        return [row(P, "arms", "GenFL > FL and AIGC-only", "no CSV", "python -m benchmarks.genfl_policies",
                    CANNOT, "run the command first")], []
    last = max(int(r["round"]) for r in pol)
    parts = list(dict.fromkeys(r["partition"] for r in pol if r["partition"] != "any"))
    for part in parts:
        t = {"partition": part}
        vals = {}
        for arm in ("real_only", "aigc_only", "genfl", "genfl_weighted", "genfl_blend"):
            v = [100 * _f(r["test_acc"]) for r in pol if r["arm"] == arm and int(r["round"]) == last
                 and r["partition"] in (part, "any")]
            if v:
                vals[arm] = (float(np.mean(v)), float(np.std(v)), len(v))
                t[arm] = f"{vals[arm][0]:.1f} ± {vals[arm][1]:.1f} ({len(v)})"
        table.append(t)
        if {"real_only", "aigc_only", "genfl_blend"} <= set(vals):
            g, r_, a = vals["genfl_blend"][0], vals["real_only"][0], vals["aigc_only"][0]
            ok = g > r_ and g > a
            rows.append(row(P, f"GenFL (blend) vs FL and AIGC-only, {part}",
                            "GenFL above both (CIFAR-10/100, ResNet-18; gain +8.2–12.7 % is unverified)",
                            f"blend {g:.1f} %, FedAvg-GenFL {vals['genfl'][0]:.1f} %, weighted "
                            f"{vals['genfl_weighted'][0]:.1f} %, real-only {r_:.1f} %, AIGC-only {a:.1f} % "
                            f"(+{g - r_:.1f} over FL; {vals['genfl_blend'][2]} seeds, {last + 1} rounds)",
                            "python -m benchmarks.genfl_policies", PARTIAL if ok else DIFFER,
                            "digits (8×8) with a small CNN and the built-in flow-matching generator, not CIFAR with "
                            "diffusion and ResNet-18; AIGC-only is strong on digits, so GenFL's margin over it is small"))
    rows.append(row(P, "CIFAR-10/100 with a diffusion generator", "paper's setting", "–", "–", CANNOT,
                    "needs CIFAR and a pretrained diffusion model (downloads) and a GPU"))
    return rows, table


# =========================================================================== document
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 seeds per solver sweep instead of 10")
    ap.add_argument("-o", "--output", default=str(DOC))
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    ste_rows, ab_rows, k_rows = st_sflora(args.quick)
    ts_rows, mem_rows = tsflora()
    sf_rows = sflam()
    gf_rows, gf_table = genfl()
    all_rows = ste_rows + ts_rows + sf_rows + gf_rows
    write_csv("papers", all_rows)
    wall = time.perf_counter() - t0
    cmd = "python -m benchmarks.papers" + (" --quick" if args.quick else "")
    cols = ["item", "paper value", "ours", "verdict", "why", "command"]

    def section(rows):
        return md_table([{c: r[c] for c in cols} for r in rows])

    counts = {}
    for r in all_rows:
        counts.setdefault(r["paper"], {}).setdefault(r["verdict"], 0)
        counts[r["paper"]][r["verdict"]] += 1
    summary = [{"paper": p, **{v: c.get(v, 0) for v in (MATCH, PARTIAL, DIFFER, CANNOT)}} for p, c in counts.items()]
    md = f"""# Reproduction report: the four papers against this toolkit

Generated by `{cmd}` ({wall:.0f} s) — do not edit by hand. Every "ours" value is computed by
`benchmarks/papers.py` or read from the CSV of the benchmark named in its row (those benchmarks
record their own settings in `benchmarks/RESULTS.md`). The papers' values are from the research
notes (ST-SFLora and TSFLora: summaries of the full texts and a third-party stub; SFLAM and GenFL:
abstracts, code and AI summaries — see each row). Verdicts: **{MATCH}** (same value within the
stated tolerance), **{PARTIAL}** (the qualitative result holds on our smaller setting), **{DIFFER}**
(explained in the row), **{CANNOT}** (what it needs).

{md_table(summary)}
## ST-SFLora (arXiv 2605.26120)

{section(ste_rows)}
### Fig. 8b on the preset and variants ({len(list(range(3 if args.quick else 10)))} seeds each)

Loss of each ablation against the full `alternating` method (mean over the seeds where all are
feasible); the paper: no power control −6.8 %, no bandwidth allocation −12.3 %, no token
selection −19.0 %.

{md_table(ab_rows)}
### Fig. 8c: mean K_m of the admitted devices

{md_table(k_rows, fmt={"mean K alternating": ".1f", "mean STE alternating": ".2f", "mean K global": ".1f", "mean STE global": ".2f"})}
## TSFLora (arXiv 2605.23988)

{section(ts_rows)}
### Memory of TSFLora against each baseline (analytic model, ViT-B/32, B 64, r 32; saving = 1 − TSFLora / baseline)

{md_table(mem_rows, fmt={"device GiB": ".3f", "server GiB": ".3f"})}
## SFLAM (arXiv 2504.09114)

{section(sf_rows)}
## GenFL (arXiv 2503.20166)

{section(gf_rows)}
### Final test accuracy (%) by arm, mean ± std (seeds)

{md_table(gf_table)}
"""
    path = Path(args.output)
    path.write_text(md)
    print(f"wrote {path} ({len(all_rows)} rows, {wall:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
