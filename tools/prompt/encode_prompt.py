#!/usr/bin/env python3
"""encode_prompt.py - a text prompt -> the umT5-XXL embedding the causal Wan models take.

    encode_prompt.py --model Wan2.1-T2V-1.3B-Diffusers --text "a fox runs through snow" --out fox.safetensors
    encode_prompt.py --wan-t5 Wan2.1-T2V-1.3B/models_t5_umt5-xxl-enc-bf16.pth \
                     --tokenizer Wan2.1-T2V-1.3B/google/umt5-xxl --text "..." --out fox.safetensors
    encode_prompt.py --check fox.safetensors              # validates an embedding file

Writes a safetensors file with one tensor "prompt" [L, 4096] (fp32), L = the prompt's real tokens
including the closing </s>; the engine zero-pads it to text_len (512), which is what Wan's and
Self-Forcing's text encoders do (their padding rows are zeros). Use it with
`wm-run --model DIR --prompt-embedding fox.safetensors`.

How the text is encoded (Wan2.1 wan/modules/t5.py T5EncoderModel + tokenizers.py, the same as
diffusers' WanPipeline._get_t5_prompt_embeds): clean the text (ftfy.fix_text when ftfy is installed,
HTML unescape twice, collapse whitespace), tokenize with the umT5 tokenizer (add_special_tokens, pad
to 512, truncate), run the encoder with the attention mask, keep the first L = sum(mask) rows.

Model sources (local paths only; nothing is downloaded):
  --model DIR     a transformers UMT5EncoderModel folder (config.json + weights), e.g. the
                  `text_encoder` folder of Wan-AI/Wan2.1-T2V-1.3B-Diffusers, or that pipeline folder
                  itself (its text_encoder/ and tokenizer/ are used), or google/umt5-xxl.
  --wan-t5 FILE   Wan's own checkpoint models_t5_umt5-xxl-enc-bf16.pth (Wan-AI/Wan2.1-T2V-1.3B),
                  mapped onto UMT5EncoderModel; needs --tokenizer (Wan2.1-T2V-1.3B/google/umt5-xxl).
Requires: torch, transformers (pip install transformers sentencepiece), safetensors.
"""
import argparse
import html
import importlib.util
import os
import re
import sys


def prompt_clean(text):
    """Wan's HuggingfaceTokenizer(clean='whitespace'): basic_clean then whitespace_clean."""
    try:
        import ftfy
        text = ftfy.fix_text(text)
    except ImportError:
        print("note: ftfy is not installed: the text is not repaired by ftfy.fix_text as Wan does "
              "(matters only for mis-encoded text; pip install ftfy)", file=sys.stderr)
    text = html.unescape(html.unescape(text)).strip()
    return re.sub(r"\s+", " ", text).strip()


# Wan's T5Encoder names -> transformers' UMT5EncoderModel names
_WAN_T5 = [
    (r"^token_embedding\.weight$", ["shared.weight", "encoder.embed_tokens.weight"]),
    (r"^blocks\.(\d+)\.norm1\.weight$", ["encoder.block.{0}.layer.0.layer_norm.weight"]),
    (r"^blocks\.(\d+)\.attn\.([qkvo])\.weight$", ["encoder.block.{0}.layer.0.SelfAttention.{1}.weight"]),
    (r"^blocks\.(\d+)\.pos_embedding\.embedding\.weight$",
     ["encoder.block.{0}.layer.0.SelfAttention.relative_attention_bias.weight"]),
    (r"^blocks\.(\d+)\.norm2\.weight$", ["encoder.block.{0}.layer.1.layer_norm.weight"]),
    (r"^blocks\.(\d+)\.ffn\.gate\.0\.weight$", ["encoder.block.{0}.layer.1.DenseReluDense.wi_0.weight"]),
    (r"^blocks\.(\d+)\.ffn\.fc1\.weight$", ["encoder.block.{0}.layer.1.DenseReluDense.wi_1.weight"]),
    (r"^blocks\.(\d+)\.ffn\.fc2\.weight$", ["encoder.block.{0}.layer.1.DenseReluDense.wo.weight"]),
    (r"^norm\.weight$", ["encoder.final_layer_norm.weight"]),
]


