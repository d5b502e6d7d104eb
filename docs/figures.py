"""Draw the model figures of docs/simulation.md from the model's own functions.

    .venv/bin/python docs/figures.py      # writes docs/demand_shapes.png, docs/expected_price.png
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # the backend is chosen first
import numpy as np

from sim.model.behaviour import Demand, Ladder

DOCS = Path(__file__).resolve().parent


def demand_shapes(path: Path) -> None:
    d = np.linspace(0, 0.7, 141)
    shapes = [
        ("linear: 1 + s·d", Demand("linear", 4.0, 0.3, 0.0)),
        ("saturating: 1 + s·r·(1 − e^(−d/r))", Demand("saturating", 4.0, 0.3, 0.0)),
        ("reference, penalty 0: deeper stops helping", Demand("reference", 4.0, 0.3, 0.0)),
        ("reference, penalty 1: deeper hurts", Demand("reference", 4.0, 0.3, 1.0)),
    ]
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for label, shape in shapes:
        ax.plot(d * 100, [shape.lift(x) for x in d], label=label)
    ax.axvline(30, color="grey", linestyle=":", linewidth=1)
    ax.text(30.5, 0.3, "reference_discount r = 0.3", fontsize=8, color="grey")
    ax.set_xlabel("discount the shopper expects (% off the list price)")
    ax.set_ylabel("conversion ÷ base_conversion (lift)")
    ax.set_title("Demand shapes, price_sensitivity s = 4")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def expected_price(path: Path) -> None:
    ladder = Ladder((2, 3, 5), (0.2, 0.3, 0.4), 0.0)
    deeper = Ladder((2, 3, 5), (0.2, 0.3, 0.5), 0.0)
    lam = np.linspace(0, 6, 121)
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    who = {1: "opens a group", 2: "joins a 1-member group", 3: "joins a 2-member group"}
    for members, style in ((1, "-"), (2, "--"), (3, ":")):
        line, = ax.plot(lam, [100 * ladder.expected_discount(members, x) for x in lam], style,
                        label=f"shopper {who[members]}")
        ax.plot(lam, [100 * deeper.expected_discount(members, x) for x in lam], style,
                color=line.get_color(), alpha=0.45, label="  … with the top tier at 50% off")
    ax.set_xlabel("joiners the shopper expects before the group closes (Λ)")
    ax.set_ylabel("expected discount (% off the list price)")
    ax.set_title("Expected price of a 2 / 3 / 5-person group at 20 / 30 / 40% off "
                 "(refund on failure)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    demand_shapes(DOCS / "demand_shapes.png")
    expected_price(DOCS / "expected_price.png")
    print("wrote docs/demand_shapes.png, docs/expected_price.png")
