#!/usr/bin/env python3
"""Writes the GGUF test fixtures with PyPI `gguf` (the reference writer).

    python3 tools/fuzz/make_fixtures.py [out_dir]     # default: Tests/Fixtures/gguf

small.gguf       every metadata value type, arrays, and tensors of eight ggml types
tiny-llama.gguf  a 2-layer Llama (n_embd 32, 4/2 heads, vocab 16) with F32/Q8_0/Q4_1 weights

GGUFTests builds the same two files with spikerun's GGUFWriter and expects identical bytes,
so the definitions here and in GGUFTests.swift (`GGUFSamples`) must change together. The files
also seed the libFuzzer corpus (tools/fuzz/run.sh).
"""
import os
import sys

import numpy as np
from gguf import GGUFWriter, GGUFValueType as V, GGMLQuantizationType as Q
from gguf.constants import GGML_QUANT_SIZES


def pattern(n, salt):
    """Deterministic bytes: (i * 37 + salt * 11) & 0xFF, shared with the Swift tests."""
    return np.array([(i * 37 + salt * 11) & 0xFF for i in range(n)], dtype=np.uint8)


def raw_tensor(w, name, shape, qtype, salt):
    """Adds a tensor of any type from pattern bytes; `shape` is in ggml order (ne0 first)."""
    block, size = GGML_QUANT_SIZES[qtype]
    row_bytes = shape[0] // block * size
    rows = 1
    for d in shape[1:]:
        rows *= d
    data = pattern(row_bytes * rows, salt)
    # gguf-py takes numpy order (last = row bytes) and converts bytes to elements.
    w.add_tensor(name, data.reshape(tuple(reversed(shape[1:])) + (row_bytes,)), raw_dtype=qtype)


def small(path):
    w = GGUFWriter(path, "llama")
    kv = [
        ("general.name", "gguf-test", V.STRING, None),
        ("test.u8", 200, V.UINT8, None),
        ("test.i8", -100, V.INT8, None),
        ("test.u16", 60000, V.UINT16, None),
        ("test.i16", -30000, V.INT16, None),
        ("test.u32", 4000000000, V.UINT32, None),
        ("test.i32", -2000000000, V.INT32, None),
        ("test.u64", 2**63 + 5, V.UINT64, None),
        ("test.i64", -(2**62), V.INT64, None),
        ("test.f32", 0.5, V.FLOAT32, None),
        ("test.f64", -1.25e300, V.FLOAT64, None),
        ("test.bool", True, V.BOOL, None),
        ("test.empty", "", V.STRING, None),
        ("test.strings", ["a", "", "h\u00e9llo \U0001F999", "<0x0A>"], V.ARRAY, V.STRING),
        ("test.ints", [1, -2, 3], V.ARRAY, V.INT32),
        ("test.floats", [0.25, -1.5], V.ARRAY, V.FLOAT32),
        ("test.bools", [True, False], V.ARRAY, V.BOOL),
        ("test.u8s", [0, 255], V.ARRAY, V.UINT8),
        ("test.u64s", [2**64 - 1], V.ARRAY, V.UINT64),
    ]
    for key, val, vtype, sub in kv:
        w.add_key_value(key, val, vtype, sub_type=sub)
    tensors = [
        ("f32.vec", [5], Q.F32),
        ("f16.mat", [4, 3], Q.F16),
        ("q8_0.mat", [64, 2], Q.Q8_0),
        ("q4_1.row", [32], Q.Q4_1),
        ("q4_k.mat", [256, 2], Q.Q4_K),
        ("q6_k.vec", [256], Q.Q6_K),
        ("i32.vec", [3], Q.I32),
        ("bf16.cube", [7, 2, 3], Q.BF16),
    ]
    for salt, (name, shape, qtype) in enumerate(tensors):
        raw_tensor(w, name, shape, qtype, salt)
    finish(w)


def tiny_llama(path):
    n_layer, n_embd, n_ff, n_head, n_head_kv, n_vocab = 2, 32, 64, 4, 2, 16
    head_dim = n_embd // n_head
    w = GGUFWriter(path, "llama")
    w.add_key_value("general.name", "tiny-llama", V.STRING)
    w.add_key_value("llama.block_count", n_layer, V.UINT32)
    w.add_key_value("llama.context_length", 128, V.UINT32)
    w.add_key_value("llama.embedding_length", n_embd, V.UINT32)
    w.add_key_value("llama.feed_forward_length", n_ff, V.UINT32)
    w.add_key_value("llama.attention.head_count", n_head, V.UINT32)
    w.add_key_value("llama.attention.head_count_kv", n_head_kv, V.UINT32)
    w.add_key_value("llama.rope.freq_base", 10000.0, V.FLOAT32)
    w.add_key_value("llama.attention.layer_norm_rms_epsilon", 1e-5, V.FLOAT32)
    w.add_key_value("llama.rope.dimension_count", head_dim, V.UINT32)
    w.add_key_value("llama.vocab_size", n_vocab, V.UINT32)
    w.add_key_value("tokenizer.ggml.model", "gpt2", V.STRING)
    w.add_key_value("tokenizer.ggml.tokens", [f"t{i}" for i in range(n_vocab)], V.ARRAY, sub_type=V.STRING)
    w.add_key_value("tokenizer.ggml.token_type", [1] * n_vocab, V.ARRAY, sub_type=V.INT32)
    tensors = [("token_embd.weight", [n_embd, n_vocab], Q.Q8_0)]
    for l in range(n_layer):
        p = f"blk.{l}."
        tensors += [
            (p + "attn_norm.weight", [n_embd], Q.F32),
            (p + "attn_q.weight", [n_embd, n_head * head_dim], Q.Q8_0),
            (p + "attn_k.weight", [n_embd, n_head_kv * head_dim], Q.Q4_1),
            (p + "attn_v.weight", [n_embd, n_head_kv * head_dim], Q.F32),
            (p + "attn_output.weight", [n_head * head_dim, n_embd], Q.Q8_0),
            (p + "ffn_norm.weight", [n_embd], Q.F32),
            (p + "ffn_gate.weight", [n_embd, n_ff], Q.Q4_1),
            (p + "ffn_up.weight", [n_embd, n_ff], Q.Q8_0),
            (p + "ffn_down.weight", [n_ff, n_embd], Q.F16),
        ]
    tensors.append(("output_norm.weight", [n_embd], Q.F32))
    for salt, (name, shape, qtype) in enumerate(tensors):
        raw_tensor(w, name, shape, qtype, salt)
    finish(w)


def finish(w):
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "../../Tests/Fixtures/gguf")
    os.makedirs(out, exist_ok=True)
    small(os.path.join(out, "small.gguf"))
    tiny_llama(os.path.join(out, "tiny-llama.gguf"))
    print("wrote", os.path.join(out, "small.gguf"), "and", os.path.join(out, "tiny-llama.gguf"))