def wan_t5_to_hf(sd):
    """Wan T5Encoder state dict -> (UMT5EncoderModel state dict, UMT5Config kwargs)."""
    out, unknown = {}, []
    for k, v in sd.items():
        for pat, targets in _WAN_T5:
            m = re.match(pat, k)
            if m:
                for t in targets:
                    out[t.format(*m.groups())] = v
                break
        else:
            unknown.append(k)
    if unknown:
        raise SystemExit(f"encode_prompt.py: not a Wan umT5 encoder checkpoint: unknown keys {unknown[:5]}")
    vocab, d_model = sd["token_embedding.weight"].shape
    layers = 1 + max(int(re.match(r"blocks\.(\d+)\.", k).group(1)) for k in sd if k.startswith("blocks."))
    buckets, heads = sd["blocks.0.pos_embedding.embedding.weight"].shape
    cfg = dict(vocab_size=vocab, d_model=d_model, d_kv=sd["blocks.0.attn.q.weight"].shape[0] // heads,
               d_ff=sd["blocks.0.ffn.fc1.weight"].shape[0], num_layers=layers, num_heads=heads,
               relative_attention_num_buckets=buckets, relative_attention_max_distance=128,
               feed_forward_proj="gated-gelu", layer_norm_epsilon=1e-6, is_encoder_decoder=False,
               use_cache=False, tie_word_embeddings=False)   # Wan's umt5_xxl: T5RelativeEmbedding max_dist 128
    return out, cfg


def load_encoder(args, dtype):
    import torch
    from transformers import AutoTokenizer, UMT5Config, UMT5EncoderModel
    if args.wan_t5:
        if not args.tokenizer:
            raise SystemExit("encode_prompt.py: --wan-t5 needs --tokenizer (the google/umt5-xxl folder next to it)")
        sd = torch.load(args.wan_t5, map_location="cpu", mmap=True, weights_only=True)
        hf, kw = wan_t5_to_hf(sd)
        with torch.device("meta"):
            model = UMT5EncoderModel(UMT5Config(**kw))
        missing, unexpected = model.load_state_dict(hf, strict=False, assign=True)
        if missing or unexpected:
            raise SystemExit(f"encode_prompt.py: {args.wan_t5}: missing {missing[:5]} unexpected {unexpected[:5]}")
        model = model.to(dtype)
        tok_path = args.tokenizer
    else:
        path = args.model
        tok_path = args.tokenizer
        if os.path.isdir(os.path.join(path, "text_encoder")):           # a diffusers pipeline folder
            tok_path = tok_path or os.path.join(path, "tokenizer")
            path = os.path.join(path, "text_encoder")
        tok_path = tok_path or path
        model = UMT5EncoderModel.from_pretrained(path, dtype=dtype)
    tok = AutoTokenizer.from_pretrained(tok_path)
    return model.eval().requires_grad_(False), tok


def encode(model, tok, text, max_length=512, device="cpu"):
    """-> [L, d_model] fp32 CPU tensor, L = real tokens (</s> included)."""
    import torch
    text = prompt_clean(text)
    t = tok([text], padding="max_length", max_length=max_length, truncation=True, add_special_tokens=True,
            return_attention_mask=True, return_tensors="pt")
    ids, mask = t["input_ids"].to(device), t["attention_mask"].to(device)
    n = int(mask.gt(0).sum())
    with torch.no_grad():
        h = model.to(device)(input_ids=ids, attention_mask=mask).last_hidden_state
    return h[0, :n].float().cpu().contiguous(), text


