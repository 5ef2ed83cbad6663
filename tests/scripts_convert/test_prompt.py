#!/usr/bin/env python3
"""test_prompt.py [--wm-run WM_RUN --plugin LIBWM] - tools/prompt/encode_prompt.py without umT5-XXL.

A tiny randomly initialised UMT5EncoderModel (transformers) and a word-level tokenizer with umT5's
special tokens are built in this process and saved in the layout of a diffusers Wan pipeline
(text_encoder/ + tokenizer/). Checks:
  - the CLI writes tensor "prompt" [L, d_model], L = words + </s>, equal to the encoder's output for
    those rows, with the text cleaned as Wan does (HTML entities, whitespace);
  - the padding length does not change the rows (the attention mask is applied);
  - --wan-t5 (Wan's own T5 checkpoint naming) gives the same embedding as --model;
  - --check accepts the file and rejects a wrong width, too many rows, a missing tensor;
  - wm-run takes the file as --prompt-embedding on a converted synthetic model of that text_dim.
Exit 77 when transformers/tokenizers are not installed.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile

import torch

SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TOOL = os.path.join(SRC, "tools", "prompt", "encode_prompt.py")
PY = sys.executable
failures = []

try:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, UMT5Config, UMT5EncoderModel
except ImportError as e:
    print(f"SKIP: {e} (pip install transformers sentencepiece into the venv)")
    sys.exit(77)

from safetensors.torch import load_file, save_file  # noqa: E402


def check(cond, what):
    print(("ok    " if cond else "FAIL  ") + what, flush=True)
    if not cond:
        failures.append(what)
    return cond


def run(cmd, expect_rc=0, what=None):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if expect_rc is not None and r.returncode != expect_rc:
        print(f"  command: {' '.join(cmd)}\n  rc {r.returncode}\n  stdout: {r.stdout[-2000:]}\n  stderr: {r.stderr[-3000:]}")
        check(False, what or f"exit {expect_rc}")
    return r


WORDS = "a red fox runs & jumps over the snow in forest at night".split()


def make_pipeline(d, d_model=64):
    torch.manual_seed(0)
    cfg = UMT5Config(vocab_size=64, d_model=d_model, d_kv=16, d_ff=128, num_layers=2, num_heads=4,
                     relative_attention_num_buckets=32, relative_attention_max_distance=128,
                     feed_forward_proj="gated-gelu", layer_norm_epsilon=1e-6, is_encoder_decoder=False,
                     use_cache=False, tie_word_embeddings=False)
    model = UMT5EncoderModel(cfg).eval()
    model.save_pretrained(os.path.join(d, "text_encoder"))
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for w in WORDS:
        vocab.setdefault(w, len(vocab))
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tk.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    fast.save_pretrained(os.path.join(d, "tokenizer"))
    return model, fast


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--wm-run")
    ap.add_argument("--plugin")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="wm_prompt_")
    try:
        body(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{len(failures)} failure(s)" if failures else "all checks passed")
    return 1 if failures else 0


def body(args, work):
    pipe = os.path.join(work, "pipe")
    model, tok = make_pipeline(pipe)
    text = "  A red fox runs &amp;amp; jumps\n over   the snow "
    out = os.path.join(work, "fox.safetensors")
    r = run([PY, TOOL, "--model", pipe, "--text", text, "--out", out, "--dtype", "f32"], 0, "encode_prompt --model")
    if r.returncode:
        return
    emb = load_file(out)["prompt"]
    from safetensors import safe_open
    meta = safe_open(out, "pt").metadata()
    clean = "A red fox runs & jumps over the snow"
    check(meta.get("text") == clean, f"text cleaned as Wan's tokenizer does: {meta.get('text')!r}")
    words = clean.split()
    ids = tok(clean, add_special_tokens=True)["input_ids"]
    check(len(ids) == len(words) + 1 and ids[-1] == 1, "tokenizer: one id per word, then </s>")
    check(emb.dtype == torch.float32 and tuple(emb.shape) == (len(ids), 64),
          f"prompt [L={len(ids)} real tokens, d_model=64], fp32 (got {list(emb.shape)})")
    with torch.no_grad():
        mask = torch.zeros(1, 512, dtype=torch.long)
        mask[0, :len(ids)] = 1
        full = torch.zeros(1, 512, dtype=torch.long)
        full[0, :len(ids)] = torch.tensor(ids)
        want = model(input_ids=full, attention_mask=mask).last_hidden_state[0, :len(ids)]
    check(torch.allclose(emb, want, atol=1e-5), "rows = the encoder's output for the real tokens (mask applied)")

    out64 = os.path.join(work, "fox64.safetensors")
    run([PY, TOOL, "--model", os.path.join(pipe, "text_encoder"), "--tokenizer", os.path.join(pipe, "tokenizer"),
         "--text", text, "--out", out64, "--dtype", "f32", "--max-length", "64"], 0, "encode_prompt --max-length 64")
    if os.path.exists(out64):
        check(torch.allclose(load_file(out64)["prompt"], emb, atol=1e-5), "padding length does not change the rows")

    # Wan's own checkpoint names (models_t5_umt5-xxl-enc-bf16.pth layout)
    sd = model.state_dict()
    wan = {"token_embedding.weight": sd["shared.weight"], "norm.weight": sd["encoder.final_layer_norm.weight"]}
    for n in range(2):
        b = f"encoder.block.{n}.layer."
        wan[f"blocks.{n}.norm1.weight"] = sd[b + "0.layer_norm.weight"]
        for p in "qkvo":
            wan[f"blocks.{n}.attn.{p}.weight"] = sd[b + f"0.SelfAttention.{p}.weight"]
        wan[f"blocks.{n}.pos_embedding.embedding.weight"] = sd[b + "0.SelfAttention.relative_attention_bias.weight"]
        wan[f"blocks.{n}.norm2.weight"] = sd[b + "1.layer_norm.weight"]
        wan[f"blocks.{n}.ffn.gate.0.weight"] = sd[b + "1.DenseReluDense.wi_0.weight"]
        wan[f"blocks.{n}.ffn.fc1.weight"] = sd[b + "1.DenseReluDense.wi_1.weight"]
        wan[f"blocks.{n}.ffn.fc2.weight"] = sd[b + "1.DenseReluDense.wo.weight"]
    pth = os.path.join(work, "models_t5_umt5-xxl-enc-bf16.pth")
    torch.save({k: v.clone() for k, v in wan.items()}, pth)
    outw = os.path.join(work, "foxw.safetensors")
    run([PY, TOOL, "--wan-t5", pth, "--tokenizer", os.path.join(pipe, "tokenizer"), "--text", text, "--out", outw,
         "--dtype", "f32"], 0, "encode_prompt --wan-t5")
    if os.path.exists(outw):
        check(torch.allclose(load_file(outw)["prompt"], emb, atol=1e-5), "--wan-t5 (Wan's key names) = --model")

    # --check
    r = run([PY, TOOL, "--check", out, "--text-dim", "64"], 0, "--check accepts the embedding")
    r = run([PY, TOOL, "--check", out], 1, "--check rejects a width that is not the model's (4096)")
    check("width 64" in r.stderr, "--check: names the width")
    bad = os.path.join(work, "bad.safetensors")
    save_file({"prompt": torch.zeros(513, 64)}, bad)
    r = run([PY, TOOL, "--check", bad, "--text-dim", "64"], 1, "--check rejects 513 rows")
    check("513 rows" in r.stderr, "--check: names the row count")
    save_file({"emb": torch.zeros(3, 64)}, bad)
    r = run([PY, TOOL, "--check", bad, "--text-dim", "64"], 1, "--check rejects a file without 'prompt'")
    check("no tensor 'prompt'" in r.stderr, "--check: names the missing tensor")

    # the engine takes it
    if args.wm_run:
        syn = os.path.join(work, "syn")
        run([PY, os.path.join(SRC, "tools", "convert", "make_synthetic.py"), syn, "--text-dim", "64"], 0, "synthetic")
        d = os.path.join(work, "sf")
        run([PY, os.path.join(SRC, "tools", "convert", "convert.py"), "--from", "self-forcing",
             os.path.join(syn, "self_forcing.pt"), "--num-heads", "2", "--latent-size", "8x8", "--out", d, "--quiet"],
            0, "convert")
        cmd = [args.wm_run, "--model", d, "--frames", "1", "--prompt-embedding", out, "--backend", "cpu", "--quiet",
               "--latents", os.path.join(work, "lat.bin")]
        if args.plugin:
            cmd += ["--plugin", args.plugin]
        run(cmd, 0, "wm-run --prompt-embedding takes the encoded prompt")
        check(os.path.getsize(os.path.join(work, "lat.bin")) == 3 * 16 * 8 * 8 * 4, "wm-run wrote one chunk")


if __name__ == "__main__":
    sys.exit(main())
