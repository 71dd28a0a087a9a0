#!/usr/bin/env python3
"""Independent check of spikerun's spike-train measures.

Reads a recording directory (index.json + .npy files written by SpikeRecording.write or
StreamingRecordingWriter) and the metrics JSON of SpikeAnalysis, recomputes the measures with
NumPy / SciPy / scikit-learn and compares them to a stated absolute tolerance (default 1e-9):

- .npy files: format version 1.0, data offset a multiple of 64, dtype int8 / <i4, C order;
- spikes decode to counts: n = sum_t c_t * s_t - offset (step weights from index.json);
- spikes per activation and firing rate (each token's own T);
- entropy of per-token counts and of T-step spike words: scipy.stats.entropy(..., base=2),
  plus the Miller-Madow correction H + (K - 1) / (2 N ln 2);
- block entropy H_L of overlapping L-step windows and h_L = H_L - H_{L-1};
- LZ76 phrase count (Kaspar-Schuster), reimplemented here (first 2 neurons per site);
- MI and NMI between a stimulus (top-K token ids; sentence category) and the count:
  sklearn.metrics.mutual_info_score (nats -> bits) and normalized_mutual_info_score;
- the shuffle-corrected MI: corrected = MI - shuffled exactly, and the shuffled baseline
  (spikerun's mean over its seeded stimulus permutations) against NumPy's own permutations
  through sklearn, within a statistical bound (5 standard errors of both means);
- group comparisons (metrics.json "comparisons"): per-sentence values recomputed from the
  recording, the difference of group means exactly, the two-sided permutation p-value against
  an exact enumeration (when spikerun enumerated) or NumPy's Monte Carlo within 5 standard
  errors, and the Benjamini-Hochberg adjustment against scipy.stats.false_discovery_control.

Usage: check_with_scipy.py RECORDING_DIR METRICS_JSON [--tol 1e-9] [--permutations N]
(N: the permutations spikerun analyze used, default 10000, for the Monte Carlo bound)
Exit status: 0 all agree, 1 a value differs, 2 bad input, 3 a Python module is missing.
"""
import argparse
import collections
import json
import math
import os
import sys


def fail_missing(name, pip_name):
    print(f"check_with_scipy: error: python module '{name}' is missing; "
          f"install it with 'pip install {pip_name}'", file=sys.stderr)
    sys.exit(3)


try:
    import numpy as np
except ImportError:
    fail_missing("numpy", "numpy")
try:
    import scipy.stats
except ImportError:
    fail_missing("scipy", "scipy")
try:
    import sklearn.metrics
except ImportError:
    fail_missing("sklearn", "scikit-learn")


class Checker:
    def __init__(self, tol):
        self.tol = tol
        self.ok = 0
        self.bad = []
        self.max_diff = 0.0

    def close(self, what, ours, theirs):
        if ours is None or theirs is None:
            if ours is None and theirs is None:
                self.ok += 1
            else:
                self.bad.append(f"{what}: ours {ours!r}, reference {theirs!r}")
            return
        diff = abs(float(ours) - float(theirs))
        self.max_diff = max(self.max_diff, diff)
        if diff <= self.tol:
            self.ok += 1
        else:
            self.bad.append(f"{what}: ours {ours!r}, reference {theirs!r} (diff {abs(ours - theirs):.3e})")

    def within(self, what, ours, theirs, bound):
        """A statistical comparison: |ours - theirs| <= bound (not counted in max_diff)."""
        diff = abs(float(ours) - float(theirs))
        if diff <= bound:
            self.ok += 1
        else:
            self.bad.append(f"{what}: ours {ours!r}, reference {theirs!r} (diff {diff:.3e} > bound {bound:.3e})")

    def equal(self, what, ours, theirs):
        if ours == theirs:
            self.ok += 1
        else:
            self.bad.append(f"{what}: ours {ours!r}, reference {theirs!r}")


def load_npy(path, dtype, check):
    with open(path, "rb") as f:
        major, minor = np.lib.format.read_magic(f)
        check.equal(f"{os.path.basename(path)} format version", (major, minor), (1, 0))
        shape, fortran, dt = np.lib.format.read_array_header_1_0(f)
        check.equal(f"{os.path.basename(path)} data offset % 64", f.tell() % 64, 0)
        check.equal(f"{os.path.basename(path)} fortran_order", fortran, False)
        check.equal(f"{os.path.basename(path)} dtype", dt, np.dtype(dtype))
    arr = np.load(path, allow_pickle=False)
    check.equal(f"{os.path.basename(path)} shape", arr.shape, tuple(shape))
    return arr


