#!/usr/bin/env python3
"""Quality of candidate spike weight formats, measured before any kernel is written.

The spike path needs a weight code whose float scales are applied once per output row (no
per-32-block float multiply) and whose bytes per weight are few enough for decode to beat the
dense engine. This script re-expresses the linear weights (q, k, v, o, gate, up, down) of a
Q4_1 GGUF in each candidate format, stores the values that format would represent as F16
(exact for these values to within F16 rounding of the row scale), keeps every other tensor
byte for byte, and scores the result with `spikerun eval --kl-divergence` against the dense
model's base file. The activations stay dense, so the figures isolate the weight format.

Formats (w = represented weight, q = integer code, per output row o and 32-input block b):
  rtn8          symmetric int8 per row (the current `--weights int8`)
  rtn4          symmetric int4 per row
  p2-<bits>     symmetric <bits>-bit codes with a power-of-two block exponent e in 0..3:
                w = s_o * 2^e * q (a block rescale by a shift; codes re-quantized, MSE-best e)
  ib<bits>      the file's own Q4_1 codes kept; its fp16 block scale d and min m replaced by
                integers: d = sd_o * D, m = sm_o * M, |D|, |M| <= 2^bits - 1 (bits + 1 with the
                sign in the bytes column; the runtime keeps them in 16 bits) (integer block
                rescale D*A + M*N, then two float multiplies per row)
  ib<bits>-rq   as ib<bits> with the codes re-chosen for the integer scales
  ib<bits>-d2   as ib<bits>-rq with D snapped to at most two signed binary digits (D*A by two
                shifts and an add), M left at <bits> bits

Usage: bench/weight_formats.py [-m MODEL] [--base KLD] [-f TEXT] [--chunks N] [-t THREADS]
                               [-o results.json] [FORMAT ...]
"""
import argparse, json, os, subprocess, sys, tempfile, time

import numpy as np
import gguf
from gguf import GGUFReader, GGUFWriter, GGMLQuantizationType as QT

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINEAR = ('attn_q', 'attn_k', 'attn_v', 'attn_output', 'ffn_gate', 'ffn_up', 'ffn_down')
DEFAULT_FORMATS = ['rtn8', 'rtn4', 'p2-4', 'p2-5', 'p2-6', 'ib8', 'ib7', 'ib6', 'ib8-rq', 'ib8-d2']


def copy_metadata(r, w):
    """Every key but the architecture (the writer's own) and the reader's GGUF.* bookkeeping."""
    for f in r.fields.values():
        if f.name == gguf.Keys.General.ARCHITECTURE or f.name.startswith('GGUF.'):
            continue
        vt = f.types[0]
        w.add_key_value(f.name, f.contents(), vt, sub_type=f.types[-1] if vt == gguf.GGUFValueType.ARRAY else None)


def q4_1_parts(t, rows):
    """(d, m, q) of a Q4_1 tensor: rows x blocks scales and rows x blocks x 32 codes 0..15."""
    raw = np.asarray(t.data).reshape(rows, -1, 20)
    d = raw[:, :, 0:2].copy().view(np.float16)[:, :, 0].astype(np.float64)
    m = raw[:, :, 2:4].copy().view(np.float16)[:, :, 0].astype(np.float64)
    qs = raw[:, :, 4:20]
    q = np.concatenate([qs & 15, qs >> 4], axis=2).astype(np.float64)
    return d, m, q


def rtn_rows(W, bits):
    qmax = 2 ** (bits - 1) - 1
    s = np.abs(W).max(1, keepdims=True) / qmax
    s[s == 0] = 1
    return np.clip(np.round(W / s), -qmax - 1, qmax) * s


