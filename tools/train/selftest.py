"""selftest.py - checks that what tools/train trains is what the engine runs (CPU, a few seconds).

    .venv/bin/python tools/train/selftest.py        # prints "N/N checks passed"

  1. dit.forward over a doubled clip with the block-causal mask equals wm_ref's streaming forward with
     a KV cache (window eviction, sinks, per-frame timesteps, actions, a prompt change between chunks);
  2. FlexAttention with the block mask equals SDPA with the dense mask (where flex runs on this torch);
  3. the per-latent-frame action mean equals wm_ref.latent_frame_actions; batched prompt embeddings
     equal wm_ref's TinyTextEncoder, zero padded;
  4. the AE decoder run over whole clips (training) equals wm_ref's StreamingDecoder (the engine's),
     and chunked episode encoding equals encoding in one piece;
  5. export writes a folder that wm_ref.load_model accepts and Rollout runs, with the encoder in its
     own file (encoder.safetensors, fp16, architecture in the metadata) that ae.load_encoder rebuilds;
     checkpoints round-trip (parameters and Adam moments);
  6. common.rollout_prefill (train_dit.py's validation context, engine_check.py --prefill) continues a
     rollout exactly like the chunks it replaces;
  7. train_dit.py's --change-weight: make_batch marks exactly the latent frames whose action differs from
     the previous latent frame of the episode, the weighted loss is the weighted mean of per-frame
     MSEs, and weight 1 is the plain MSE;
  8. the encoder is causal: the latents of an episode's first 1 + 4(n-1) frames are its first n
     latents (what tools/eval/fidelity.py relies on to encode a context).
"""
import json
import math
import os
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import dit  # noqa: E402
import export as exporter  # noqa: E402
from ae import AutoEncoder, encode_episode, encode_video, load_encoder  # noqa: E402
from common import wm_ref  # noqa: E402

torch.manual_seed(0)
torch.set_num_threads(1)
results = []


def check(name, ok, detail=""):
    results.append(ok)
    print(f"{'ok  ' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}", flush=True)


def tiny_config(window=4, sinks=1, chunk=2, dec=None):
    a = dict(name="tiny", dim=32, ffn=48, heads=2, layers=2, text_dim=16, text_len=6, chunk=chunk, window=window,
             sinks=sinks, sample_steps=[1000, 750, 500, 250], shift=1.0, latent_channels=4)
    vocab = common.SPECIAL_TOKENS + ["forest", "desert", "night", "a", "fog"]
    return exporter.build_config(a, vocab, (4, 6), dec or {"channels": [8, 8, 8, 4], "space_upscale": [True, True, True],
                                                         "time_upscale": [True, True], "image_channels": 3})


def randomise(model):
    """init_weights zeroes the head; give everything non-trivial values for the comparisons."""
    dit.init_weights(model, 3)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.startswith("head.head") or n.endswith("modulation"):
                p.copy_(torch.randn_like(p) * 0.2)


