#!/usr/bin/env python3
"""Extract real SmolLM2 weight rows into a tiny GGUF for the spk_acc C-simulation.

The fixture lets `make -C firmware csim` test the kernel on real model weights without the
135M model present (CI). Rows are copied byte for byte from the quantized tensors (no
requantization), so the d/m scales and codes are the model's own.

    python3 tools/fpga/make_csim_fixture.py [models/SmolLM2-135M-Instruct.Q4_1.gguf]
writes Tests/Fixtures/fpga/smollm2_slices.gguf (tensor names keep the originals).
"""
import os
import sys

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader, GGUFWriter

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SRC = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
OUT = os.path.join(ROOT, "Tests", "Fixtures", "fpga", "smollm2_slices.gguf")

# (tensor, rows kept): partial last chunks on purpose (Q4_1 tiles are 128 rows, Q8_0 64)
KEEP = [("blk.0.ffn_gate.weight", 192), ("blk.0.attn_k.weight", 192),
        ("blk.0.ffn_down.weight", 64), ("token_embd.weight", 96)]
BLOCK_BYTES = {GGMLQuantizationType.Q4_1: 20, GGMLQuantizationType.Q8_0: 34}


def main():
    if not os.path.exists(SRC):
        sys.exit(f"make_csim_fixture: model not found at {SRC} (run `make model`)")
    r = GGUFReader(SRC)
    tensors = {t.name: t for t in r.tensors}
    w = GGUFWriter(OUT + ".tmp", "llama")
    w.add_string("spikerun.fixture", "rows of SmolLM2-135M-Instruct.Q4_1.gguf for firmware/tb")
    for name, rows in KEEP:
        t = tensors[name]
        n_in, n_out = int(t.shape[0]), int(t.shape[1])
        row_bytes = n_in // 32 * BLOCK_BYTES[t.tensor_type]
        raw = np.asarray(t.data).reshape(-1).view(np.uint8)[: rows * row_bytes]
        assert raw.size == rows * row_bytes and rows <= n_out
        w.add_tensor(name, raw.reshape(rows, row_bytes), raw_dtype=t.tensor_type)
        print(f"{name}: {rows} of {n_out} rows x {n_in} ({t.tensor_type.name}, {raw.size} bytes)")
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(OUT + ".tmp", OUT)
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
    main()
