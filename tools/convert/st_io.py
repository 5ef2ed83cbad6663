"""st_io.py - streaming checkpoint I/O for tools/convert.

Readers give name -> shape without touching tensor data, and load one tensor at a time:
  - safetensors (one file, or shards with/without model.safetensors.index.json) through safe_open;
  - PyTorch pickles (.pt/.pth) through torch.load(mmap=True, weights_only=True), so a 5.7 GB
    checkpoint is paged in tensor by tensor, not read into memory.
The writer emits a safetensors file whose header is computed up front, then writes each tensor as it
is produced (one tensor in memory at a time), into a temporary file renamed at the end.
"""
import glob
import json
import os
import re
import struct
import sys

import torch

DTYPES = {  # --dtype name -> (torch dtype, safetensors dtype, bytes per element)
    "f32": (torch.float32, "F32", 4),
    "f16": (torch.float16, "F16", 2),
    "bf16": (torch.bfloat16, "BF16", 2),
}
ST_NAMES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64,
            "I64": torch.int64, "I32": torch.int32, "U8": torch.uint8, "BOOL": torch.bool,
            "F8_E4M3": getattr(torch, "float8_e4m3fn", None), "F8_E5M2": getattr(torch, "float8_e5m2", None)}


class SourceError(RuntimeError):
    pass


# ------------------------------------------------------------------------------------------------
# Readers
# ------------------------------------------------------------------------------------------------
class SafetensorsSource:
    """One or more safetensors files seen as one name -> tensor mapping."""

    def __init__(self, paths):
        from safetensors import safe_open
        self.paths = list(paths)
        self._files = []
        self._where = {}
        self.metadata = {}
        for p in self.paths:
            try:
                f = safe_open(p, framework="pt", device="cpu")
            except Exception as e:  # safetensors raises its own error type
                raise SourceError(f"{p}: not a readable safetensors file ({e})") from e
            self._files.append(f)
            self.metadata.update(f.metadata() or {})
            for k in f.keys():
                if k in self._where:
                    raise SourceError(f"{p}: tensor '{k}' also appears in {self.paths[self._where[k]]}")
                self._where[k] = len(self._files) - 1

    def keys(self):
        return list(self._where)

    def shape(self, k):
        return tuple(self._files[self._where[k]].get_slice(k).get_shape())

    def get(self, k):
        return self._files[self._where[k]].get_tensor(k)

    def describe(self):
        return ", ".join(os.path.basename(p) for p in self.paths)


class DictSource:
    """A flat {name: tensor} dict (from torch.load with mmap, so tensors are lazily paged)."""

    def __init__(self, d, label):
        self.d = d
        self.label = label

    def keys(self):
        return list(self.d)

    def shape(self, k):
        return tuple(self.d[k].shape)

    def get(self, k):
        return self.d[k]

    def describe(self):
        return self.label


def torch_load(path, trust_pickle=False):
    """torch.load a .pt/.pth without reading it into memory (mmap) and without running pickled code
    (weights_only) unless trust_pickle. Returns the loaded object."""
    kw = dict(map_location="cpu")
    try:
        return torch.load(path, mmap=True, weights_only=not trust_pickle, **kw)
    except RuntimeError as e:
        msg = str(e)
        if "mmap" in msg or "zip" in msg.lower():
            # legacy (pre-1.6, non-zip) pickle files cannot be memory-mapped
            print(f"note: {path}: cannot memory-map ({msg.splitlines()[0]}); loading it whole", file=sys.stderr)
            return torch.load(path, weights_only=not trust_pickle, **kw)
        raise
    except Exception as e:  # weights_only refuses pickled objects other than tensors and containers
        if not trust_pickle and "weights only" in str(e).lower().replace("_", " "):
            first = re.sub(r"\x1b\[[0-9;]*m", "", str(e).splitlines()[0])
            raise SourceError(
                f"{path}: torch.load(weights_only=True) refused an object in the checkpoint "
                f"({first}). If you trust the file, pass --trust-pickle.") from e
        raise