def test_forward_vs_streaming():
    torch.set_grad_enabled(False)
    for window, sinks, chunk in [(-1, 0, 2), (4, 1, 2), (3, 0, 1)]:
        cfg = tiny_config(window, sinks, chunk)
        model = exporter.make_model(cfg).eval()
        randomise(model)
        L, C, H, W = 8, 4, 4, 6
        x0 = torch.randn(L, C, H, W)
        xt = torch.randn(L, C, H, W)
        t = torch.rand(L) * 1000
        acts = torch.rand(L, 5)
        prompts = ["a forest", "desert night fog"]
        pid = torch.tensor([0] * 4 + [1] * 4)  # prompt changes at frame 4 (a chunk boundary)
        # reference: the engine's streaming loop (denoise pass over the cache, then the commit pass)
        cache = wm_ref.KVCache(model.cfg.num_layers, window, sinks, capacity=64)
        ref = []
        for c in range(L // chunk):
            s = c * chunk
            fr = list(range(s, s + chunk))
            kv = model.context_kv(model.prompt_embedding(prompts[int(pid[s])]))
            cache.begin_chunk(s, chunk)
            ref.append(model(xt[s:s + chunk], t[s:s + chunk], s, kv, cache.attend_fn(fr, False, {}), acts[s:s + chunk]))
            pending = {}
            model(x0[s:s + chunk], torch.zeros(chunk), s, kv, cache.attend_fn(fr, True, pending), acts[s:s + chunk])
            cache.end_commit(fr, pending)
        ref = torch.cat(ref)
        # training forward over [context x0 ; target x_t]
        emb = common.prompt_embeddings(model.text_encoder, prompts, cfg["text_len"])[None]
        kv = dit.context_kv(model, emb)
        fm = dit.frame_mask(L, chunk, window, sinks)
        mask = dit.token_mask(fm, (H // 2) * (W // 2))
        rope = dit.rope_tables(cfg["dim"] // cfg["num_heads"], L, H // 2, W // 2, "cpu")
        x = torch.cat([x0, xt])[None]
        tt = torch.cat([torch.zeros(L), t])[None]
        v = dit.forward(model, x, tt, torch.cat([acts, acts])[None], kv, torch.cat([pid, pid])[None], mask, rope)[0, L:]
        d = (v - ref).abs().max().item()
        check(f"training forward == streaming forward (window {window}, sinks {sinks}, chunk {chunk})", d < 2e-5,
              f"max|diff| {d:.2e}, |v| {ref.abs().max().item():.2f}")
    torch.set_grad_enabled(True)


def test_flex():
    try:
        from torch.nn.attention.flex_attention import flex_attention  # noqa: F401
    except Exception as e:  # noqa: BLE001
        check("flex attention == dense SDPA", True, f"skipped: {e}")
        return
    L, F_, hw = 6, 2, 64
    q, k, v = (torch.randn(1, 2, 2 * L * hw, 16) for _ in range(3))
    dense = dit.attention(q, k, v, dit.token_mask(dit.frame_mask(L, F_, 4, 1), hw))
    try:
        bm = dit.flex_block_mask(L, F_, hw, 4, 1, "cpu")
        flex = dit.attention(q, k, v, bm)
    except Exception as e:  # noqa: BLE001
        check("flex attention == dense SDPA", True, f"skipped on this torch/CPU: {type(e).__name__}: {str(e)[:80]}")
        return
    d = (flex - dense).abs().max().item()
    check("flex attention == dense SDPA", d < 1e-4, f"max|diff| {d:.2e}")


def test_actions_prompts():
    cfg = wm_ref.Config(wm_ref.CONFIG_DEFAULTS)
    cfg.update(action_buttons=common.BUTTONS, decoder={"channels": [8, 8, 8, 4], "time_upscale": [True, True]})
    acts = (np.random.rand(29, 5) > 0.6).astype(np.float32)
    ours = common.latent_actions(acts)
    ref = wm_ref.latent_frame_actions(cfg, common.button_masks(acts), 0, ours.shape[0]).numpy()
    check("latent action means == wm_ref.latent_frame_actions", np.array_equal(ours, ref))
    model = exporter.make_model(tiny_config())
    texts = ["A Forest, at NIGHT!", "", "fog fog fog fog fog fog fog fog unknownword"]
    emb = common.prompt_embeddings(model.text_encoder, texts, 6)
    ok = True
    for i, tx in enumerate(texts):
        r = model.text_encoder(tx) if model.text_encoder.tokenize(tx) else torch.zeros(0, 16)
        r = torch.cat([r, torch.zeros(6 - r.shape[0], 16)])
        ok &= torch.allclose(emb[i], r)
    check("batched prompt embeddings == TinyTextEncoder (padded)", bool(ok))


def test_ae():
    torch.set_grad_enabled(False)
    ae = AutoEncoder(latent_channels=4, enc_channels=(8, 8, 8, 8), enc_blocks=1, dec_channels=(8, 8, 8, 4)).eval()
    z = torch.randn(1, 5, 4, 4, 6)
    par = ae.decode(z)[0].clamp(0, 1)[3:]
    sd = wm_ref.StreamingDecoder(ae.decoder)
    seq = torch.cat([sd.push(z[0, :2]), sd.push(z[0, 2:3]), sd.push(z[0, 3:])])
    d = (par - seq).abs().max().item()
    check("AE decoder over clips == wm_ref.StreamingDecoder (engine)", d < 1e-5, f"max|diff| {d:.2e}, {seq.shape[0]} frames")

    class FakeEp:
        def __init__(self, fr):
            self.fr = fr

        def frames(self, a=0, b=None):
            return self.fr[a:b]
    fr = (np.random.rand(1 + 4 * 23, 32, 48, 3) * 255).astype(np.uint8)
    full = encode_episode(ae, FakeEp(fr), "cpu", chunk_latents=1000)
    pieces = encode_episode(ae, FakeEp(fr), "cpu", chunk_latents=7)
    d = (full - pieces).abs().max().item()
    check("episode encoding in pieces == in one piece", d < 1e-4 and full.shape[0] == 24, f"max|diff| {d:.2e}")
    ok, worst = True, 0.0
    for n in (1, 2, 5):  # a prefix of 1 + 4(n-1) frames (and a few frames more of an unfinished group)
        for extra in (0, 2):
            pre = encode_video(ae.encoder, fr[: 1 + 4 * (n - 1) + extra], "cpu")
            worst = max(worst, (pre - full[:n]).abs().max().item())
            ok &= pre.shape[0] == n
    check("encoder is causal: a prefix's latents == the episode's first latents", ok and worst < 1e-5,
          f"max|diff| {worst:.2e}")
    torch.set_grad_enabled(True)


def test_export_checkpoint():
    cfg = tiny_config()
    model = exporter.make_model(cfg)
    randomise(model)
    arch = dict(latent_channels=4, enc_channels=[8, 8, 8, 8], enc_blocks=1, dec_channels=[8, 8, 8, 4])
    ae = AutoEncoder(**arch).eval()
    with tempfile.TemporaryDirectory() as d:
        size = exporter.export(model, cfg, os.path.join(d, "m"), encoder=(ae.encoder, arch))
        files = sorted(os.listdir(os.path.join(d, "m")))
        enc, meta = load_encoder(os.path.join(d, "m"))
        fr = (np.random.rand(1 + 4 * 3, 32, 48, 3) * 255).astype(np.uint8)
        with torch.no_grad():
            za, zb = encode_video(ae.encoder, fr, "cpu"), encode_video(enc, fr, "cpu")
        de = (za - zb).abs().max().item()
        check("encoder.safetensors beside the model: fp16, rebuilt by load_encoder, same latents",
              files == ["config.json", "encoder.safetensors", "model.safetensors"] and de < 2e-2
              and json.loads(meta["arch"]) == {k: arch[k] for k in ("latent_channels", "enc_channels", "enc_blocks")},
              f"{files}, max|diff| {de:.1e} (fp16 weights), |z| {za.abs().max().item():.2f}")
        exporter.export(model, cfg, os.path.join(d, "m"))  # without an encoder: a stale one is removed
        check("export without an encoder removes a stale encoder.safetensors",
              not os.path.exists(os.path.join(d, "m", "encoder.safetensors")))
        with torch.no_grad():
            out = wm_ref.Rollout(os.path.join(d, "m"), seed=1, prompt="forest night",
                                 actions=[(1, [], 0, 0)] * 20).run(2)
        check("export loads in wm_ref.load_model and streams", out["rgb"].shape[1:] == (3, 32, 48),
              f"{size} bytes, rgb {tuple(out['rgb'].shape)}")
        with torch.no_grad():  # a context prefill continues a rollout exactly (the engine's test_prefill)
            acts = [(i % 3, [], 0, 0) for i in range(40)]
            a = wm_ref.Rollout(os.path.join(d, "m"), seed=2, prompt="a fog", actions=acts).run(3)
            b = wm_ref.Rollout(os.path.join(d, "m"), seed=2, prompt="a fog", actions=acts)
            ctx = common.rollout_prefill(b, torch.cat(a["latents"][:2]))
            c = b.run(1)
        same = torch.equal(c["latents"][0], a["latents"][2]) and torch.equal(torch.cat([ctx, c["rgb"]]), a["rgb"])
        check("rollout_prefill of a rollout's first chunks, then generation == the rollout itself", same,
              f"context {ctx.shape[0]} frames + {c['rgb'].shape[0]} generated")
        init = exporter.load_exported(os.path.join(d, "m"))  # train_dit --init-from
        m3 = exporter.make_model(exporter.build_config({**init["arch"], "latent_channels": 4},
                                                       init["config"]["text_encoder"]["vocab"], (4, 6),
                                                       init["config"]["decoder"]))
        exporter.load_dit_weights(m3, init["weights"], "m")
        sd, sd3 = model.state_dict(), m3.state_dict()
        ok = all(torch.equal(sd3[k], sd[k].half().float()) for k in sd if not k.startswith("decoder."))
        try:
            exporter.load_dit_weights(exporter.make_model(dict(cfg, dim=64)), init["weights"], "m")
            ok = False
        except SystemExit as e:
            ok &= "does not fit" in str(e)
        check("--init-from: an export's architecture and DiT weights (fp16) rebuild the model; another shape is refused",
              ok and init["arch"]["window"] == cfg["local_attn_size"] and init["arch"]["layers"] == cfg["num_layers"])
        with open(os.path.join(d, "m", "config.json")) as f:
            keys = set(json.load(f))
        check("config.json has only engine keys", keys <= set(wm_ref.CONFIG_DEFAULTS), str(sorted(keys - set(wm_ref.CONFIG_DEFAULTS))))
        params = dit.param_groups(model)
        opt = torch.optim.AdamW(params, lr=1e-3)
        loss = sum((p ** 2).sum() for p in params)
        loss.backward()
        opt.step()
        common.SHARD_BYTES, old = 20_000, common.SHARD_BYTES  # force several shards
        common.save_checkpoint(os.path.join(d, "ck"), {"model": model}, opt, {"step": 5})
        common.SHARD_BYTES = old
        m2 = exporter.make_model(cfg)
        opt2 = torch.optim.AdamW(dit.param_groups(m2), lr=1e-3)
        st = common.load_checkpoint(os.path.join(d, "ck"), {"model": m2}, opt2)
        same = all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), m2.state_dict().values()))
        p0 = params[0]
        mom = opt2.state[dit.param_groups(m2)[0]]["exp_avg"]
        close = torch.allclose(mom, opt.state[p0]["exp_avg"], rtol=1e-2, atol=1e-6)
        n_shards = len([n for n in os.listdir(os.path.join(d, "ck")) if n.startswith("params-")])
        check("checkpoint round trip (params exact, bf16 moments close)", same and close and st["step"] == 5,
              f"{n_shards} param shards")


def test_change_weight():
    import argparse
    import train_dit
    E, L, C = 3, 10, 4
    acts = torch.zeros(E, L, 5)
    acts[:, 4:, 3] = 1.0             # right from latent 4 on
    acts[1, 7, 3] = 0.25             # a mixed latent frame
    ds = train_dit.LatentSet(torch.randn(E, L, C, 4, 6).half(), acts, torch.zeros(E, L, dtype=torch.long),
                             torch.zeros(E, 2, 6, dtype=torch.long), torch.ones(E, 2, dtype=torch.long),
                             [["a", "a"]] * E, ["x"] * E)
    args = argparse.Namespace(shift=1.0, p_clean=0.5, ctx_aug=0.05, chunk=1, change_weight=3.0)
    gen = torch.Generator().manual_seed(5)
    ok = True
    for _ in range(20):
        b = train_dit.make_batch(ds, 4, 5, args, [1.0, 0.75, 0.5, 0.25], gen, "cpu")
        a = b["acts"][:, :5]
        # the episode frame of each clip position, from the actions' positions in the episode
        for i in range(4):
            e = int(b["episodes"][i])
            match = [s0 for s0 in range(L - 4) if torch.equal(ds.acts[e, s0:s0 + 5], a[i])]
            expect = [[f > 0 and not torch.equal(ds.acts[e, f], ds.acts[e, f - 1]) for f in range(s0, s0 + 5)]
                      for s0 in match]
            ok &= b["change"][i].tolist() in expect
    v, tgt = torch.randn(4, 5, C, 4, 6), torch.randn(4, 5, C, 4, 6)
    ch = torch.rand(4, 5) < 0.3
    w = 1 + 2.0 * ch.float()
    manual = (((v - tgt) ** 2).mean((2, 3, 4)) * w).sum() / w.sum()
    d = (train_dit.weighted_mse(v, tgt, ch, 3.0) - manual).abs().item()
    plain = torch.equal(train_dit.weighted_mse(v, tgt, ch, 1.0), torch.nn.functional.mse_loss(v, tgt))
    check("--change-weight: action-change frames marked as in the episode, weighted per-frame MSE, 1 = plain MSE",
          bool(ok) and d < 1e-6 and plain, f"|weighted - manual| {d:.1e}")


def test_csv_log_resume():
    """A run resumed by a newer version that logs one more column keeps the file's own columns."""
    import csv
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "log.csv")
        common.CSVLog(path, ["step", "loss"]).write(step=1, loss=0.5)
        common.CSVLog(path, ["step", "loss", "critic_loss"]).write(step=2, loss=0.4, critic_loss=0.1)
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    check("CSVLog: a resumed log keeps its header and its columns aligned",
          rows == [["step", "loss"], ["1", "0.5"], ["2", "0.4"]], str(rows))