def check(path, text_dim, text_len):
    """Validates an embedding file for the engine. Returns a list of problems (empty = fine)."""
    import json as _json
    import struct
    problems = []
    try:
        with open(path, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            hdr = _json.loads(f.read(n))
    except (OSError, ValueError, struct.error) as e:
        return [f"cannot read a safetensors header: {e}"]
    if "prompt" not in hdr:
        return [f"no tensor 'prompt' (tensors: {', '.join(k for k in hdr if k != '__metadata__')})"]
    h = hdr["prompt"]
    if h["dtype"] not in ("F32", "F16", "BF16"):
        problems.append(f"dtype {h['dtype']} (F32, F16 or BF16 expected)")
    shape = h["shape"]
    if len(shape) != 2:
        return problems + [f"shape {shape}: [L, text_dim] expected"]
    L, D = shape
    if D != text_dim:
        problems.append(f"width {D}, the model's text_dim is {text_dim}")
    if not 1 <= L <= text_len:
        problems.append(f"{L} rows: 1..{text_len} expected (text_len)")
    if not problems:
        from safetensors.torch import load_file
        import torch
        x = load_file(path)["prompt"].float()
        if not torch.isfinite(x).all():
            problems.append("non-finite values")
        zero_tail = int((x.abs().sum(1) == 0).flip(0).int().cumprod(0).sum())
        if zero_tail:
            print(f"note: the last {zero_tail} rows are zero (padding): harmless, the engine pads with zeros anyway")
    return problems


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", help="UMT5EncoderModel folder, or a diffusers Wan pipeline folder")
    src.add_argument("--wan-t5", help="Wan's models_t5_umt5-xxl-enc-bf16.pth")
    src.add_argument("--check", metavar="FILE", help="only validate an embedding file")
    p.add_argument("--tokenizer", help="tokenizer folder (default: next to --model)")
    p.add_argument("--text", help="the prompt")
    p.add_argument("--text-file", help="read the prompt from a file")
    p.add_argument("--out", help="output .safetensors")
    p.add_argument("--max-length", type=int, default=512, help="tokenizer length (Wan: 512)")
    p.add_argument("--dtype", choices=["bf16", "f32"], default="bf16", help="compute dtype (Wan runs umT5 in bf16)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--text-dim", type=int, default=4096, help="--check: the model's text_dim")
    p.add_argument("--text-len", type=int, default=512, help="--check: the model's text_len")
    args = p.parse_args()

    if args.check:
        problems = check(args.check, args.text_dim, args.text_len)
        if problems:
            print(f"{args.check}: not a usable prompt embedding:\n  " + "\n  ".join(problems), file=sys.stderr)
            return 1
        print(f"{args.check}: ok")
        return 0
    if not (args.model or args.wan_t5):
        p.error("--model, --wan-t5 or --check is required")
    if not args.out or not (args.text or args.text_file):
        p.error("--text (or --text-file) and --out are required")
    text = args.text if args.text is not None else open(args.text_file, encoding="utf-8").read()
    for mod in ("torch", "transformers"):
        if importlib.util.find_spec(mod) is None:
            raise SystemExit(f"encode_prompt.py: no module {mod}: pip install torch transformers sentencepiece")
    import torch
    from safetensors.torch import save_file
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    model, tok = load_encoder(args, dtype)
    emb, cleaned = encode(model, tok, text, args.max_length, args.device)
    meta = {"text": cleaned, "tokens": str(emb.shape[0]), "encoder": os.path.basename(os.path.normpath(
        args.wan_t5 or args.model)), "dtype": args.dtype, "tool": "tools/prompt/encode_prompt.py"}
    save_file({"prompt": emb}, args.out, metadata=meta)
    print(f"wrote {args.out}: prompt [{emb.shape[0]}, {emb.shape[1]}] "
          f"({emb.shape[0]} tokens{', truncated' if emb.shape[0] == args.max_length else ''})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
