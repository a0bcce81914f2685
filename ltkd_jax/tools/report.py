"""Aggregate run directories into the paper's tables: mean ± 95% CI over seeds, the paper's numbers beside.

    python -m ltkd_jax.tools.report RUNS_DIR [--table=I[,II,...]] [--out=DIR] [--epoch=last|best] [--include_unfinished]

Groups the run directories under RUNS_DIR (local or gs://) over seeds by data set, γ, method, architectures, α/β
and variant (fields that differ from the config file's default): mean ± 95% confidence half-width, paired tests
between methods that share seeds, calibration per group; writes `<out>/tables.md` (also printed),
`results.csv`, `fig4.png` and the comparison figures (methods per group and per class; a grid's every point)
(`--out`: default `RUNS_DIR/report`). docs/scaling.md ("Sweeps") has the details.
"""
from __future__ import annotations

import argparse
import csv
import json
from io import StringIO
import sys
from typing import List, Optional, Sequence

from etils import epath

from ltkd_jax import io
from ltkd_jax.data.info import CLASS_GROUPS_FILE
from ltkd_jax.methods import label as method_label
from ltkd_jax.run_dir import pyplot, save_png
from ltkd_jax.tools import paper_results
from ltkd_jax.tools.report_plots import plot_grid, plot_groups, plot_per_class
from ltkd_jax.tools import report_tables
from ltkd_jax.tools.report_tables import CSV_FIELDS, Report, at_defaults, record_group_names, setting_text
from ltkd_jax.tools.runs import collect, default_flat_config

EPOCH_TEXT = {
    "last": "last — each run's final-epoch test accuracy (mdistiller reports the best epoch: --epoch=best)",
    "best": "best — each run's epoch of highest overall test accuracy, T from that same epoch (mdistiller's "
            "convention; the final epoch: --epoch=last)",
}


def _cell_identity(dataset, pair, gamma, method, settings):
    """What a cell is run as: Teacher / Student rows by network, settings only where they are not the defaults."""
    teacher, student = pair.split("-")
    network = teacher if method == "teacher" else student if method == "student" else pair
    defaults = default_flat_config(dataset, f"{method},{pair},{gamma}") if settings else {}
    return dataset, float(gamma), method, network, frozenset((f, v) for f, v in settings if defaults[f] != v)


def _own_cells(name: str):
    """The cells of table `name` that no other table has."""
    layouts = paper_results.LAYOUTS
    others = {_cell_identity(layouts[other]["dataset"], *cell) for other in layouts if other != name
              for cell in paper_results.cells(other)}
    return [cell for cell in paper_results.cells(name)
            if _cell_identity(layouts[name]["dataset"], *cell) not in others]


def tables_with_runs(report: Report) -> List[str]:
    """The tables with a run of a cell proper to them (cells several tables share -- the Teacher rows, Table VII's
    KD / LTKD rows, Fig. 4's default point -- alone do not make a table appear)."""
    def has_runs(name):
        layout = paper_results.LAYOUTS[name]
        return any(report.find_cell(layout["dataset"], pair, gamma, method, settings, variant) is not None
                   for variant in report.variants(layout) for pair, gamma, method, settings in _own_cells(name))

    return [name for name in paper_results.TABLE_NAMES if has_runs(name)]


def write_csv(rows: Sequence[dict], path: str) -> None:
    buffer = StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    io.write_file(path, buffer.getvalue())