def test_anneal():
    import argparse
    import train_dit
    a = argparse.Namespace(lr=3e-4, warmup=100, anneal=None)
    const = [train_dit.lr_at(a, 50, 0.0), train_dit.lr_at(a, 5000, 30.0)]
    a.anneal = "10,20"
    ann = [train_dit.lr_at(a, 5000, m) for m in (5.0, 10.0, 15.0, 20.0, 40.0)]
    want = [3e-4, 3e-4, 3e-4 * 0.55, 3e-5, 3e-5]
    check("--anneal: warm-up, then a linear fall to lr/10 between FROM and TO minutes of total training",
          abs(const[0] - 1.53e-4) < 1e-9 and const[1] == 3e-4 and all(abs(x - y) < 1e-12 for x, y in zip(ann, want)),
          f"{ann}")


def test_rollout_context():
    """--rollout-ctx: the training forward's rollout == the engine's streaming loop (wm_ref.Rollout after a
    real context, same noise), and make_batch puts the pool's rollouts into the context copy only."""
    import argparse
    import contextlib
    import train_dit
    torch.set_grad_enabled(False)
    ok_all = True
    worst = 0.0
    for window, chunk in [(-1, 1), (3, 1), (4, 2)]:
        cfg = dict(tiny_config(window=window, sinks=0, chunk=chunk), decoder=None)  # latent frame = video frame
        model = exporter.make_model(cfg).eval()
        randomise(model)
        L, C, h, w, n0 = 8, 4, 4, 6, 2
        prompt = "a forest night"
        ids = model.text_encoder.tokenize(prompt)
        tok = torch.zeros(1, 2, cfg["text_len"], dtype=torch.long)
        tok[0, :, :len(ids)] = torch.tensor(ids)
        acts = torch.rand(1, L, 5).round()
        ds = train_dit.LatentSet(torch.randn(1, L, C, h, w).half(), acts, torch.zeros(1, L, dtype=torch.long), tok,
                                 torch.full((1, 2), len(ids), dtype=torch.long), [[prompt, prompt]], ["x"])
        args = argparse.Namespace(shift=1.0, p_clean=1.0, ctx_aug=0.0, chunk=chunk, change_weight=1.0,
                                  text_len=cfg["text_len"], rollout_ctx=0.0)
        sample_sig = [float(wm_ref.sigma_of(t, 1.0)) for t in wm_ref.denoising_timesteps(model.cfg)]
        b = train_dit.make_batch(ds, 1, L, args, sample_sig, torch.Generator().manual_seed(1), "cpu")
        mask = dit.token_mask(dit.frame_mask(L, chunk, window, 0), (h // 2) * (w // 2))
        rope = dit.rope_tables(cfg["dim"] // cfg["num_heads"], L, h // 2, w // 2, "cpu")
        seed = 5
        got = train_dit.rollout_context(model, b, n0, args, sample_sig, mask, rope, contextlib.nullcontext(),
                                        lambda c, shape: wm_ref.noise(seed, 256 * c, shape[1:])[None])["x"][0, :L]
        r = wm_ref.Rollout(model, seed=seed, prompt=prompt, actions=common.button_masks(acts[0].numpy()))
        common.rollout_prefill(r, b["x0"][0, :n0])
        ref = torch.cat([b["x0"][0, :n0]] + r.run((L - n0) // chunk)["latents"])
        d = (got - ref).abs().max().item()
        worst = max(worst, d)
        ok_all &= d < 1e-4
    check("--rollout-ctx: the training forward's rollout after a real context == wm_ref.Rollout (engine loop, "
          "flow_euler, windows -1/3/4, chunks 1/2)", ok_all, f"max|diff| {worst:.2e}")
    # the pool in make_batch
    E, L = 3, 6
    ds = train_dit.LatentSet(torch.randn(E, L, 4, 4, 6).half(), torch.rand(E, L, 5).round(),
                             torch.zeros(E, L, dtype=torch.long), torch.ones(E, 2, 6, dtype=torch.long),
                             torch.full((E, 2), 3, dtype=torch.long), [["a", "a"]] * E, ["x"] * E)
    pool = {"e": torch.tensor([2, 1]), "start": torch.tensor([1, 0]), "ctx": torch.randn(2, 4, 4, 4, 6)}
    args = argparse.Namespace(shift=1.0, p_clean=0.0, ctx_aug=0.0, chunk=1, change_weight=1.0, text_len=6,
                              rollout_ctx=0.5)
    b = train_dit.make_batch(ds, 4, 4, args, [1.0, 0.5], torch.Generator().manual_seed(2), "cpu", pool)
    ok = True
    for i in range(2):  # the first round(4 x 0.5) clips come from the pool
        j = int(torch.nonzero((pool["e"] == b["episodes"][i]) & (pool["start"] == b["start"][i]))[0, 0])
        ok &= torch.equal(b["x"][i, :4], pool["ctx"][j]) and bool((b["t"][i, :4] == 0).all())
        ok &= torch.equal(b["x0"][i], ds.z[b["episodes"][i], b["start"][i]:b["start"][i] + 4].float())
    ok &= bool((b["t"][2:, :4] > 0).all())  # the others: p_clean 0, plain diffusion forcing
    args.rollout_ctx = 0.0
    off = train_dit.make_batch(ds, 4, 4, args, [1.0, 0.5], torch.Generator().manual_seed(2), "cpu", pool)
    ok &= bool((off["t"][:, :4] > 0).all())
    check("--rollout-ctx: make_batch's pool clips get the pool's rollout as clean context and the game's frames "
          "as targets; the rest and share 0 are untouched", ok)
    torch.set_grad_enabled(True)


def test_dmd():
    """--dmd: the exit-step forward == the rollout's own last step; the generator loss's gradient is the
    normalised critic - teacher difference on generated frames only; a step moves the generator and the
    critic, not the teacher."""
    import argparse
    import contextlib
    import dmd
    import train_dit
    cfg = dict(tiny_config(window=4, sinks=0, chunk=1), decoder=None)
    model = exporter.make_model(cfg)
    randomise(model)
    E, L, C, h, w = 3, 6, 4, 4, 6
    ds = train_dit.LatentSet(torch.randn(E, L, C, h, w).half(), torch.rand(E, L, 5).round(),
                             torch.zeros(E, L, dtype=torch.long), torch.ones(E, 2, 6, dtype=torch.long),
                             torch.full((E, 2), 3, dtype=torch.long), [["a", "a"]] * E, ["x"] * E)
    args = argparse.Namespace(shift=1.0, p_clean=0.5, ctx_aug=0.0, chunk=1, change_weight=1.0, text_len=cfg["text_len"],
                              rollout_ctx=0.0, batch=2, clip=L, critic_steps=2, critic_lr=None, lr=1e-3,
                              dmd_reg=0.0)
    sample_sig = [float(wm_ref.sigma_of(t, 1.0)) for t in wm_ref.denoising_timesteps(model.cfg)]
    mask = dit.token_mask(dit.frame_mask(L, 1, 4, 0), (h // 2) * (w // 2))
    rope = dit.rope_tables(cfg["dim"] // cfg["num_heads"], L, h // 2, w // 2, "cpu")
    amp = contextlib.nullcontext()
    gen = torch.Generator().manual_seed(4)
    a = argparse.Namespace(**{**vars(args), "p_clean": 1.0})
    b = train_dit.make_batch(ds, 2, L, a, sample_sig, gen, "cpu")
    last = len(sample_sig) - 1
    noise = lambda c, shape: torch.randn(shape, generator=torch.Generator().manual_seed(c))  # noqa: E731
    with torch.no_grad():
        rolled = train_dit.rollout_context(model, b, 2, args, sample_sig, mask, rope, amp, noise, record_step=last)
        x0, gen_f = dmd.exit_x0(model, b, rolled, 2, last, sample_sig, args, mask, rope, amp)
    d = (x0 - rolled["x"][:, :L]).abs().max().item()
    real_kept = torch.equal(x0[:, :2], b["x0"][:, :2])
    check("--dmd: the exit-step forward of all frames at once == the rollout's last step", d < 1e-5 and real_kept,
          f"max|diff| {d:.1e}")
    sample = torch.randn(2, L, C, h, w, requires_grad=True)
    teacher, critic = torch.randn(2, L, C, h, w), torch.randn(2, L, C, h, w)
    dmd.generator_loss(sample, gen_f, teacher, critic).backward()
    with torch.no_grad():
        g = critic - teacher
        gs = sample.grad[:, 2:].flatten(1)
        cos = F.cosine_similarity(gs, g[:, 2:].flatten(1)).min().item()
        zero_real = sample.grad[:, :2].abs().max().item() == 0
        sample.grad = None
    dmd.generator_loss(sample, gen_f, teacher, teacher).backward()
    none = sample.grad.abs().max().item() == 0
    check("--dmd: the generator loss's gradient follows critic - teacher on generated frames, zero on real ones and "
          "when the critic equals the teacher", cos > 0.999 and zero_real and none, f"cosine {cos:.5f}")
    params = dit.param_groups(model)
    opt = torch.optim.Adam(params, lr=1e-3)  # no weight decay: a zero gradient leaves the weights alone
    tw = {k: v.clone() for k, v in model.state_dict().items()}
    distill = dmd.DMD(model, tw, "selftest", args, dit.param_groups, lambda p, lr: torch.optim.Adam(p, lr=lr))
    snap = lambda m: {n: p.detach().clone() for n, p in m.named_parameters()}  # noqa: E731
    moved = lambda m, ref: any(not torch.equal(p, ref[n]) for n, p in m.named_parameters())  # noqa: E731
    g0, c0, t0 = snap(model), snap(distill.critic), snap(distill.teacher)
    loss1, closs = distill.step(model, opt, params, ds, args, sample_sig, mask, rope, amp, gen, "cpu")
    # step 1: the critic is still the teacher, so the generator's gradient is zero; the critic learns
    first = loss1.item() == 0 and not moved(model, g0) and moved(distill.critic, c0)
    loss2, _ = distill.step(model, opt, params, ds, args, sample_sig, mask, rope, amp, gen, "cpu")
    second = loss2.item() > 0 and moved(model, g0) and not moved(distill.teacher, t0)
    check("--dmd: step 1 trains only the critic (it starts as the teacher: zero generator gradient), step 2 the "
          "generator too; the teacher never moves", first and second and math.isfinite(closs),
          f"generator loss {loss1.item():.2e} then {loss2.item():.2e}, critic loss {closs:.4f}")
    # --dmd-reg: the data term moves the generator even while the critic is the teacher; a critic handed
    # over (--critic-from) starts where it was, not at the teacher
    model2 = exporter.make_model(cfg)
    model2.load_state_dict(tw)
    params2 = dit.param_groups(model2)
    opt2 = torch.optim.Adam(params2, lr=1e-3)
    areg = argparse.Namespace(**{**vars(args), "dmd_reg": 1.0})
    cw = {k: v.clone() for k, v in distill.critic.state_dict().items()}
    d2 = dmd.DMD(model2, tw, "selftest", areg, dit.param_groups, lambda p, lr: torch.optim.Adam(p, lr=lr), cw, "critic")
    handed = all(torch.equal(p, cw[n]) for n, p in d2.critic.named_parameters())
    g2 = snap(model2)
    lreg, _ = d2.step(model2, opt2, params2, ds, areg, sample_sig, mask, rope, amp, gen, "cpu")
    check("--dmd-reg: the data term trains the generator from step 1; --critic-from starts the critic from the "
          "given weights", handed and moved(model2, g2) and lreg.item() > 0, f"generator loss {lreg.item():.3e}")


if __name__ == "__main__":
    test_forward_vs_streaming()
    test_flex()
    test_actions_prompts()
    test_ae()
    test_export_checkpoint()
    test_change_weight()
    test_anneal()
    test_csv_log_resume()
    test_rollout_context()
    test_dmd()
    print(f"{sum(results)}/{len(results)} checks passed")
    sys.exit(0 if all(results) else 1)
