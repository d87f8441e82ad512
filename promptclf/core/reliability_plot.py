"""The reliability diagram of a validation sample (promptclf.core.trust.Assessment) as a PNG."""

from __future__ import annotations

from pathlib import Path

from promptclf.core.trust import reliability


def write_reliability_diagram(assessment, path: str | Path, title: str = "validation rows") -> Path:
    """Accuracy against mean confidence per confidence bin, before and after calibration, with the diagonal a
    calibrated model follows; each point sized by its rows."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(5, 5))
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", label="calibrated")
    for confidence, name, colour in (
        (assessment.confidence_before, f"before (ECE {assessment.ece_before or 0:.3f})", "tab:red"),
        (
            assessment.confidence_after,
            f"after {assessment.calibration.kind} (ECE {assessment.ece_after or 0:.3f})",
            "tab:blue",
        ),
    ):
        if len(confidence):
            x, y, rows = reliability(confidence, assessment.right)
            axes.plot(x, y, marker="o", color=colour, label=name)
            axes.scatter(x, y, s=10 + 200 * rows / rows.sum(), color=colour, alpha=0.4)
    axes.set(xlabel="confidence", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1), title=title)
    axes.legend(loc="upper left", fontsize=8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)
    return path
