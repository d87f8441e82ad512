"""Write docs/benchmarks.md from the result files kept in benchmarks/results/, so no figure in it is typed by hand.

Each kept result set is printed with the data, split, seeds, machine and date its files record; what they do not
record is printed as "not recorded". The benchmarks that keep no result file are listed with what they measure
and how to run them.

    python benchmarks/report.py            # write docs/benchmarks.md
    python benchmarks/report.py --check    # exit 1 when docs/benchmarks.md differs from what the results give
"""

from __future__ import annotations

import argparse
import ast
import json
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent
ROOT = BENCHMARKS.parent
RESULTS = BENCHMARKS / "results"
PAGE = ROOT / "docs" / "benchmarks.md"
NOT_RECORDED = "not recorded"
# Keys a result file would hold its machine or date under; none of today's files has one.
MACHINE_KEYS = ("machine", "host", "cpu", "device")
DATE_KEYS = ("date", "timestamp", "started")


def docstring(path: Path) -> str:
    return ast.get_docstring(ast.parse(path.read_text())) or ""


def first_paragraph(text: str) -> str:
    return " ".join(text.split("\n\n")[0].split())


def recorded(cells: list[dict], keys: tuple[str, ...]) -> str:
    values = sorted({str(c[k]) for c in cells for k in keys if k in c})
    return ", ".join(values) if values else NOT_RECORDED


def date_fact(cells: list[dict], folder: Path) -> tuple[str, str]:
    """The facts table's date row: the dates the cells record, and the day git last changed their files."""
    committed = last_commit_date(folder)
    return "date", recorded(cells, DATE_KEYS) + (
        f" (the files were last changed in git on {committed})" if committed else ""
    )