def pow2_blocks(W, bits, emax=3, candidates=16):
    """s_o * 2^e * q, q in [-2^(bits-1), 2^(bits-1) - 1], e in 0..emax: s_o searched over
    candidates, e chosen per block for the least squared error."""
    half = 2 ** (bits - 1)
    R, C = W.shape
    B = W.reshape(R, C // 32, 32)
    top = np.abs(B).max(2).max(1, keepdims=True)
    best, best_err = None, None
    for f in np.linspace(0.6, 1.0, candidates):
        s = np.maximum(top * f / (half - 1) / 2 ** emax, 1e-12)
        out = np.zeros_like(B)
        err = np.full(B.shape[:2], np.inf)
        for e in range(emax + 1):
            st = (s * 2 ** e)[:, :, None]
            Q = np.clip(np.round(B / st), -half, half - 1) * st
            eq = ((Q - B) ** 2).sum(2)
            better = eq < err
            err = np.where(better, eq, err)
            out = np.where(better[:, :, None], Q, out)
        tot = err.sum(1)
        if best is None:
            best, best_err = out.copy(), tot
        else:
            better = tot < best_err
            best[better] = out[better]
            best_err = np.minimum(best_err, tot)
    return best.reshape(R, C)


def snap_digits(X, nd):
    """Nearest non-negative integer with at most nd non-zero signed binary digits."""
    cands = {0}
    for a in range(12):
        cands.add(1 << a)
        if nd >= 2:
            for b in range(a):
                cands.update(((1 << a) + (1 << b), (1 << a) - (1 << b)))
    c = np.array(sorted(cands), dtype=np.float64)
    return c[np.abs(X[..., None] - c).argmin(-1)]


def int_rows(v, levels, digits=None):
    """Per row: v = s_o * I with integer |I| <= levels (optionally snapped to few digits)."""
    s = np.abs(v).max(1, keepdims=True) / levels
    s[s == 0] = 1
    I = np.round(v / s)
    if digits:
        I = np.sign(I) * snap_digits(np.abs(I), digits)
    return I * s


def int_block_scales(d, m, q, bits, requant, digits):
    d2 = int_rows(d, 2 ** bits - 1, digits)
    m2 = int_rows(m, 2 ** bits - 1)
    if requant:
        W0 = d[:, :, None] * q + m[:, :, None]
        dd = np.where(d2 == 0, 1e-30, d2)
        q = np.clip(np.round((W0 - m2[:, :, None]) / dd[:, :, None]), 0, 15)
    return d2[:, :, None] * q + m2[:, :, None]


def bytes_per_weight(fmt):
    if fmt.startswith('rtn'):
        return int(fmt[3:]) / 8
    if fmt.startswith('p2-'):
        return (int(fmt[3:]) + 2 / 32) / 8          # codes + a 2-bit exponent per block
    bits = int(fmt[2:].split('-')[0])
    return (4 + 2 * (bits + 1) / 32) / 8            # 4-bit codes + signed D and M per block


def represent(fmt, t, rows):
    d, m, q = q4_1_parts(t, rows)
    if fmt.startswith('ib'):
        bits = int(fmt[2:].split('-')[0])
        W = int_block_scales(d, m, q, bits, fmt.endswith('-rq') or fmt.endswith('-d2'),
                             2 if fmt.endswith('-d2') else None)
        return W.reshape(rows, -1)
    W = (d[:, :, None] * q + m[:, :, None]).reshape(rows, -1)
    if fmt.startswith('rtn'):
        return rtn_rows(W, int(fmt[3:]))
    if fmt.startswith('p2-'):
        return pow2_blocks(W, int(fmt[3:]))
    raise SystemExit(f'weight_formats: unknown format {fmt}')


def write_variant(src, dst, fmt):
    r = GGUFReader(src)
    w = GGUFWriter(dst, r.get_field(gguf.Keys.General.ARCHITECTURE).contents())
    copy_metadata(r, w)
    for t in r.tensors:
        shape = list(reversed([int(x) for x in t.shape]))   # rows x columns
        if any('.' + l + '.' in t.name for l in LINEAR):
            if t.tensor_type != QT.Q4_1:
                raise SystemExit(f'weight_formats: {t.name} is {t.tensor_type.name}; this study reads Q4_1 files')
            w.add_tensor(t.name, represent(fmt, t, shape[0]).astype(np.float16), raw_dtype=QT.F16)
        else:
            plain = t.tensor_type in (QT.F32, QT.F16)
            w.add_tensor(t.name, np.asarray(t.data), raw_shape=shape if plain else None, raw_dtype=t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def kld(spikerun, model, base, threads):
    out = subprocess.run([spikerun, 'eval', '-m', model, '--kl-divergence-base', base, '--kl-divergence',
                          '-t', str(threads), '--json'], capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('-m', '--model', default=os.path.join(ROOT, 'models/SmolLM2-135M-Instruct.Q4_1.gguf'))
    ap.add_argument('--base', help='KL-divergence base file of MODEL (made if missing)')
    ap.add_argument('-f', '--file', default=os.path.join(ROOT, 'data/text/botchan.txt'))
    ap.add_argument('--chunks', type=int, default=8)
    ap.add_argument('-t', '--threads', type=int, default=os.cpu_count())
    ap.add_argument('-o', '--out')
    ap.add_argument('--spikerun', default=os.path.join(ROOT, '.build/release/spikerun'))
    ap.add_argument('formats', nargs='*', default=DEFAULT_FORMATS)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix='weight-formats-')
    base = a.base or os.path.join(tmp, 'base.kld')
    if not os.path.exists(base):
        subprocess.run([a.spikerun, 'eval', '-m', a.model, '-f', a.file, '-c', '512', '--chunks', str(a.chunks),
                        '-t', str(a.threads), '--kl-divergence-base', base], check=True, capture_output=True)
    rows = []
    print('| format | bytes/weight | ppl ratio [95% CI] | mean KLD | top-1 |')
    print('|---|---|---|---|---|')
    for fmt in a.formats:
        path = os.path.join(tmp, f'{fmt}.gguf')
        t0 = time.time()
        write_variant(a.model, path, fmt)
        j = kld(a.spikerun, path, base, a.threads)
        os.remove(path)
        k = j['kl_divergence']
        row = {'format': fmt, 'bytesPerWeight': bytes_per_weight(fmt), 'pplRatio': k['ppl_ratio'],
               'pplRatioLow': k['ppl_ratio_ci95_low'], 'pplRatioHigh': k['ppl_ratio_ci95_high'],
               'meanKLD': k['mean_kld'], 'top1Pct': k['top1_agreement_pct'], 'seconds': round(time.time() - t0, 1)}
        rows.append(row)
        print(f"| {fmt} | {row['bytesPerWeight']:.3f} | {row['pplRatio']:.4f} [{row['pplRatioLow']:.4f}, "
              f"{row['pplRatioHigh']:.4f}] | {row['meanKLD']:.4f} | {row['top1Pct']:.1f}% |", flush=True)
    if a.out:
        meta = {'model': os.path.basename(a.model), 'text': os.path.basename(a.file), 'chunks': a.chunks,
                'date': time.strftime('%Y-%m-%d')}
        with open(a.out + '.tmp', 'w') as f:
            json.dump({'meta': meta, 'rows': rows}, f, indent=1)
        os.replace(a.out + '.tmp', a.out)


if __name__ == '__main__':
    sys.exit(main())
