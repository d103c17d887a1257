"""``bench/run.py --chart FILE.png``: the comparison a run measured, as a picture.

One panel per scenario, its headline figure; per serializer a bar for
relayrouter and one for each router it was compared with (Crossbar.io, the
ceiling relay), as ratios to relayrouter measured in the same run
(relayrouter = 1, higher is better: for latencies and memory the inverse).
The absolute figure is written on each bar.  matplotlib is a bench-only
dependency (``pip install -e '.[bench]'``).
"""

COLOURS = {"relayrouter": "#2563eb", "crossbar": "#9ca3af", "ceiling": "#d97706"}
LABELS = {"relayrouter": "relayrouter", "crossbar": "Crossbar.io", "ceiling": "ceiling relay"}


def comparisons(docs: list[dict], scenarios: dict, median) -> list[dict]:
    """Per scenario and serializer: {router: (ratio, its figure, relayrouter's figure in that run)},
    each router against the relayrouter runs of its own doc."""
    found = []
    for scenario, (metrics, unit) in scenarios.items():
        metric, better = metrics[0]
        groups = {}
        for doc in docs:
            runs = [r for r in doc["runs"] if r["scenario"] == scenario and "error" not in r]
            for ser in dict.fromkeys(r["ser"] for r in runs):
                def value(router):
                    return median([r for r in runs if r["ser"] == ser and r["router"] == router], metric)
                ours = value("relayrouter")
                if not ours:
                    continue
                group = groups.setdefault(ser, {"relayrouter": (1.0, ours, ours)})
                for router in dict.fromkeys(r["router"] for r in runs):
                    theirs = value(router)
                    if router == "relayrouter" or not theirs:
                        continue
                    ratio = theirs / ours if better == "high" else ours / theirs
                    group[router] = (ratio, theirs, ours)
        if groups:
            found.append({"scenario": scenario, "metric": metric, "better": better, "unit": unit,
                          "groups": groups})
    return found


def draw(docs: list[dict], path, scenarios: dict, median) -> None:
    try:
        import matplotlib
    except ImportError:
        raise SystemExit("--chart needs matplotlib: pip install -e '.[bench]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = comparisons(docs, scenarios, median)
    if not panels:
        raise SystemExit("--chart: no scenario with results to draw")
    routers = [r for r in COLOURS if any(r in g for p in panels for g in p["groups"].values())]
    columns = 2 if len(panels) > 1 else 1
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5.2 * columns, 2.5 * rows), squeeze=False)
    width = 0.8 / len(routers)
    for ax, panel in zip(axes.flat, panels):
        sers = list(panel["groups"])
        top = 1.0
        for i, router in enumerate(routers):
            for j, ser in enumerate(sers):
                if router not in panel["groups"][ser]:
                    continue
                ratio, absolute, ours = panel["groups"][ser][router]
                shown = panel["groups"][ser]["relayrouter"][1]
                x = j + (i - (len(routers) - 1) / 2) * width
                ax.bar(x, ratio, width * 0.92, color=COLOURS[router],
                       label=LABELS[router] if j == 0 else None)
                # Against a relayrouter figure of another run than the one on its bar: say which.
                label = _short(absolute) if ours == shown else f"{_short(absolute)}\nrr {_short(ours)}"
                ax.text(x, ratio, label, ha="center", va="bottom", fontsize=6.5)
                top = max(top, ratio)
        ax.axhline(1.0, color="#1f2933", linewidth=0.6)
        ax.set_xticks(range(len(sers)), sers)
        ax.set_ylim(0, top * 1.35)
        arrow = "lower is better" if panel["better"] == "low" else "higher is better"
        ax.set_title(f"{panel['scenario']}: {panel['metric']} ({arrow})", fontsize=8.5)
        ax.tick_params(labelsize=7)
        ax.set_ylabel("× relayrouter", fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=len(routers), fontsize=8, frameon=False)
    meta = docs[0].get("meta", {})
    fig.text(0.5, 0.003, f"bars: each router's figure ÷ relayrouter's in the same run (inverted where lower is "
             f"better), the figure on top; {meta.get('cpu', '')} x{meta.get('cores', '')}, "
             f"relayrouter {meta.get('relayrouter_commit', '')}", ha="center", fontsize=6.5, color="#52606d")
    fig.tight_layout(rect=(0, 0.02, 1, 0.95))
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _short(value: float) -> str:
    if value >= 1e6:
        return f"{value / 1e6:.1f}M"
    if value >= 1e4:
        return f"{value / 1e3:.0f}k"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"