def entropy_bits(values):
    """Plug-in entropy in bits via scipy, and Miller-Madow; values: 1-D array or 2-D rows."""
    if values.ndim == 1:
        _, counts = np.unique(values, return_counts=True)
    else:
        _, counts = np.unique(values, axis=0, return_counts=True)
    n = counts.sum()
    h = float(scipy.stats.entropy(counts, base=2)) if n > 0 else 0.0
    mm = h + (len(counts) - 1) / (2 * n * math.log(2)) if n > 0 else 0.0
    return h, mm


LZ_NEURONS_PER_SITE = 2


def lz76(s):
    """Kaspar-Schuster LZ76 phrase count."""
    n = len(s)
    if n <= 1:
        return n
    c, l, i, k, kmax = 1, 1, 0, 1, 1
    while True:
        if s[i + k - 1] == s[l + k - 1]:
            k += 1
            if l + k > n:
                c += 1
                break
        else:
            if k > kmax:
                kmax = k
            i += 1
            if i == l:
                c += 1
                l += kmax
                if l + 1 > n:
                    break
                i, k, kmax = 0, 1, 1
            else:
                k = 1
    return c


def spike_events(n, T, encoding, offset):
    if encoding == "sign-magnitude":
        return bin(abs(int(n))).count("1")
    if encoding == "ternary":
        return abs(int(n))
    if encoding == "binary":
        return int(n) + offset
    return bin(int(n) % (1 << int(T))).count("1")


