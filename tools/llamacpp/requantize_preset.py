#!/usr/bin/env python3
"""Re-quantizes a GGUF to one of llama-quantize's presets with llama.cpp's own quantizer
(llama-cpp-python's llama_model_quantize), through an F32 copy so that no tensor is quantized
twice by llama.cpp. Used to measure spikerun on the files users download (docs/benchmarks.md),
e.g. SmolLM2 as Q4_K_M: its 576-wide rows are not multiples of 256, so llama.cpp falls back to
Q5_0 / Q8_0 for most tensors (it prints how many).

    tools/llamacpp/requantize_preset.py SRC.gguf DST.gguf PRESET      e.g. Q4_K_M, Q5_K_M, Q6_K

Needs PyPI gguf and llama-cpp-python==0.3.36 (bash tools/pip_install.sh llama-cpp-python==0.3.36;
it compiles llama.cpp, several minutes). Weights are never committed.
"""
import os
import sys
import tempfile

import numpy as np
import gguf
from gguf import quants

# llama_ftype values (llama.h) of the presets this script offers.
PRESETS = {"Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q5_0": 8, "Q5_1": 9, "Q2_K": 10, "Q3_K_M": 12,
           "Q4_K_M": 15, "Q5_K_M": 17, "Q6_K": 18}


def write_f32(src: str, dst: str) -> None:
    r = gguf.GGUFReader(src)
    arch = r.get_field(gguf.Keys.General.ARCHITECTURE).contents()
    w = gguf.GGUFWriter(dst, arch=arch)
    for f in r.fields.values():
        if f.name in (gguf.Keys.General.ARCHITECTURE, gguf.Keys.General.FILE_TYPE) or f.name.startswith("GGUF."):
            continue
        vt = f.types[0]
        w.add_key_value(f.name, f.contents(), vt, sub_type=f.types[-1] if vt == gguf.GGUFValueType.ARRAY else None)
    w.add_file_type(0)  # all F32
    for t in r.tensors:
        x = quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        w.add_tensor(t.name, x.reshape([int(d) for d in reversed(t.shape)]))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main() -> None:
    if len(sys.argv) != 4 or sys.argv[3] not in PRESETS:
        sys.exit(__doc__ + "\npresets: " + ", ".join(PRESETS))
    src, dst, preset = sys.argv[1:]
    try:
        import llama_cpp
    except ImportError:
        sys.exit("requantize_preset: needs llama-cpp-python (bash tools/pip_install.sh llama-cpp-python==0.3.36)")
    with tempfile.TemporaryDirectory(dir=os.path.dirname(os.path.abspath(dst))) as tmp:
        f32 = os.path.join(tmp, "f32.gguf")
        part = os.path.join(tmp, "out.gguf")
        write_f32(src, f32)
        p = llama_cpp.llama_model_quantize_default_params()
        p.ftype = PRESETS[preset]
        if llama_cpp.llama_model_quantize(f32.encode(), part.encode(), p) != 0:
            sys.exit(f"requantize_preset: llama_model_quantize to {preset} failed")
        os.replace(part, dst)  # atomic: no half-written DST
    print(f"requantize_preset: wrote {dst} ({preset}, llama-cpp-python {llama_cpp.__version__})")


if __name__ == "__main__":
    main()
