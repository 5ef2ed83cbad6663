#!/usr/bin/env python3
"""attn_sdpa.py - PyTorch's scaled_dot_product_attention on the shapes host/attn-bench times, and
the plot/summary of both.

  python3 tools/bench/attn_sdpa.py time [--quick] [--reps N] [--out sdpa.jsonl]
      Times every SDPA backend PyTorch offers on this GPU (flash, efficient, cudnn; math only where
      its [H, q, k] logits fit) in bf16 with CUDA events (warm-up, median of N), q=4680, k=4680..300000,
      12 heads, d=128 (d=64 at k=32760), dense and with an additive per-key bias (an attn_mask of
      shape [1, H, 1, k], broadcast), in the model's layout ([tokens, H*D] rows viewed as
      [1, H, tokens, D]) and, at k=32760, also with contiguous [1, H, tokens, D] tensors.
      One JSON object per line (same keys as attn-bench's).

  python3 tools/bench/attn_sdpa.py pair --lib libwmfa.so [--quick] [--rounds N] [--out paired.jsonl]
      Head to head on the same tensors in one process: our kernel (a shared build of
      kernels/flash_attn.cu, called through ctypes on PyTorch's stream) and SDPA's cuDNN backend,
      timed in alternating rounds (median of the rounds' medians), so drifting clocks hit both; also
      reports max |ours - cuDNN| on the outputs.

  python3 tools/bench/attn_sdpa.py plot --ours ours.jsonl --sdpa sdpa.jsonl [--paired paired.jsonl] --commit HASH [--outdir docs/bench]
      Writes attention.json (all rows + GPU, date, commit), attention.png (TFLOP/s against k) and
      attention_table.md (the table for attention.md).
"""
import argparse
import datetime
import json
import os
import sys

KS_FULL = [4680, 9360, 18720, 32760, 65520, 150000, 300000]
KS_QUICK = [4680, 32760]
MQ, H = 4680, 12


