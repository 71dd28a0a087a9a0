#!/usr/bin/env python3
"""Spike conversions' quality/efficiency Pareto: table rows and a plot.

    python3 bench/spike_pareto.py collect OUT.json [--with EARLIER.json] NAME=EVAL.json[:COMMAND] ...
        Gathers the `spikerun eval --kl-divergence --json` outputs of several conversions into
        one results file (figures only, no machine paths), after the rows of EARLIER.json.
    python3 bench/spike_pareto.py plot RESULTS.json PNG [--markdown]
        Draws perplexity change (paired ratio, 95% interval) against spikes per activation,
        marker area ∝ arithmetic energy under convention B, colour = KL divergence: all
        conversions, and the region around the target magnified, points numbered with a key
        under the plots; prints the Markdown table with --markdown.

Needs matplotlib for `plot` (pip install matplotlib); the table alone does not.
"""
import json
import os
import sys


def collect(out, items):
    rows = []
    if items[:1] == ["--with"] and len(items) >= 2:
        rows = json.load(open(items[1]))["rows"]
        items = items[2:]
    for item in items:
        name, _, rest = item.partition("=")
        path, _, command = rest.partition(":")
        d = json.load(open(path))
        k, s = d["kl_divergence"], d["spike"]
        e = s["energy"]
        rows.append({
            "name": name, "command": command,
            "ppl": d["ppl"], "ppl_base": k["ppl_base"], "ppl_ratio": k["ppl_ratio"],
            "ppl_ratio_ci95": [k["ppl_ratio_ci95_low"], k["ppl_ratio_ci95_high"]],
            "mean_kld": k["mean_kld"], "kld_stderr": k["kld_stderr"], "p99_kld": k["p99_kld"],
            "top1_agreement_pct": k["top1_agreement_pct"],
            "spa_linear": s["spikes_per_activation"], "spa_attention": s.get("attention_spikes_per_activation"),
            "sops_per_dense_mac": e["sops_per_dense_mac"],
            "float_ops_per_token": e["mac_rest_per_token"],
            "rescale_per_token": e["rescale_multiplies_per_token"],
            "energy_a": e["energy_convention_a"]["dense_over_spike"],
            "energy_b": e["energy_convention_b"]["dense_over_spike"],
            "positions": k["positions"], "ctx": d["ctx"], "chunks": d["chunks"],
        })
    with open(out + ".tmp", "w") as f:
        json.dump({"rows": rows}, f, indent=1)
        f.write("\n")
    os.replace(out + ".tmp", out)


def markdown(rows):
    print("| conversion | ppl ratio [95% CI] | mean KLD | top-1 | SPA linear | SOPs/MAC | float ops/token | energy A | energy B |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        lo, hi = r["ppl_ratio_ci95"]
        print(f"| {r['name']} | {r['ppl_ratio']:.4f} [{lo:.4f}, {hi:.4f}] | {r['mean_kld']:.4f} | "
              f"{r['top1_agreement_pct']:.1f}% | {r['spa_linear']:.3f} | {r['sops_per_dense_mac']:.3f} | "
              f"{r['float_ops_per_token'] / 1e6:.2f} M | {r['energy_a']:.2f} | {r['energy_b']:.2f} |")


def plot(path, png):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = json.load(open(path))["rows"]
    fig, (ax, az) = plt.subplots(1, 2, figsize=(13, 7), dpi=110)
    xs = [r["spa_linear"] for r in rows]
    ys = [100 * (r["ppl_ratio"] - 1) for r in rows]
    lo = [100 * (r["ppl_ratio"] - r["ppl_ratio_ci95"][0]) for r in rows]
    hi = [100 * (r["ppl_ratio_ci95"][1] - r["ppl_ratio"]) for r in rows]
    kld = [r["mean_kld"] for r in rows]
    sizes = [120 * r["energy_b"] ** 2 for r in rows]
    vmin, vmax = min(kld), max(kld)
    for a in (ax, az):
        a.errorbar(xs, ys, yerr=[lo, hi], fmt="none", ecolor="0.7", elinewidth=1, capsize=3, zorder=1)
        sc = a.scatter(xs, ys, s=sizes, c=kld, cmap="viridis_r", vmin=vmin, vmax=vmax, edgecolors="k", zorder=2)
        a.axhline(2, color="tab:red", ls="--", lw=1)
        a.axvline(1.2, color="tab:red", ls="--", lw=1)
        a.grid(alpha=0.3)
        a.set_xlabel("spikes per activation (linear sites)")
    # Left: every conversion, numbered (key under the plots).
    key = []
    for i, (r, x, y) in enumerate(zip(rows, xs, ys)):
        key.append(f"{i + 1}: {r['name']} (B {r['energy_b']:.2f})")
        ax.annotate(str(i + 1), (x, y), textcoords="offset points", xytext=(6, 3), fontsize=7, color="0.3")
    ax.set_ylabel("perplexity change vs dense, % (paired, 95% CI)")
    ax.set_title("all conversions (numbers: key below)", fontsize=9)
    ax.text(1.21, ax.get_ylim()[1] * 0.97, "target: ≤ 1.2 SPA, ≤ +2%", color="tab:red", fontsize=8, va="top")
    # Right: the region around the target, magnified, numbered the same way.
    x0, x1 = 1.05, 1.35
    near = [i for i, x in enumerate(xs) if x0 <= x <= x1]
    az.set_xlim(x0, x1)
    if near:
        az.set_ylim(min(ys[i] - lo[i] for i in near) - 0.3, max(ys[i] + hi[i] for i in near) + 0.3)
    for i in near:
        az.annotate(str(i + 1), (xs[i], ys[i]), textcoords="offset points", xytext=(7, 3), fontsize=8, color="0.2")
    az.set_title(f"near the target (SPA {x0}–{x1})", fontsize=9)
    fig.suptitle("Spike conversions of SmolLM2-135M: quality vs spikes — marker area ∝ (energy ratio B)², "
                 "colour = mean KLD; Botchan, ctx 512, 4 chunks", fontsize=10)
    fig.colorbar(sc, cax=fig.add_axes((0.92, 0.3, 0.012, 0.58)), label="mean KL divergence (nats)")
    # the key in three columns under the plots
    cols = 3
    per = (len(key) + cols - 1) // cols
    for c in range(cols):
        fig.text(0.05 + c * 0.3, 0.17, "\n".join(key[c * per:(c + 1) * per]), fontsize=7.5, va="top")
    fig.subplots_adjust(left=0.05, right=0.9, bottom=0.27, top=0.88, wspace=0.15)
    fig.savefig(png)


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "collect":
        collect(sys.argv[2], sys.argv[3:])
    elif len(sys.argv) >= 4 and sys.argv[1] == "plot":
        plot(sys.argv[2], sys.argv[3])
        if "--markdown" in sys.argv:
            markdown(json.load(open(sys.argv[2]))["rows"])
    else:
        sys.exit(__doc__)
