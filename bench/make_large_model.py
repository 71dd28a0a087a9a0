#!/usr/bin/env python3
"""Writes a synthetic 1.1B-parameter Llama-shaped GGUF (TinyLlama-1.1B's shape: 22 layers,
n_embd 2048, n_ff 5632, 32 heads, 4 KV heads, 32000-token SentencePiece vocabulary) for the
large-model benchmarks: a model that streams from DRAM instead of sitting in the last-level
cache. No 1B model is reachable here (only PyPI and Debian), and decode/prompt speed does not
depend on the weights' values, only on their shape and types, so seeded random weights at a
trained model's scale (N(0, 0.02), norms 1) measure the same work.

The F16 file is written with PyPI gguf; `--quantize TYPE...` then runs llama.cpp's own
quantizer (llama-cpp-python's llama_model_quantize) to the presets users download
(Q4_K_M, Q4_1, Q8_0, ...). The tokenizer comes from llama.cpp's vocab test file
data/vocab/ggml-vocab-llama-spm.gguf (tools/fixtures/fetch_vocab_tests.sh).

    bench/make_large_model.py [--out models/synthetic-1.1B] [--quantize Q4_K_M Q4_1]

Needs PyPI gguf (make setup) and, for --quantize, llama-cpp-python==0.3.36 (pip install;
it builds llama.cpp, several minutes) or else the llama-quantize that tools/llamacpp/build.sh
builds from the same version. Disk: 2.1 GiB for the F16 file plus 0.65 GiB per preset.
"""
import argparse
import os
import subprocess
import sys
import time

import numpy as np
import gguf

SEED = 20261202
SHAPE = dict(n_layer=22, n_embd=2048, n_ff=5632, n_head=32, n_head_kv=4, n_ctx=2048)
PRESETS = {"Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q4_K_M": 15, "Q5_K_M": 17, "Q6_K": 18}


def write_f16(path: str, vocab_path: str) -> None:
    rng = np.random.default_rng(SEED)
    s = SHAPE
    vocab = gguf.GGUFReader(vocab_path)
    tmp = path + ".part"
    w = gguf.GGUFWriter(tmp, arch="llama")
    w.add_name("synthetic-llama-1.1B")
    w.add_context_length(s["n_ctx"])
    w.add_embedding_length(s["n_embd"])
    w.add_block_count(s["n_layer"])
    w.add_feed_forward_length(s["n_ff"])
    w.add_head_count(s["n_head"])
    w.add_head_count_kv(s["n_head_kv"])
    w.add_rope_dimension_count(s["n_embd"] // s["n_head"])
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    for field in vocab.fields.values():
        if field.name.startswith("tokenizer."):
            vtype = field.types[0]
            sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
            w.add_key_value(field.name, field.contents(), vtype, sub_type=sub)
    n_vocab = len(vocab.get_field("tokenizer.ggml.tokens").contents())

    def mat(rows: int, cols: int) -> np.ndarray:
        return (rng.standard_normal((rows, cols), dtype=np.float32) * np.float32(0.02)).astype(np.float16)

    hd = s["n_embd"] // s["n_head"]
    w.add_tensor("token_embd.weight", mat(n_vocab, s["n_embd"]))
    w.add_tensor("output_norm.weight", np.ones(s["n_embd"], dtype=np.float32))
    w.add_tensor("output.weight", mat(n_vocab, s["n_embd"]))
    for i in range(s["n_layer"]):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", np.ones(s["n_embd"], dtype=np.float32))
        w.add_tensor(p + "attn_q.weight", mat(s["n_embd"], s["n_embd"]))
        w.add_tensor(p + "attn_k.weight", mat(s["n_head_kv"] * hd, s["n_embd"]))
        w.add_tensor(p + "attn_v.weight", mat(s["n_head_kv"] * hd, s["n_embd"]))
        w.add_tensor(p + "attn_output.weight", mat(s["n_embd"], s["n_embd"]))
        w.add_tensor(p + "ffn_norm.weight", np.ones(s["n_embd"], dtype=np.float32))
        w.add_tensor(p + "ffn_gate.weight", mat(s["n_ff"], s["n_embd"]))
        w.add_tensor(p + "ffn_up.weight", mat(s["n_ff"], s["n_embd"]))
        w.add_tensor(p + "ffn_down.weight", mat(s["n_embd"], s["n_ff"]))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file(progress=True)
    w.close()
    os.replace(tmp, path)


# llama.cpp's quantizer built by tools/llamacpp/build.sh from the same pinned version, used when
# llama-cpp-python is not installed.
QUANTIZE_BINARIES = [".build-llamacpp/native/bin/llama-quantize", ".build-llamacpp/avx2/bin/llama-quantize"]


def quantize(src: str, dst: str, preset: str) -> None:
    tmp = dst + ".part"
    try:
        import llama_cpp
    except ImportError:
        tool = next((b for b in QUANTIZE_BINARIES if os.access(b, os.X_OK)), None)
        if tool is None:
            sys.exit("make_large_model: --quantize needs llama-cpp-python (bash tools/pip_install.sh "
                     "llama-cpp-python==0.3.36) or llama-quantize (bash tools/llamacpp/build.sh native)")
        rc = subprocess.run([tool, src, tmp, preset, str(os.cpu_count() or 1)],
                            stdout=subprocess.DEVNULL).returncode
        if rc != 0:
            sys.exit(f"make_large_model: {tool} to {preset} failed ({rc})")
        os.replace(tmp, dst)
        return
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = PRESETS[preset]
    params.nthread = os.cpu_count() or 1
    rc = llama_cpp.llama_model_quantize(src.encode(), tmp.encode(), params)
    if rc != 0:
        sys.exit(f"make_large_model: llama_model_quantize to {preset} failed ({rc})")
    os.replace(tmp, dst)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="models/synthetic-1.1B", help="path prefix of the files")
    ap.add_argument("--vocab", default="data/vocab/ggml-vocab-llama-spm.gguf")
    ap.add_argument("--quantize", nargs="*", default=["Q4_K_M"], choices=sorted(PRESETS))
    a = ap.parse_args()
    f16 = a.out + ".F16.gguf"
    if not os.path.exists(f16):
        t = time.time()
        write_f16(f16, a.vocab)
        print(f"make_large_model: wrote {f16} ({os.path.getsize(f16) / 2**30:.2f} GiB, {time.time() - t:.0f} s)")
    for preset in a.quantize:
        dst = f"{a.out}.{preset}.gguf"
        if os.path.exists(dst):
            continue
        t = time.time()
        quantize(f16, dst, preset)
        print(f"make_large_model: wrote {dst} ({os.path.getsize(dst) / 2**30:.2f} GiB, {time.time() - t:.0f} s)")


if __name__ == "__main__":
    main()