def cmd_time(args):
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    dev = torch.device("cuda")
    gpu = torch.cuda.get_device_name(0)
    ks = KS_QUICK if args.quick else KS_FULL
    kmax = max(ks)
    backends = [("sdpa-flash", SDPBackend.FLASH_ATTENTION), ("sdpa-efficient", SDPBackend.EFFICIENT_ATTENTION),
                ("sdpa-cudnn", SDPBackend.CUDNN_ATTENTION), ("sdpa-math", SDPBackend.MATH)]
    out = open(args.out, "w") if args.out else None

    def emit(row):
        line = json.dumps(row)
        print(line, flush=True)
        if out:
            out.write(line + "\n")
            out.flush()

    def timed(fn, reps, flops):
        warm = 2 if flops > 2e12 else 5
        for _ in range(warm):
            fn()
        torch.cuda.synchronize()
        evs = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(reps)]
        for s, e in evs:
            s.record()
            fn()
            e.record()
        torch.cuda.synchronize()
        ts = sorted(s.elapsed_time(e) for s, e in evs)
        n = len(ts)
        med = ts[n // 2] if n % 2 else 0.5 * (ts[n // 2 - 1] + ts[n // 2])
        return med, ts[0]

    g = torch.Generator(device=dev)
    g.manual_seed(0)
    for D in (128, 64):
        hd = H * D
        q = (torch.rand(MQ, hd, device=dev, generator=g) * 4 - 2).to(torch.bfloat16)
        kbuf = (torch.rand(kmax, hd, device=dev, generator=g) * 4 - 2).to(torch.bfloat16)
        vbuf = (torch.rand(kmax, hd, device=dev, generator=g) * 2 - 1).to(torch.bfloat16)
        bias_full = torch.log1p(torch.randint(0, 5, (1, H, 1, kmax), device=dev, generator=g).float()).to(torch.bfloat16)
        for Mk in ks:
            if D == 64 and Mk != 32760:
                continue
            layouts = [("dense", False)]
            if Mk == 32760:
                layouts.append(("bhsd-contiguous", True))
            for variant, contiguous in layouts:
                qq = q.view(1, MQ, H, D).transpose(1, 2)
                kk = kbuf[:Mk].view(1, Mk, H, D).transpose(1, 2)
                vv = vbuf[:Mk].view(1, Mk, H, D).transpose(1, 2)
                if contiguous:
                    qq, kk, vv = qq.contiguous(), kk.contiguous(), vv.contiguous()
                for bias in (0, 1):
                    mask = None
                    if bias:
                        mask = bias_full[..., :Mk].expand(1, H, MQ, Mk)
                    flops = 4.0 * MQ * Mk * H * D
                    for name, be in backends:
                        row = {"bench": "attention", "impl": name, "kernel": name, "variant": variant, "gpu": gpu,
                               "q": MQ, "k": Mk, "h": H, "d": D, "bias": bias, "density": 1.0,
                               "torch": torch.__version__}
                        if name == "sdpa-math" and MQ * Mk > 4680 * 9360:
                            continue  # materialises [H, q, k] logits
                        try:
                            with sdpa_kernel(be):
                                fn = lambda: F.scaled_dot_product_attention(qq, kk, vv, attn_mask=mask)
                                med, mn = timed(fn, args.reps, flops)
                            row.update(reps=args.reps, ms_median=round(med, 4), ms_min=round(mn, 4),
                                       tflops=round(flops / (med * 1e-3) / 1e12, 1))
                        except Exception as ex:  # backend refuses this shape / mask
                            row.update(error=str(ex).splitlines()[0][:200] if str(ex) else type(ex).__name__)
                            torch.cuda.synchronize()
                        emit(row)
    if out:
        out.close()


def cmd_pair(args):
    import ctypes
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    class FaArgs(ctypes.Structure):  # wm_fa_args in kernels/flash_attn.cuh
        _fields_ = [("q", ctypes.c_void_p), ("ldq", ctypes.c_int64), ("k", ctypes.c_void_p),
                    ("v", ctypes.c_void_p), ("ldkv", ctypes.c_int64), ("out", ctypes.c_void_p),
                    ("ldo", ctypes.c_int64), ("Mq", ctypes.c_int), ("Mk", ctypes.c_int), ("H", ctypes.c_int),
                    ("D", ctypes.c_int), ("scale", ctypes.c_float), ("key_bias", ctypes.c_void_p),
                    ("bias_head_stride", ctypes.c_int64), ("kb_offsets", ctypes.c_void_p),
                    ("kb_indices", ctypes.c_void_p)]

    lib = ctypes.CDLL(args.lib)
    lib.wm_flash_attn.argtypes = [ctypes.POINTER(FaArgs), ctypes.c_void_p]
    lib.wm_flash_attn.restype = ctypes.c_int
    lib.wm_flash_attn_error.restype = ctypes.c_char_p
    lib.wm_flash_attn_last_impl.restype = ctypes.c_char_p
    dev = torch.device("cuda")
    gpu = torch.cuda.get_device_name(0)
    ks = KS_QUICK if args.quick else KS_FULL
    kmax = max(ks)
    out = open(args.out, "w") if args.out else None
    g = torch.Generator(device=dev)
    g.manual_seed(1)

    def timed(fn, reps):
        evs = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(reps)]
        for s_, e_ in evs:
            s_.record()
            fn()
            e_.record()
        torch.cuda.synchronize()
        ts = sorted(s_.elapsed_time(e_) for s_, e_ in evs)
        return ts[len(ts) // 2]

    for D in (128, 64):
        hd = H * D
        q = (torch.rand(MQ, hd, device=dev, generator=g) * 4 - 2).to(torch.bfloat16)
        kbuf = (torch.rand(kmax, hd, device=dev, generator=g) * 4 - 2).to(torch.bfloat16)
        vbuf = (torch.rand(kmax, hd, device=dev, generator=g) * 2 - 1).to(torch.bfloat16)
        # bf16-exact bias values so that both sides add the same numbers
        bias16 = torch.log1p(torch.randint(0, 5, (H, kmax), device=dev, generator=g).float()).to(torch.bfloat16)
        bias32 = bias16.float().contiguous()
        o = torch.empty(MQ, hd, device=dev, dtype=torch.float32)
        for Mk in ks:
            if D == 64 and Mk != 32760:
                continue
            qq = q.view(1, MQ, H, D).transpose(1, 2)
            kk = kbuf[:Mk].view(1, Mk, H, D).transpose(1, 2)
            vv = vbuf[:Mk].view(1, Mk, H, D).transpose(1, 2)
            for bias in (0, 1):
                a = FaArgs(q=q.data_ptr(), ldq=hd, k=kbuf.data_ptr(), v=vbuf.data_ptr(), ldkv=hd, out=o.data_ptr(),
                           ldo=hd, Mq=MQ, Mk=Mk, H=H, D=D, scale=1.0 / D ** 0.5,
                           key_bias=bias32.data_ptr() if bias else None, bias_head_stride=kmax if bias else 0,
                           kb_offsets=None, kb_indices=None)
                stream = ctypes.c_void_p(torch.cuda.current_stream().cuda_stream)
                mask = bias16[None, :, None, :Mk].expand(1, H, MQ, Mk) if bias else None
                flops = 4.0 * MQ * Mk * H * D

                def ours():
                    if lib.wm_flash_attn(ctypes.byref(a), stream) != 0:
                        raise RuntimeError(lib.wm_flash_attn_error().decode())

                def cudnn():
                    with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
                        return F.scaled_dot_product_attention(qq, kk, vv, attn_mask=mask)

                try:
                    ref = cudnn()
                    ours()
                    torch.cuda.synchronize()
                    diff = (o - ref.transpose(1, 2).reshape(MQ, hd).float()).abs().max().item()
                    reps = 4 if flops > 2e12 else 10
                    for _ in range(2):
                        ours()
                        cudnn()
                    t_o, t_c = [], []
                    for _ in range(args.rounds):
                        t_o.append(timed(ours, reps))
                        t_c.append(timed(cudnn, reps))
                    t_o.sort()
                    t_c.sort()
                    mo, mc = t_o[len(t_o) // 2], t_c[len(t_c) // 2]
                    spread = (t_o[-1] - t_o[0]) / mo
                    for name, med, mn in (("wm-wgmma", mo, t_o[0]), ("sdpa-cudnn", mc, t_c[0])):
                        row = {"bench": "attention", "impl": name, "kernel": lib.wm_flash_attn_last_impl().decode()
                               if name == "wm-wgmma" else name, "variant": "paired", "gpu": gpu, "q": MQ, "k": Mk,
                               "h": H, "d": D, "bias": bias, "density": 1.0, "rounds": args.rounds, "reps": reps,
                               "ms_median": round(med, 4), "ms_min": round(mn, 4),
                               "tflops": round(flops / (med * 1e-3) / 1e12, 1), "max_abs_diff_vs_cudnn": diff,
                               "ours_round_spread": round(spread, 4), "torch": torch.__version__}
                        line = json.dumps(row)
                        print(line, flush=True)
                        if out:
                            out.write(line + "\n")
                            out.flush()
                except Exception as ex:
                    print(json.dumps({"impl": "pair", "k": Mk, "d": D, "bias": bias, "error": str(ex)[:200]}), flush=True)
    if out:
        out.close()


def load(path):
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                rows.append(json.loads(line))
    return rows


def cmd_plot(args):
    rows = load(args.ours) + load(args.sdpa) + (load(args.paired) if args.paired else [])
    gpu = next((r["gpu"] for r in rows if r.get("gpu")), "?")
    os.makedirs(args.outdir, exist_ok=True)
    meta = {"gpu": gpu, "date": args.date or datetime.date.today().isoformat(), "commit": args.commit,
            "flops": "4*q*k*h*d (dense); sparse rows count the visited key blocks",
            "shapes": "q=4680 (3 latent frames of 480x832), h=12, bf16 in, our kernel writes fp32",
            "results": rows}
    with open(os.path.join(args.outdir, "attention.json"), "w") as f:
        json.dump(meta, f, indent=1)

    def series(impl, d=128, bias=0, variant="dense"):
        pts = sorted((r["k"], r["tflops"]) for r in rows if r["impl"] == impl and r["d"] == d and r["bias"] == bias
                     and r.get("variant") == variant and "tflops" in r)
        return pts

    impls = []
    for r in rows:
        if r["impl"] not in impls:
            impls.append(r["impl"])
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, axes = plt.subplots(1, 2, figsize=(13, 5), sharey=True)
        plotted = [i for i in impls if i in ("wm-wgmma", "wm-wgmma-nosplit", "wm-mma") or i.startswith("sdpa-")]
        colors = {impl: f"C{i}" for i, impl in enumerate(plotted)}  # same colour in both panels
        for ax, bias in zip(axes, (0, 1)):
            for impl in plotted:
                pts = series(impl, bias=bias)
                if len(pts) < 2:
                    continue
                style = "-o" if impl.startswith("wm") else "--s"
                ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=impl, ms=4, color=colors[impl])
            ax.set_xscale("log")
            ax.set_xlabel("keys (k)")
            ax.set_title(("dense" if not bias else "with per-key bias") + ", q=4680, h=12, d=128")
            ax.grid(True, which="both", alpha=0.3)
        axes[0].set_ylabel("TFLOP/s (4*q*k*h*d / time)")
        axes[0].legend(fontsize=8, loc="center right")
        fig.suptitle(f"attention forward, bf16, {gpu}, {meta['date']}, commit {args.commit}")
        fig.tight_layout()
        fig.savefig(os.path.join(args.outdir, "attention.png"), dpi=110)
    except ImportError:
        print("matplotlib missing: no png", file=sys.stderr)

    # markdown table: TFLOP/s per k for every implementation (d=128, model layout)
    ks = sorted({r["k"] for r in rows if r["d"] == 128 and r.get("variant") == "dense"})
    lines = []
    for bias in (0, 1):
        lines.append(f"\n{'Dense' if not bias else 'With per-key bias'} (d=128, TFLOP/s, median):\n")
        lines.append("| impl | " + " | ".join(f"k={k}" for k in ks) + " |")
        lines.append("|---" * (len(ks) + 1) + "|")
        for impl in impls:
            vals = {r["k"]: r for r in rows if r["impl"] == impl and r["d"] == 128 and r["bias"] == bias
                    and r.get("variant") == "dense"}
            if not vals:
                continue
            cells = []
            for k in ks:
                r = vals.get(k)
                cells.append("-" if r is None else (f"{r['tflops']:.0f}" if "tflops" in r else "n/a"))
            lines.append(f"| {impl} | " + " | ".join(cells) + " |")
    paired = [r for r in rows if r.get("variant") == "paired" and r["impl"] == "wm-wgmma"]
    if paired:
        lines.append("\nHead to head, same tensors, one process, alternating rounds (TFLOP/s):\n")
        lines.append("| d | bias | k | ours | cuDNN | ours / cuDNN | max abs diff |")
        lines.append("|---|---|---|---|---|---|---|")
        for r in sorted(paired, key=lambda r: (-r["d"], r["bias"], r["k"])):
            c = [x for x in rows if x.get("variant") == "paired" and x["impl"] == "sdpa-cudnn"
                 and (x["k"], x["d"], x["bias"]) == (r["k"], r["d"], r["bias"])]
            if not c:
                continue
            c = c[0]
            lines.append(f"| {r['d']} | {r['bias']} | {r['k']} | {r['tflops']:.0f} | {c['tflops']:.0f} | "
                         f"{r['tflops'] / c['tflops']:.2f} | {r['max_abs_diff_vs_cudnn']:.1e} |")
    other = [r for r in rows if "tflops" in r and r.get("variant") != "paired"
             and (r["d"] != 128 or r.get("variant") != "dense")]
    if other:
        lines.append("\nOther rows (TFLOP/s):\n")
        lines.append("| impl | variant | k | d | bias | density | TFLOP/s | ms |")
        lines.append("|---|---|---|---|---|---|---|---|")
        for r in other:
            lines.append(f"| {r['impl']} | {r.get('variant')} | {r['k']} | {r['d']} | {r['bias']} | "
                         f"{r.get('density', 1):.2f} | {r['tflops']:.0f} | {r['ms_median']:.3f} |")
    with open(os.path.join(args.outdir, "attention_table.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("time")
    t.add_argument("--quick", action="store_true")
    t.add_argument("--reps", type=int, default=15)
    t.add_argument("--out")
    p = sub.add_parser("plot")
    p.add_argument("--ours", required=True)
    p.add_argument("--sdpa", required=True)
    p.add_argument("--paired")
    p.add_argument("--commit", required=True)
    p.add_argument("--date")
    p.add_argument("--outdir", default="docs/bench")
    q = sub.add_parser("pair")
    q.add_argument("--lib", required=True)
    q.add_argument("--quick", action="store_true")
    q.add_argument("--rounds", type=int, default=5)
    q.add_argument("--out")
    args = ap.parse_args()
    {"time": cmd_time, "plot": cmd_plot, "pair": cmd_pair}[args.cmd](args)


if __name__ == "__main__":
    main()