def last_commit_date(path: Path) -> str | None:
    """The day git last changed the files: a fact about the repository, not a date the files record."""
    try:
        found = subprocess.run(
            ["git", "log", "-1", "--format=%ad", "--date=short", "--", str(path)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return found or None


def few_labels(folder: Path) -> str:
    """The few-labels cells: the table, the automatic choice's replay under other rules, its misses, and how
    much of them the test rows' own noise explains, each computed by benchmarks/few_labels.py's own functions."""
    sys.path.insert(0, str(BENCHMARKS))
    import _datasets
    import few_labels as bench

    load = lambda: [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]  # noqa: E731
    cells = load()
    data = [n for n in _datasets.NAMES if any(c["data"] == n for c in cells)]
    budgets = sorted({c["budget"] for c in cells})
    seeds = sorted({c["seed"] for c in cells})
    facts = [
        ("result files", f"`{folder.relative_to(ROOT)}/` ({len(cells)} cells: data set, examples per class, seed)"),
        ("data", ", ".join(data)),
        ("split", " ".join(_datasets.__doc__.split("\n\n")[1].split())),
        (
            "test rows",
            ", ".join(f"{n} per data set" for n in sorted({c["n_test"] for c in cells}))
            + " (the same seeded sample for every seed and budget)",
        ),
        ("examples per class", ", ".join(map(str, budgets)) + " (drawn from the train pool with the cell's seed)"),
        ("seeds", ", ".join(map(str, seeds))),
        ("machine", recorded(cells, MACHINE_KEYS)),
        date_fact(cells, folder),
    ]
    return "\n".join(
        [
            "## Few labels or none (`benchmarks/few_labels.py`)",
            "",
            "Every offline component, their combination and the automatic choice on every shared data set, over "
            "examples per class and seeds, with the estimate the run report states next to the measured accuracy.",
            "",
            "| | |",
            "|---|---|",
            *(f"| {name} | {value} |" for name, value in facts),
            "",
            "Accuracy on the test rows, mean ± standard deviation over the seeds. `auto` is the automatic choice of "
            "`model=\"offline\"` replayed with today's rule on each cell's stored cross-validation; `estimate` is the "
            "accuracy the run report would state; `train s` is the cross-validation time and `auto items/s` the "
            'labelling speed of what `auto` runs ("encoder": embedding components only), both on the machine above.',
            "",
            bench.table(load()).replace("(|mean| ", "(\\|mean\\| "),  # a bare | would split the table cell
            "",
            "### The automatic choice under other rules",
            "",
            "Replayed on the same cells (`python benchmarks/few_labels.py --rules`): cells of seed 0, cells of the "
            "other seeds, rows as the mean over their seeds, and the mean shortfall from the best single component.",
            "",
            bench.compare_rules(load()),
            "",
            "### Where today's rule misses",
            "",
            bench.misses([c for c in load() if "candidates_cv" in c]),
            "",
            "### How much of the miss the test rows explain",
            "",
            bench.noise_of_test_rows(load()),
        ]
    )


def scale(folder: Path) -> str:
    """benchmarks/scale.py's printed runs, as kept (each run's first line names its machine and date)."""
    runs = "\n\n".join(f"```\n{p.read_text().strip()}\n```" for p in sorted(folder.glob("*.txt")))
    return "\n".join(
        [
            "## Big jobs (`benchmarks/scale.py`)",
            "",
            "\n\n".join(
                " ".join(part.split())
                for part in docstring(BENCHMARKS / "scale.py").split("Usage:")[0].strip().split("\n\n")
            ),
            "",
            "The machine is shared: the bare client and promptclf are compared within one run (one block below), "
            "never across blocks. With failing rows, `ideal` counts only first asks (each failing row is asked 5 "
            "times).",
            "",
            f"Kept in `{folder.relative_to(ROOT)}/`; `ratio` is promptclf's items/s over the bare client's in the same "
            "run, `error rows` checks that every row is in the output and exactly the rows never answered carry an "
            "error.",
            "",
            runs,
        ]
    )


def trust(folder: Path) -> str:
    """benchmarks/trust.py's tables, as written (models, guarantee, calibration, interval), and its diagrams."""
    tables = [folder / f"{name}.txt" for name in ("models", "guarantee", "calibration", "interval")]
    diagrams = sorted((ROOT / "docs" / "assets" / "trust").glob("*.png"))
    return "\n".join(
        [
            "## Labels you can trust (`benchmarks/trust.py`)",
            "",
            "\n\n".join(" ".join(part.split()) for part in docstring(BENCHMARKS / "trust.py").split("\n\n")[:4]),
            "",
            f"Kept in `{folder.relative_to(ROOT)}/` (the models' probabilities in `probabilities/`, so the tables are "
            "recomputed without training).",
            "",
            "\n".join(p.read_text().strip() + "\n" for p in tables if p.exists()),
            " ".join(f"![{p.stem}](assets/trust/{p.name})" for p in diagrams),
        ]
    )


def label_errors(folder: Path) -> str:
    """The label-error detector's precision and recall with 10% of the labels flipped (benchmarks/label_errors.py's
    own table)."""
    sys.path.insert(0, str(BENCHMARKS))
    import label_errors as bench

    cells = bench.read_cells(folder)
    facts = [
        ("result files", f"`{folder.relative_to(ROOT)}/` ({len(cells)} cells: data set, components, seed)"),
        ("data", ", ".join(n for n in bench.DATA if any(c["data"] == n for c in cells))),
        ("rows", " ".join(docstring(BENCHMARKS / "label_errors.py").split("\n\n")[1].split())),
        ("seeds", ", ".join(map(str, sorted({c["seed"] for c in cells})))),
        ("machine", recorded(cells, MACHINE_KEYS)),
        date_fact(cells, folder),
    ]
    return "\n".join(
        [
            "## Finding wrong labels (`benchmarks/label_errors.py`)",
            "",
            "`promptclf audit` / `promptclf.find_label_errors` on labelled rows of which 10% carry a wrong label.",
            "",
            "| | |",
            "|---|---|",
            *(f"| {name} | {value} |" for name, value in facts),
            "",
            "Mean ± standard deviation over the seeds. `flagged`: rows the audit reports (of 400); `precision at 40`: "
            "the share of flipped rows among the 40 it ranks most suspect, whatever the rule; `model accuracy`: the "
            "out-of-fold models' accuracy against the labels before flipping (what they get wrong on correctly "
            "labelled rows is most of what precision loses); `s`: the out-of-fold probabilities' time, embedding "
            "included where it was not cached, on the machine above.",
            "",
            bench.table(cells),
        ]
    )


def size_name(size: int) -> str:
    return "zero-shot" if size == 0 else (f"{size:,} train rows" if size > 1000 else f"{size} a label")


def multi_label(folder: Path) -> str:
    """benchmarks/multi_label.py's cells: each method's means over the seeds, per label set and size."""
    cells = [json.loads(p.read_text()) for p in sorted(folder.glob("*.txt"))]
    order = {"ekman": 0, "all": 1}
    names = {"ekman": "Ekman 7", "all": "28 labels"}
    facts = [
        ("result files", f"`{folder.relative_to(ROOT)}/` ({len(cells)} cells: label set, size, seed)"),
        ("data", "GoEmotions (../shared/data/goemotions), official splits"),
        ("split", " ".join(docstring(BENCHMARKS / "multi_label.py").split("\n\n")[1].split())),
        ("seeds", ", ".join(sorted({str(c["seed"]) for c in cells}))),
        ("machine", recorded(cells, MACHINE_KEYS)),
        ("date", recorded(cells, DATE_KEYS)),
    ]
    groups: dict = {}
    for cell in cells:
        for row in cell["rows"]:
            groups.setdefault((order.get(cell["set"], 9), cell["set"], cell["size"], row["method"]), []).append(row)
    lines = [
        "| labels | examples | method | seeds | micro-F1 | macro-F1 | exact match | labels per item (gold) | items "
        "with 2+ labels (gold, both) | wall s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    mean = lambda rows, key: sum(r[key] for r in rows) / len(rows)  # noqa: E731
    for (_, label_set, size, method), rows in sorted(groups.items()):
        lines.append(
            f"| {names.get(label_set, label_set)} | {size_name(size)} | {method} | {len(rows)} | "
            f"{mean(rows, 'micro_f1'):.3f} | {mean(rows, 'macro_f1'):.3f} | {mean(rows, 'exact_match'):.3f} | "
            f"{mean(rows, 'labels_per_item'):.2f} ({mean(rows, 'gold_labels_per_item'):.2f}) | "
            f"{mean(rows, 'items_with_2_plus'):.0f} ({mean(rows, 'gold_items_with_2_plus'):.0f}, "
            f"{mean(rows, 'both_2_plus'):.0f}) | {mean(rows, 'wall_s'):.0f} |"
        )
    reports = [
        f"- {names.get(c['set'], c['set'])}, {size_name(c['size'])}, seed {c['seed']}: `{r['report']}`"
        for c in sorted(cells, key=lambda c: (order.get(c["set"], 9), c["size"], c["seed"]))
        for r in c["rows"]
        if r["method"] == "offline" and "report" in r
    ]
    return "\n".join(
        [
            "## Multi-label (`benchmarks/multi_label.py`)",
            "",
            first_paragraph(docstring(BENCHMARKS / "multi_label.py")),
            "",
            "| | |",
            "|---|---|",
            *(f"| {name} | {value} |" for name, value in facts),
            "",
            "Means over the seeds of 300 test rows each. `items with 2+ labels`: how many items the method gave two "
            "or more labels, how many have two or more gold labels, and how many of them both.",
            "",
            *lines,
            "",
            "What the offline run reported (the estimate is on the examples, before any test row is labelled):",
            "",
            *reports,
        ]
    )


def few_labels_mean(replayed: list[dict], cells: list[dict]) -> str:
    """The few_labels mean under the budget: each cell's accuracy after as replayed where that is known, else as
    trained (`--few-labels`), and the cells still unknown."""
    trained = {c["cell"]: c for c in cells}
    after = {
        r["cell"]: r["after"] if r["after"] is not None else trained.get(r["cell"], {}).get("after") for r in replayed
    }
    known = [r for r in replayed if after[r["cell"]] is not None]
    unknown = [r["cell"] for r in replayed if after[r["cell"]] is None]
    return (
        f"The few_labels mean under the budget, each cell's accuracy after as replayed where it is exact or "
        f"approximate and as trained where replay cannot tell ({sum(r['after'] is None for r in known)} cells): over "
        f"{len(known)} of {len(replayed)} cells, **{sum(r['before'] for r in known) / len(known):.3f} before, "
        f"{sum(after[r['cell']] for r in known) / len(known):.3f} after**"
        + (f"; not known: {', '.join(unknown)}." if unknown else ".")
    )


def offline_budget(folder: Path) -> str:
    """benchmarks/offline_budget.py's timed runs (before and after side by side), its few_labels cells and the
    cost model's measurements, as kept."""
    load = lambda pattern: [json.loads(p.read_text()) for p in sorted(folder.glob(pattern))]  # noqa: E731
    runs = [r for r in load("*.json") if "target" in r]
    cells = [r for r in load("few_labels-*.json") if isinstance(r, dict)]
    replayed = next(iter(load("few_labels-replay.json")), [])
    costs = [json.loads(line) for p in sorted(folder.glob("costs-*.jsonl")) for line in p.read_text().splitlines()]
    lines = [
        "## The offline default's time budget (`benchmarks/offline_budget.py`)",
        "",
        " ".join(docstring(BENCHMARKS / "offline_budget.py").split("\n\n")[0].split()),
        "",
        f"Kept in `{folder.relative_to(ROOT)}/`. The machine is shared: compare runs of one date and load only; CPU "
        "seconds count every thread.",
        "",
        "| date | target | code | wall s | CPU s | target s | load before → after | accuracy | run report |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(runs, key=lambda r: (r["target"], r["date"])):
        lines.append(
            f"| {r['date']} | {r['target']} | {r['label']} ({r['code']}) | {r['wall_s']:.0f} | {r['cpu_s']:.0f} | "
            f"{r['target_s']} | {r['load_before']} → {r['load_after']} | "
            f"{'–' if r['accuracy'] is None else format(r['accuracy'], '.3f')} | "
            f"{r.get('report', '–')} |"
        )
    if cells:
        before = [c["before"] for c in cells]
        after = [c["after"] for c in cells]
        lines += [
            "",
            "The few_labels cells the default budget cuts, trained as the default (`--few-labels`), against the "
            "automatic choice kept for each cell in benchmarks/results/few_labels/ (no budget):",
            "",
            "| cell | before (chosen) | after (chosen) | train wall s | train CPU s | load | run report |",
            "|---|---|---|---|---|---|---|",
            *(
                f"| {c['cell']} | {c['before']:.3f} ({c['before_chosen']}) | {c['after']:.3f} ({c['after_chosen']}) "
                f"| {c['train_wall_s']:.0f} | {c['train_cpu_s']:.0f} | {c['load']} | {c['report']} |"
                for c in cells
            ),
            "",
            f"Mean over these {len(cells)} cells: {sum(before) / len(cells):.3f} before, {sum(after) / len(cells):.3f} "
            "after.",
        ]
    if replayed:
        known = [r for r in replayed if r["after"] is not None]
        cut = [r for r in replayed if r["cut"]]
        lines += [
            "",
            f"Replayed on the kept cross-validation of all {len(replayed)} few_labels cells with examples "
            f"(`--few-labels replay`, no training): the budget cuts {len(cut)}; "
            + ", ".join(f"{sum(r['how'] == h for r in cut)} {h}" for h in ("exact", "approximate", "unknown"))
            + " (see `replay` in the script). Mean accuracy of the automatic choice over the "
            f"{len(known)} cells whose accuracy after is exact or approximate: "
            f"{sum(r['before'] for r in known) / len(known):.3f} before, "
            f"{sum(r['after'] for r in known) / len(known):.3f} after; over all {len(replayed)} before: "
            f"{sum(r['before'] for r in replayed) / len(replayed):.3f}.",
            "",
            "| cell | cut | before (chosen) | after (chosen) | how |",
            "|---|---|---|---|---|",
            *(
                f"| {r['cell']} | {r['cut']} | {r['before']:.3f} ({r['before_chosen']}) | "
                f"{'–' if r['after'] is None else format(r['after'], '.3f')} ({r['after_chosen']}) | {r['how']} |"
                for r in cut
            ),
        ]
    if replayed and cells:
        lines += ["", few_labels_mean(replayed, cells)]
    if costs:
        lines += ["", "The cost model's measurements (`--costs`):", "", "```"]
        lines += [json.dumps(c) for c in costs] + ["```"]
    return "\n".join(lines)


RENDERERS = {
    "few_labels": few_labels,
    "scale": scale,
    "label_errors": label_errors,
    "trust": trust,
    "multi_label": multi_label,
    "offline_budget": offline_budget,
}


def unkept() -> str:
    kept = {p.name for p in RESULTS.iterdir() if p.is_dir()} if RESULTS.exists() else set()
    lines = [
        "## Benchmarks that keep no result file",
        "",
        "These print their table when run and keep nothing in `benchmarks/results/`, so this page has no "
        "figure from them. Data, split and seed are in each script's docstring.",
        "",
        "| script | what it measures |",
        "|---|---|",
    ]
    for path in sorted(BENCHMARKS.glob("[a-z]*.py")):
        if path.stem in kept or path.name == Path(__file__).name:
            continue
        lines.append(f"| `python benchmarks/{path.name}` | {first_paragraph(docstring(path))} |")
    return "\n".join(lines)


def page() -> str:
    sections = []
    for folder in sorted(p for p in RESULTS.iterdir() if p.is_dir()):
        render = RENDERERS.get(folder.name)
        sections.append(
            render(folder)
            if render
            else f"## {folder.name}\n\n`{folder.relative_to(ROOT)}/` has no renderer in benchmarks/report.py."
        )
    header = (
        "# Benchmarks\n\n<!-- Generated by `python benchmarks/report.py` from benchmarks/results/: "
        "edit the script or the results, not this file. -->\n\n"
        "Every figure on this page is computed from the result files kept in `benchmarks/results/` by "
        "`python benchmarks/report.py`; CI checks that the page matches them."
    )
    return "\n\n".join([header, *sections, unkept()]) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare with docs/benchmarks.md instead of writing it")
    parser.add_argument("--out", type=Path, default=PAGE)
    args = parser.parse_args()
    text = page()
    if args.check:
        if not args.out.exists() or args.out.read_text() != text:
            print(f"{args.out} is out of date: run python benchmarks/report.py", file=sys.stderr)
            return 1
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