def plot_fig4(report: Report, path: str) -> Optional[str]:
    plt = pyplot()
    if not report.fig4_series or plt is None:
        return None
    fig, axes = plt.subplots(2, 1, figsize=(6, 6), sharex=True)
    ref = paper_results.FIG4_REFERENCE["reviewkd"]
    for ax, (i, col, metric) in zip(axes, ((1, "All", "accuracy"), (0, "T", "accuracy_tail"))):
        for (title, found), color, axis in zip(report.fig4_series.items(), ("tab:blue", "tab:red"), (0, 1)):
            ours = [(p[axis], g.mean(metric), g.std(metric) or 0.0) for p, g in found.items() if g is not None]
            if ours:
                xs, ys, errs = zip(*ours)
                ax.errorbar(xs, ys, yerr=errs, color=color, marker="o", capsize=3, label=f"ours: {title}")
            paper = [(p[axis], paper_results.fig4_value(*p)[i]) for p in found]
            paper = [(x, y) for x, y in paper if y is not None]
            if paper:
                ax.scatter(*zip(*paper), color=color, marker="x", s=60, label=f"paper: {title}")
        ax.axhline(ref[i], color="gray", linestyle="--", label="paper ReviewKD")
        ax.set_ylabel(f"{col} accuracy (%)")
    axes[-1].set_xlabel("α (blue, β = 1) / β (red, α = 6)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=7)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    save_png(fig, path)
    return path


def _class_info(groups) -> Optional[dict]:
    """Training counts, groups and class names of the data set the runs of `groups` trained on (its
    class_groups.json), or None where no run has one."""
    for group in groups:
        for run in group.runs if group else ():
            try:
                return json.loads((epath.Path(run.path) / CLASS_GROUPS_FILE).read_text())
            except (OSError, ValueError):
                continue
    return None


def draw_figures(report: Report, names: Sequence[str], out) -> List[str]:
    """The comparison figures of the main and grid tables (their runs without a variant), per pair and γ: methods
    side by side per group with 95% confidence bars, and per class; a grid's every point per method. Returns the
    file names written under `out`."""
    written = []

    def keep(path):
        if path:
            written.append(epath.Path(path).name)

    for name in names:
        layout = paper_results.LAYOUTS[name]
        dataset = layout["dataset"]
        for pair in layout["pairs"] if layout["kind"] in ("main", "grid") else ():
            for gamma in layout["gammas"]:
                stem = f"{name}_{pair}_gamma{gamma}"
                title = f"{dataset}-LT, γ = {gamma}, {paper_results.PAIR_LABELS.get(pair, pair)}"
                if layout["kind"] == "grid":
                    rows = report.grid_rows(layout, gamma)
                    keep(plot_grid([(method_label(m), setting_text(settings), [r.record for r in g.runs] if g else [])
                                    for m, settings, g in rows], 3, out / f"{stem}_grid.png", title))
                    # Side by side: each method at its config's defaults (no point picked on the test set).
                    found = [(m, g) for m, _, g in rows if at_defaults(g)]
                else:
                    found = [(m, report.find(dataset, gamma, m, pair, "")) for m in layout["methods"]]
                found = [(method_label(m), g) for m, g in found if g is not None]
                if not found:
                    continue
                info = _class_info([g for _, g in found])
                series = [(label, [r.record for r in g.runs]) for label, g in found]
                num_groups = int(info["num_groups"]) if info else len(record_group_names(series[0][1][0]))
                keep(plot_groups(series, num_groups, out / f"{stem}_groups.png", title))
                if info is not None:  # per class needs the classes' training counts
                    keep(plot_per_class([s for s in series if s[0] != method_label("teacher")], info,
                                        out / f"{stem}_per_class.png", title))
    return written


def build(root: str, tables: Optional[Sequence[str]] = None, epoch: str = "last",
          include_unfinished: bool = False):
    """(markdown text, csv rows, report) for the runs under `root`."""
    groups, notes = collect(root, epoch, include_unfinished)
    report = Report(groups, epoch)
    names = list(tables) if tables else tables_with_runs(report)
    lines = [f"# LTKD results: {root}", "",
             f"Epoch: {EPOCH_TEXT[epoch]}.",
             "T = tail-group accuracy, All = overall top-1 accuracy (%); cells are mean ± the half-width of its 95% "
             "confidence interval over seeds (Student t, n − 1 degrees of freedom; one seed shows its value alone); "
             "n = seeds per cell. †: a paired t-test over the seeds a row shares with the best other row of its "
             f"column gives p < {report_tables.SIGNIFICANCE:g} (each such p: results.csv, `<metric>_p`).",
             "**Bold**: best, <u>underline</u>: second best per column among the method rows, Teacher excluded "
             "(the paper's rule); Δ = best − second best; LTKD − best other: signed gap to the best non-LTKD "
             "method row.",
             f"{sum(g.n for g in groups.values())} runs in {len(groups)} groups.", ""]
    lines += [f"- {note}" for note in notes] + ([""] if notes else [])
    if not names:
        lines += ["No run of a known table found.", ""]
    for name in names:
        lines += report.render(name)
    return "\n".join(lines) + "\n", report.csv_rows(), report


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ltkd_jax.tools.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs_dir")
    parser.add_argument("--table", help=f"{', '.join(paper_results.TABLE_NAMES)}, paper, or several joined by commas "
                                        "(default: every table with runs)")
    parser.add_argument("--out", help="output directory (default RUNS_DIR/report)")
    parser.add_argument("--epoch", choices=("last", "best"), default="last")
    parser.add_argument("--include_unfinished", action="store_true")
    args = parser.parse_args(argv)
    if not epath.Path(args.runs_dir).is_dir():
        parser.error(f"{args.runs_dir} is not a directory")
    try:
        tables = paper_results.parse_tables(args.table) or None  # None: every table with runs
    except ValueError as error:
        parser.error(str(error))
    out = epath.Path(args.out or epath.Path(args.runs_dir) / "report")
    blocking = io.file_in_the_way(out)
    if blocking is not None:
        where = f"--out={args.out}" if args.out else f"the default --out {out}"
        what = "is an existing file" if blocking == out else f"lies under the file {blocking}"
        parser.error(f"{where} {what}, not a directory; give a directory (created if missing)")
    text, rows, report = build(args.runs_dir, tables, args.epoch, args.include_unfinished)
    out.mkdir(parents=True, exist_ok=True)
    plot = plot_fig4(report, out / "fig4.png")
    figures = draw_figures(report, tables or tables_with_runs(report), out)
    if figures:
        text += "\n## Figures\n\n" + "\n\n".join(f"![{name}]({name})" for name in figures) + "\n"
    io.write_file(out / "tables.md", text)
    write_csv(rows, out / "results.csv")
    sys.stdout.write(text)
    sys.stdout.write(f"\nwrote {out / 'tables.md'}, {out / 'results.csv'}" + (f", {plot}" if plot else "")
                     + (f" and {len(figures)} figures" if figures else "") + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