def top_tokens(ids, k):
    freq = collections.Counter(int(t) for t in ids)
    ranked = sorted(freq.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
    return sorted(t for t, _ in ranked)


SHUFFLES = 200        # NumPy stimulus permutations per neuron for the MI baseline
PERMUTATIONS = 20000  # NumPy relabellings per group comparison


def mi_bits(s, r):
    return sklearn.metrics.mutual_info_score(s, r) / math.log(2)


def check_shuffle_baseline(check, tag, got, s_lab, r_lab, n_shuffles, rng):
    """corrected = bits - shuffled; shuffled agrees with an independent shuffle mean."""
    if "shuffled_bits" not in got:
        check.equal(f"{tag} shuffled MI present", False, True)
        return
    check.close(f"{tag} corrected MI", got["corrected_bits"], got["bits"] - got["shuffled_bits"])
    if n_shuffles <= 0:
        check.close(f"{tag} shuffled MI without shuffles", got["shuffled_bits"], 0.0)
        return
    ref = np.array([max(0.0, mi_bits(rng.permutation(s_lab), r_lab)) for _ in range(SHUFFLES)])
    sd = float(ref.std(ddof=1)) if SHUFFLES > 1 else 0.0
    bound = 5 * sd * (1 / math.sqrt(n_shuffles) + 1 / math.sqrt(SHUFFLES)) + 1e-9
    check.within(f"{tag} shuffled MI vs NumPy permutations (mean {ref.mean():.6g}, sd {sd:.3g})",
                 got["shuffled_bits"], float(ref.mean()), bound)


def sentence_values(measure, counts, steps, token_sentence, enc, offset):
    """Per-sentence value of a comparison measure over a site's recorded neurons."""
    nt, k = counts.shape
    by = collections.defaultdict(list)
    for i in range(nt):
        if token_sentence[i] >= 0:
            by[int(token_sentence[i])].append(i)
    out = {}
    for sent, toks in by.items():
        if measure in ("spikes_per_activation", "firing_rate", "mean_abs_count"):
            events = sum(spike_events(counts[i, j], steps[i], enc, offset) for i in toks for j in range(k))
            total_steps = int(sum(int(steps[i]) for i in toks))
            abs_sum = int(np.abs(counts[toks, :]).sum())
            out[sent] = {"spikes_per_activation": events / (len(toks) * k),
                         "firing_rate": events / (total_steps * k) if total_steps else 0.0,
                         "mean_abs_count": abs_sum / (len(toks) * k)}[measure]
        elif measure == "count_entropy":
            out[sent] = float(np.mean([entropy_bits(counts[toks, j])[0] for j in range(k)]))
    return out


def permutation_p(a, b, rng, n_perm):
    """Two-sided p of mean(a) - mean(b): exact when C(n, nA) <= n_perm, else Monte Carlo."""
    import itertools
    allv = np.concatenate([a, b])
    n, na = len(allv), len(a)
    total = allv.sum()
    obs = a.mean() - b.mean()
    thr = abs(obs) - 1e-12 * max(1.0, abs(obs))
    if math.comb(n, na) <= n_perm:
        ext = sum(1 for idx in itertools.combinations(range(n), na)
                  if abs(allv[list(idx)].sum() / na - (total - allv[list(idx)].sum()) / (n - na)) >= thr)
        return ext / math.comb(n, na), True
    sums = np.array([allv[rng.permutation(n)[:na]].sum() for _ in range(PERMUTATIONS)])
    d = sums / na - (total - sums) / (n - na)
    return (1 + int((np.abs(d) >= thr).sum())) / (1 + PERMUTATIONS), False


def check_comparisons(check, metrics, index, recording, token_sentence, n_perm, rng):
    sentences = index["sentences"]
    sites = {(s["layer"], s["site"]): s for s in index["sites"]}
    for comp in metrics.get("comparisons", []):
        measure, site_name = comp["measure"], comp["site"]
        ga, gb = comp["group_a"], comp["group_b"]
        ps, adj = [], []
        for row in comp["rows"]:
            key = f"comparison {measure} L{row['layer']}.{site_name}"
            site = sites.get((row["layer"], site_name))
            if site is None:
                check.equal(f"{key} recorded", False, True)
                continue
            counts = load_npy(os.path.join(recording, site["counts"]), "<i4", check)
            steps = load_npy(os.path.join(recording, site["token_steps"]), "<i4", check)
            vals = sentence_values(measure, counts, steps, token_sentence[:site["token_count"]],
                                   site["encoding"], site["offset"])
            a = np.array([vals[i] for i in sorted(vals) if sentences[i]["category"] == ga])
            b = np.array([vals[i] for i in sorted(vals) if sentences[i]["category"] == gb])
            check.equal(f"{key} group sizes", (row["count_a"], row["count_b"]), (len(a), len(b)))
            if len(a) == 0 or len(b) == 0:
                continue
            check.close(f"{key} mean A", row["mean_a"], float(a.mean()))
            check.close(f"{key} mean B", row["mean_b"], float(b.mean()))
            check.close(f"{key} difference", row["difference"], float(a.mean() - b.mean()))
            p, exact = permutation_p(a, b, rng, n_perm)
            if row["exact"]:
                check.equal(f"{key} exact enumeration", exact, True)
                check.close(f"{key} exact p", row["p"], p)
            else:
                pm = min(max((row["p"] + p) / 2, 1 / (1 + PERMUTATIONS)), 1.0)
                se = math.sqrt(pm * (1 - pm) * (1 / n_perm + 1 / PERMUTATIONS))
                check.within(f"{key} permutation p vs NumPy ({p:.4g})", row["p"], p, 5 * se + 2 / n_perm)
            ps.append(row["p"])
            adj.append(row["p_adjusted"])
        if ps:
            ref = scipy.stats.false_discovery_control(np.array(ps), method="bh")
            for (row, got, want) in zip(comp["rows"], adj, ref):
                check.close(f"comparison {measure} L{row['layer']}.{site_name} BH-adjusted p", got, float(want))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("recording")
    ap.add_argument("metrics")
    ap.add_argument("--tol", type=float, default=1e-9)
    ap.add_argument("--permutations", type=int, default=10000)
    args = ap.parse_args()
    check = Checker(args.tol)
    rng = np.random.default_rng(20250601)
    try:
        with open(os.path.join(args.recording, "index.json")) as f:
            index = json.load(f)
        with open(args.metrics) as f:
            metrics = json.load(f)
    except (OSError, ValueError) as e:
        print(f"check_with_scipy: error: cannot read inputs: {e}", file=sys.stderr)
        return 2
    tokens = load_npy(os.path.join(args.recording, index["tokens_file"]), "<i4", check)
    token_sentence = load_npy(os.path.join(args.recording, index["token_sentence_file"]), "<i4", check)
    check.equal("tokens.npy == index.json tokens", tokens.tolist(), index["tokens"])
    check.equal("token_sentence.npy == index.json", token_sentence.tolist(), index["token_sentence"])
    sentences = index["sentences"]
    top_k = metrics["options"]["top_k_tokens"]
    measured = {(m["layer"], m["site"]): m for m in metrics["sites"]}
    check.equal("sites in metrics", sorted(measured), sorted((s["layer"], s["site"]) for s in index["sites"]))

    for site in index["sites"]:
        key = f"L{site['layer']}.{site['site']}"
        m = measured.get((site["layer"], site["site"]))
        nt, T, nn = site["token_count"], site["steps"], len(site["neurons"])
        spikes = load_npy(os.path.join(args.recording, site["spikes"]), "i1", check)
        counts = load_npy(os.path.join(args.recording, site["counts"]), "<i4", check)
        steps = load_npy(os.path.join(args.recording, site["token_steps"]), "<i4", check)
        check.equal(f"{key} spikes shape", spikes.shape, (nt, T, nn))
        check.equal(f"{key} counts shape", counts.shape, (nt, nn))
        enc, offset = site["encoding"], site["offset"]
        alphabet = {-1, 0, 1} if enc in ("sign-magnitude", "ternary") else {0, 1}
        check.equal(f"{key} spike values", set(np.unique(spikes).tolist()) <= alphabet, True)
        w = np.array(site["step_weights"], dtype=np.int64)
        decoded = np.einsum("tsn,s->tn", spikes.astype(np.int64), w) - offset
        check.equal(f"{key} spikes decode to counts", bool(np.array_equal(decoded, counts)), True)
        if m is None:
            continue
        neurons = m.get("neuron_measures") or []
        check.equal(f"{key} neuron list", [x["neuron"] for x in neurons], site["neurons"])
        ids = tokens[:nt]
        top = top_tokens(ids, top_k)
        check.equal(f"{key} top-K token ids", m["token_stimulus_ids"], top)
        tok_mask = np.isin(ids, top)
        sent = token_sentence[:nt]
        cat_mask = sent >= 0
        cats = np.array([sentences[s]["category"] if s >= 0 else "" for s in sent], dtype=object)
        alph = 3 if enc in ("sign-magnitude", "ternary") else 2
        for j, x in enumerate(neurons):
            tag = f"{key} neuron {x['neuron']}"
            c = counts[:, j]
            ev = sum(spike_events(c[i], steps[i], enc, offset) for i in range(nt))
            check.close(f"{tag} spikes_per_activation", x["spikes_per_activation"], ev / nt if nt else 0.0)
            check.close(f"{tag} firing_rate", x["firing_rate"], ev / int(steps.sum()) if nt else 0.0)
            h, mm = entropy_bits(c)
            check.close(f"{tag} count entropy", x["count_entropy"]["bits"], h)
            check.close(f"{tag} count entropy MM", x["count_entropy"]["miller_madow"], mm)
            h, mm = entropy_bits(spikes[:, :, j])
            check.close(f"{tag} word entropy", x["word_entropy"]["bits"], h)
            check.close(f"{tag} word entropy MM", x["word_entropy"]["miller_madow"], mm)
            train = spikes[:, :, j].reshape(-1)
            L = x.get("block_length")
            n_steps = len(train)
            ref_L = None
            for cand in range(1, 65):
                if n_steps - cand + 1 >= 10 * alph ** cand:
                    ref_L = cand
                else:
                    break
            check.equal(f"{tag} block length", L, ref_L)
            if L:
                win = np.lib.stride_tricks.sliding_window_view(train, L)
                hl, hl_mm = entropy_bits(win)
                hl1 = entropy_bits(np.lib.stride_tricks.sliding_window_view(train, L - 1))[0] if L > 1 else 0.0
                check.close(f"{tag} block entropy H_L", x["block_entropy"]["bits"], hl)
                check.close(f"{tag} block entropy H_L MM", x["block_entropy"]["miller_madow"], hl_mm)
                check.close(f"{tag} entropy rate h_L", x["entropy_rate_block"], hl - hl1)
            if j < LZ_NEURONS_PER_SITE:   # pure-Python LZ76 is slow: check a few neurons per site
                cph = lz76(train.tolist())
                check.equal(f"{tag} LZ76 phrases", x["lz_phrases"], cph)
                check.close(f"{tag} LZ76 rate", x["entropy_rate_lz"],
                            cph * math.log2(n_steps) / n_steps if n_steps > 1 else 0.0)
            for name, mask, labels in (("token", tok_mask, ids), ("category", cat_mask, cats)):
                got = x.get(f"{name}_information")
                if not mask.any():
                    check.equal(f"{tag} {name} MI present", got, None)
                    continue
                s_lab, r_lab = labels[mask], c[mask]
                mi = sklearn.metrics.mutual_info_score(s_lab, r_lab) / math.log(2)
                nmi = sklearn.metrics.normalized_mutual_info_score(s_lab, r_lab)
                check.close(f"{tag} {name} MI (bits)", got["bits"], mi)
                check.close(f"{tag} {name} NMI", got["normalized"], nmi)
                check.equal(f"{tag} {name} samples", got["samples"], int(mask.sum()))
                check_shuffle_baseline(check, f"{tag} {name}", got, s_lab, r_lab,
                                       metrics["options"].get("shuffle_permutations", 0), rng)
        # layer value = mean over neurons
        if neurons:
            check.close(f"{key} mean count entropy", m["mean"]["count_entropy"],
                        float(np.mean([x["count_entropy"]["bits"] for x in neurons])))
            if all(x.get("token_information") for x in neurons):
                check.close(f"{key} mean token NMI", m["mean"]["token_nmi"],
                            float(np.mean([x["token_information"]["normalized"] for x in neurons])))

    check_comparisons(check, metrics, index, args.recording, token_sentence, args.permutations, rng)

    for line in check.bad[:20]:
        print("check_with_scipy: mismatch: " + line, file=sys.stderr)
    print(f"check_with_scipy: {check.ok} values agree within {args.tol:g}, {len(check.bad)} differ; "
          f"largest numeric difference {check.max_diff:.2e} "
          f"(numpy {np.__version__}, scipy {scipy.__version__}, scikit-learn {sklearn.__version__})")
    return 0 if not check.bad else 1


if __name__ == "__main__":
    sys.exit(main())
