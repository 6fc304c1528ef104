# Draws the benchmark's plots from results.json: one PNG per quantity, a line per peer,
# the median against N with the min-max range as a band.
# usage: python3 -c "$(cat plot.py)" results.json OUTDIR
import json, sys

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

results, outdir = sys.argv[1], sys.argv[2]
with open(results) as f:
    data = json.load(f)

titles = {
    "conn_per_s": "New TCP connections per second through the director (last service)",
    "pps": "Packets per second delivered through the director",
    "cost_established": "Per-packet cost, established flow (BPF_PROG_TEST_RUN)",
    "cost_new_flow": "Per-packet cost, new flow (BPF_PROG_TEST_RUN)",
    "install": "Time to install N services",
    "list": "Time to list N services",
    "add_one": "Time to add one service at N",
    "remove_one": "Time to remove one service at N",
}
series = data["series"]
for metric, title in titles.items():
    rows = [s for s in series if s["metric"] == metric]
    if not rows:
        continue
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for peer in sorted({r["peer"] for r in rows}):
        pts = sorted((r["n"], r["median"], r["min"], r["max"]) for r in rows if r["peer"] == peer)
        xs = [p[0] for p in pts]
        ax.plot(xs, [p[1] for p in pts], marker="o", label=peer)
        ax.fill_between(xs, [p[2] for p in pts], [p[3] for p in pts], alpha=0.15)
    ax.set_xscale("log")
    if metric in ("install", "list", "add_one", "remove_one"):
        ax.set_yscale("log")
    ax.set_xlabel("virtual services (N)")
    ax.set_ylabel(rows[0]["unit"])
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(f"{outdir}/{metric}.png", dpi=110)
    plt.close(fig)