def flatten_tensors(obj, prefix=""):
    """Nested dicts of tensors -> {dotted name: tensor}; non-tensor leaves are dropped."""
    out = {}
    if isinstance(obj, torch.Tensor):
        out[prefix[:-1]] = obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            out.update(flatten_tensors(v, f"{prefix}{k}."))
    return out


def safetensors_paths(path):
    """A .safetensors file, a sharded index json, or a directory holding either."""
    if os.path.isdir(path):
        idx = sorted(glob.glob(os.path.join(path, "*.safetensors.index.json")))
        if idx:
            return safetensors_paths(idx[0])
        files = sorted(glob.glob(os.path.join(path, "*.safetensors")))
        if not files:
            raise SourceError(f"{path}: no .safetensors file in this directory")
        return files
    if path.endswith(".index.json"):
        with open(path) as f:
            wm = json.load(f)["weight_map"]
        base = os.path.dirname(path)
        return [os.path.join(base, p) for p in sorted(set(wm.values()))]
    return [path]


def st_header(path):
    """(header dict, data offset) of a safetensors file, read without loading tensors."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        if n > 100 << 20:
            raise SourceError(f"{path}: not a safetensors file (header length {n})")
        return json.loads(f.read(n)), 8 + n


# ------------------------------------------------------------------------------------------------
# Writer
# ------------------------------------------------------------------------------------------------
class StreamWriter:
    """Writes a safetensors file tensor by tensor. entries: [(name, shape, dtype name)] in file
    order; write(name, tensor) must follow that order."""

    def __init__(self, path, entries, metadata=None):
        self.path = path
        self.tmp = path + ".tmp"
        self.entries = list(entries)
        header, off = {}, 0
        for name, shape, dt in self.entries:
            nbytes = DTYPES[dt][2]
            for s in shape:
                nbytes *= s
            header[name] = {"dtype": DTYPES[dt][1], "shape": list(shape), "data_offsets": [off, off + nbytes]}
            off += nbytes
        if metadata:
            header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
        self.total = off
        hb = json.dumps(header, separators=(",", ":")).encode()
        hb += b" " * (-len(hb) % 8)
        self.f = open(self.tmp, "wb")
        self.f.write(struct.pack("<Q", len(hb)))
        self.f.write(hb)
        self.next = 0
        self.written = 0

    def write(self, name, t):
        exp_name, shape, dt = self.entries[self.next]
        if name != exp_name:
            raise RuntimeError(f"writer: got tensor '{name}', expected '{exp_name}'")
        if tuple(t.shape) != tuple(shape):
            raise RuntimeError(f"writer: tensor '{name}' has shape {list(t.shape)}, expected {list(shape)}")
        t = t.detach().to(device="cpu", dtype=DTYPES[dt][0]).contiguous()
        if t.numel():
            self.f.write(memoryview(t.view(torch.uint8).reshape(-1).numpy()))
        self.written += t.numel() * DTYPES[dt][2]
        self.next += 1

    def close(self):
        if self.next != len(self.entries):
            raise RuntimeError(f"writer: {len(self.entries) - self.next} tensors were not written")
        self.f.flush()
        os.fsync(self.f.fileno())
        self.f.close()
        os.replace(self.tmp, self.path)

    def abort(self):
        try:
            self.f.close()
        finally:
            if os.path.exists(self.tmp):
                os.unlink(self.tmp)


class Progress:
    """One status line on stderr (rewritten in place on a terminal, every 10% otherwise)."""

    def __init__(self, total, label, quiet=False):
        self.total, self.label, self.quiet = max(total, 1), label, quiet
        self.tty = sys.stderr.isatty()
        self.last = -1

    def update(self, i, name):
        if self.quiet:
            return
        pct = int(100 * i / self.total)
        if self.tty:
            sys.stderr.write(f"\r{self.label} [{i}/{self.total}] {pct:3d}% {name[:60]:60s}")
            sys.stderr.flush()
        elif pct // 10 != self.last // 10 or i == self.total:
            sys.stderr.write(f"{self.label} [{i}/{self.total}] {pct:3d}%\n")
        self.last = pct

    def done(self):
        if not self.quiet and self.tty:
            sys.stderr.write("\n")
