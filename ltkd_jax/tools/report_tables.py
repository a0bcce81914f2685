"""The paper-format tables of `ltkd_jax.tools.report`: cells (mean ± 95% confidence half-width over seeds, † where
a paired t-test separates a row from the best other of its column), the paper's ranking marks and Δ rows, the
paper's numbers and ours − paper beside, calibration and prediction shares per group, a grid study's table, and
the CSV rows of every run group."""
from __future__ import annotations

import functools
from typing import Dict, List, Optional, Sequence

import numpy as np

from ltkd_jax.methods import label as method_label
from ltkd_jax.train import CALIBRATION_BINS, GROUP_NAMES, group_names
from ltkd_jax.tools import paper_results
from ltkd_jax.tools.runs import Group, GroupKey, cell_key, ci95, paired_differences, paired_p

CALIBRATION_METRICS = (("ECE", "ece"), *((f"ECE_{g}", f"ece_{g}") for g in GROUP_NAMES),
                       *((f"pred_{g}", f"prediction_share_{g}") for g in GROUP_NAMES))
METRICS = (("T", "accuracy_tail"), ("All", "accuracy"), ("head", "accuracy_head"), ("medium", "accuracy_medium"),
           ("many", "accuracy_many"), ("medium_shot", "accuracy_medium_shot"), ("few", "accuracy_few"),
           *CALIBRATION_METRICS)
PAPER_COLUMNS = METRICS[:2]  # the paper's tables report tail (T) and overall (All) accuracy
COLUMNS = tuple(col for col, _ in PAPER_COLUMNS)
GRID_COLUMNS = (("head", "accuracy_head"), ("medium", "accuracy_medium"), ("T", "accuracy_tail"), ("All", "accuracy"))
RANK_EXCLUDED = ("teacher",)
SIGNIFICANCE = 0.05  # † where the paired test's p is below it
CSV_FIELDS = (["dataset", "gamma", "method", "teacher", "student", "alpha", "beta", "variant", "epoch", "n", "seeds",
               "epochs"] + [f"{name}_{s}" for name, _ in METRICS for s in ("mean", "std", "ci95", "p")]
              + ["paper_T", "paper_All", "diff_T", "diff_All", "paper_source"])


def fmt(mean: Optional[float], spread: Optional[float] = None) -> str:
    if mean is None:
        return "–"
    return f"{mean:.2f}" if spread is None else f"{mean:.2f} ± {spread:.2f}"


def best_other_p(groups: Dict[object, Optional[Group]], metric: str,
                 excluded: Sequence[str] = RANK_EXCLUDED) -> Dict[object, Optional[float]]:
    """{row: p} of each row's paired t-test against the best other row (highest mean; rows `excluded` and
    without runs left out) on the seeds they share; None where there is no such test."""
    means = {row: g.mean(metric) for row, g in groups.items() if g is not None and row not in excluded}
    means = {row: m for row, m in means.items() if m is not None}
    result = {}
    for row, group in groups.items():
        others = {r: m for r, m in means.items() if r != row}
        result[row] = (paired_p(group, groups[max(others, key=others.get)], metric)
                       if group is not None and row in means and others else None)
    return result


def record_group_names(record: dict) -> tuple:
    """The group names a test record was summarised with (its `label_share_<group>` keys); the three of the
    paper for a record without them (older runs)."""
    count = sum(key.startswith("label_share_") for key in record)
    return group_names(count) if count else GROUP_NAMES


def at_defaults(group: Optional[Group]) -> bool:
    """A group run with its config's defaults (no α/β of its own, no variant): a grid's pre-registered point."""
    return group is not None and group.key.default_hp and not group.key.variant


def dagger(text: str, p: Optional[float]) -> str:
    return text if p is None or p >= SIGNIFICANCE or text == "–" else f"{text} †"


def fmt_delta(value: Optional[float], minus: Optional[float] = 0.0) -> str:
    """`value - minus` signed, or "–" where either is missing."""
    return "–" if value is None or minus is None else f"{value - minus:+.2f}"


def rank(values: Dict[str, Optional[float]], excluded: Sequence[str] = RANK_EXCLUDED):
    """({row: 'best' | 'second'}, best − second best) among the rows not excluded that have a value: the paper's
    rule (every Δ row and legible underline of Tables I-V agree), bold = best, underline = second best, the Teacher
    row excluded (Table I, ResNet32×4 – ResNet8×4, γ = 100: its T 15.28 beats ReviewKD's 15.09, yet Δ = 27.21 −
    15.09); Student is ranked (it never places first or second, so the paper cannot tell). Ties share a mark."""
    ranked = sorted((v for r, v in values.items() if v is not None and r not in excluded), reverse=True)
    marks: Dict[str, str] = {}
    for row, value in values.items():
        if value is None or row in excluded:
            continue
        if value == ranked[0]:
            marks[row] = "best"
        elif len(ranked) > 1 and value == ranked[1] and ranked[1] < ranked[0]:
            marks[row] = "second"
    return marks, (ranked[0] - ranked[1] if len(ranked) > 1 else None)


SETTING_LABELS = {"distill.temperature": "T", "distill.alpha": "α", "distill.beta": "β", "distill.power": "p",
                  "distill.reweight_epoch": "weights after epoch"}


def setting_text(settings) -> str:
    """A grid point as a row label: `T 4, α 0.5`; "defaults" for none."""
    return ", ".join(f"{SETTING_LABELS.get(field, field)} {value:g}" for field, value in settings) or "defaults"


def mark(text: str, how: Optional[str]) -> str:
    if text == "–" or how is None:
        return text
    return f"**{text}**" if how == "best" else f"<u>{text}</u>"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], align_first_left: int = 1) -> List[str]:
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if i < align_first_left else "---:" for i in range(len(header))) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _n_note(counts: Dict[str, int]) -> str:
    present = {k: v for k, v in counts.items() if v}
    if not present:
        return "n: no runs"
    common = max(set(present.values()), key=list(present.values()).count)
    odd = [f"{k}: {v}" for k, v in present.items() if v != common]
    return f"n = {common} (seeds) per cell" + (f", except {'; '.join(odd)}" if odd else "")


# A block of a table: rows = methods, column groups = γ (Tables I-V) or pairs (VI, VII), each with T and All;
# cells are keyed (method, column group, "T" | "All").


def _marks(methods, groups, values, excluded=RANK_EXCLUDED, second=True):
    """(marks by cell, best − second best by (group, column)) of a block."""
    marks, deltas = {}, {}
    for c in groups:
        for col in COLUMNS:
            column_marks, deltas[(c, col)] = rank({m: values[(m, c, col)] for m in methods}, excluded)
            marks.update({(m, c, col): how for m, how in column_marks.items() if second or how == "best"})
    return marks, deltas


def _rows(labels, methods, groups, values, spreads, marks, ps=None) -> List[List[str]]:
    return [labels[m] + [dagger(mark(fmt(values[(m, c, col)], spreads.get((m, c, col))), marks.get((m, c, col))),
                                (ps or {}).get((m, c, col)))
                         for c in groups for col in COLUMNS] for m in methods]


def _paper_cells(name, methods, groups, pair_gamma) -> dict:
    """The paper's cells of a block; `pair_gamma(group)` -> (pair, gamma)."""
    values = {}
    for m in methods:
        for c in groups:
            cell = paper_results.table_value(name, *pair_gamma(c), m)
            values.update({(m, c, col): cell[i] if cell else None for i, col in enumerate(COLUMNS)})
    return values


def _ours_minus_paper(header, labels, methods, groups, ours, paper, left) -> List[str]:
    rows = [labels[m] + [fmt_delta(ours[(m, c, col)], paper[(m, c, col)]) for c in groups for col in COLUMNS]
            for m in methods]
    return ["Ours − paper:", ""] + _table(header, rows, left) + [""]


class Report:
    def __init__(self, groups: Dict[GroupKey, Group], epoch: str = "last"):
        self.groups = groups
        self.epoch = epoch
        self.table_ps: Dict[tuple, float] = {}  # (group key, metric): p of the paired test a table marked
        self.fig4_series: Dict[str, dict] = {}  # filled by render_fig4, drawn by plot_fig4

    def find(self, dataset, gamma, method, pair, variant, alpha=None, beta=None) -> Optional[Group]:
        teacher, student = pair.split("-")
        for key, group in self.groups.items():
            ours, wanted = {"teacher": (key.teacher, teacher), "student": (key.student, student)}.get(
                method, (key.pair, pair))  # Teacher / Student rows: by their one network
            hp = key.default_hp if alpha is None else (key.alpha, key.beta) == (float(alpha), float(beta))
            if ((key.dataset, key.method, key.variant) == (dataset, method, variant)
                    and float(key.gamma) == float(gamma) and ours == wanted and hp):
                return group
        return None

    def variants(self, layout) -> List[str]:
        """The variants with runs at the layout's data set and γ; a grid study's points are not variants of the
        other tables (they are rows of the grid, which shows the runs of its exact settings)."""
        if layout["kind"] == "grid":
            return [""]
        found = {k.variant for k in self.groups if k.dataset == layout["dataset"] and k not in self.grid_keys
                 and any(float(k.gamma) == float(g) for g in layout["gammas"])}
        return sorted(found, key=lambda v: (v != "", v))

    @functools.cached_property
    def grid_keys(self) -> set:
        """The group keys of every grid table's cells with settings of their own (their runs' configs)."""
        return {cell_key(layout["dataset"], pair, gamma, method, settings)
                for layout in paper_results.LAYOUTS.values() if layout["kind"] == "grid"
                for pair, gamma, method, settings in paper_results.cells_of_layout(layout) if settings}

    def find_cell(self, dataset, pair, gamma, method, settings=(), variant="") -> Optional[Group]:
        """The group of a table cell (`paper_results.cells`): by network and α/β as `find`, or for other
        settings (a grid point) by the key of the config they make."""
        if not settings:  # the config's defaults: by network (the Teacher and Student rows)
            return self.find(dataset, gamma, method, pair, variant)
        if not variant:  # the key its settings make (a lone β, say, with the config's α)
            return self.groups.get(cell_key(dataset, pair, gamma, method, settings))
        alpha, beta = paper_results.alpha_beta(settings)
        if alpha is not None and beta is not None and len(settings) == 2:  # Fig. 4's points in a variant
            return self.find(dataset, gamma, method, pair, variant, alpha, beta)
        return None

    def _tested(self, found: Dict[object, Optional[Group]], metric: str, excluded=RANK_EXCLUDED):
        """`best_other_p` of a column, kept for the CSV (a group in several tables keeps its first test)."""
        ps = best_other_p(found, metric, excluded)
        for row, group in found.items():
            if group is not None and ps[row] is not None:
                self.table_ps.setdefault((group.key, metric), ps[row])
        return ps

    def _ours(self, methods, groups, find, label):
        """(means, 95% half-widths, run counts, p-values against the best other row) of a block;
        `find(method, group)` -> Group or None."""
        ours, cis, counts, ps = {}, {}, {}, {}
        for c in groups:
            found = {m: find(m, c) for m in methods}
            for m, group in found.items():
                counts[label(m, c)] = group.n if group else 0
            for col, metric in PAPER_COLUMNS:
                column_ps = self._tested(found, metric)
                for m, group in found.items():
                    ours[(m, c, col)] = group.mean(metric) if group else None
                    cis[(m, c, col)] = group.ci95(metric) if group else None
                    ps[(m, c, col)] = column_ps[m]
        return ours, cis, counts, ps

    def render(self, name: str) -> List[str]:
        layout = paper_results.LAYOUTS[name]
        if layout["kind"] == "grid":  # its points are the variants
            return [f"## {layout['title']}", ""] + self.render_grid(layout)
        lines = []
        for variant in self.variants(layout):
            lines += [f"## {layout['title']}" + (f" — variant: {variant}" if variant else ""), ""]
            if layout["kind"] == "main":
                lines += self.render_main(name, layout, variant)
                for gamma, extra in layout.get("extra", {}).items():  # our study's ablation rows
                    sub = dict(layout, gammas=(gamma,), methods=("kd", *extra, "ltkd"))
                    lines += [f"### Ablation at γ = {gamma}", ""] + self.render_ablation(name, sub, variant)
            elif layout["kind"] == "ablation":
                lines += self.render_ablation(name, layout, variant)
            else:
                lines += self.render_fig4(layout, variant)
        return lines

    def render_main(self, name, layout, variant) -> List[str]:
        """Tables I-V: per pair, methods × (γ, T / All) with the Δ rows, then the paper's and ours − paper."""
        dataset, gammas, methods = layout["dataset"], layout["gammas"], list(layout["methods"])
        header = ["Method"] + [f"γ={g} {col}" for g in gammas for col in COLUMNS]
        labels = {m: [method_label(m)] for m in methods}
        lines = []
        for pair in layout["pairs"]:
            ours, cis, counts, ps = self._ours(
                methods, gammas, lambda m, g: self.find(dataset, g, m, pair, variant),
                lambda m, g: f"{method_label(m)} γ={g}")
            lines += [f"### {paper_results.PAIR_LABELS.get(pair, pair)}", ""]
            lines += _table(header, self._main_rows(labels, methods, gammas, ours, cis, ps))
            lines += ["", _n_note(counts) + f"; epoch: {self.epoch}.", ""]
            lines += self.calibration_table(
                [(f"{method_label(m)}, γ={g}", self.find(dataset, g, m, pair, variant)) for g in gammas
                 for m in methods])
            if name in paper_results.MAIN_TABLES:
                paper = _paper_cells(name, methods, gammas, lambda g: (pair, g))
                lines += [f"Paper (Table {name}):", ""]
                lines += _table(header, self._main_rows(labels, methods, gammas, paper, {})) + [""]
                lines += _ours_minus_paper(header, labels, methods, gammas, ours, paper, 1)
        return lines

    @staticmethod
    def _main_rows(labels, methods, gammas, values, spreads, ps=None) -> List[List[str]]:
        marks, deltas = _marks(methods, gammas, values)
        rows = _rows(labels, methods, gammas, values, spreads, marks, ps)
        rows.append(["Δ (best − 2nd)"] + [fmt_delta(deltas[(g, col)]) for g in gammas for col in COLUMNS])
        if "ltkd" in methods:
            gaps = []
            for g in gammas:
                for col in COLUMNS:
                    others = [values[(m, g, col)] for m in methods if m not in RANK_EXCLUDED + ("ltkd",)
                              and values[(m, g, col)] is not None]
                    gaps.append(fmt_delta(values[("ltkd", g, col)], max(others) if others else None))
            rows.append(["LTKD − best other"] + gaps)
        return rows

    def render_ablation(self, name, layout, variant) -> List[str]:
        """Tables VI, VII (and our study's ablation rows): methods × (pair, T / All), every row ranked."""
        dataset, gamma = layout["dataset"], layout["gammas"][0]
        methods, pairs = list(layout["methods"]), list(layout["pairs"])
        named = paper_results.ABLATION_LABELS.get(name, {})
        labels = {m: [named.get(m, method_label(m)), *paper_results.ABLATION_COMPONENTS[m]]
                  for m in methods}
        header = ["Loss", "Inter", "Intra"] + [f"{paper_results.PAIR_LABELS[p]} {c}" for p in pairs for c in COLUMNS]
        ours, cis, counts, ps = self._ours(methods, pairs, lambda m, p: self.find(dataset, gamma, m, p, variant),
                                           lambda m, p: f"{labels[m][0]} {p}")

        def block(values, spreads, ps=None):
            marks, _ = _marks(methods, pairs, values, excluded=(), second=name != "VI")  # VI: two rows, one mark
            rows = _rows(labels, methods, pairs, values, spreads, marks, ps)
            if name == "VI":  # the paper's Δ = Ours − Biased
                biased, balanced = methods
                rows.append(["Δ (Ours − Biased)", "", ""] + [fmt_delta(values[(balanced, p, col)],
                                                                       values[(biased, p, col)])
                                                           for p in pairs for col in COLUMNS])
            return _table(header, rows, 3)

        lines = block(ours, cis, ps) + ["", _n_note(counts) + f"; epoch: {self.epoch}.", ""]
        if name in paper_results.ABLATION_TABLES:
            paper = _paper_cells(name, methods, pairs, lambda p: (p, gamma))
            lines += [f"Paper (Table {name}):", ""] + block(paper, {}) + [""]
            lines += _ours_minus_paper(header, labels, methods, pairs, ours, paper, 3)
        return lines

    def render_fig4(self, layout, variant) -> List[str]:
        """Fig. 4: LTKD's α (β = 1) and β (α = 6) lines, with the points the paper's text states."""
        dataset, gamma, pair = layout["dataset"], layout["gammas"][0], layout["pairs"][0]
        header = ["α", "β", "T", "All", "n", "paper T", "paper All"]
        lines = []
        for title, points in (("β = 1, α varied", [p for p in layout["points"] if p[1] == 1.0]),
                              ("α = 6, β varied", [p for p in layout["points"] if p[0] == 6.0])):
            found = {point: self.find(dataset, gamma, "ltkd", pair, variant, *point) for point in points}
            marks = {}
            for col, metric in PAPER_COLUMNS:
                column_marks, _ = rank({p: g.mean(metric) if g else None for p, g in found.items()}, ())
                marks.update({(p, col): how for p, how in column_marks.items()})
            rows = []
            for point, group in found.items():
                paper = paper_results.fig4_value(*point) or (None, None)
                cells = [mark(fmt(group.mean(metric), group.ci95(metric)) if group else "–", marks.get((point, col)))
                         for col, metric in PAPER_COLUMNS]
                rows.append([f"{point[0]:g}", f"{point[1]:g}", *cells, str(group.n if group else 0),
                             fmt(paper[0]), fmt(paper[1])])
            lines += [f"### {title}", ""] + _table(header, rows, 2) + [""]
            self.fig4_series[title] = found
        ref = paper_results.FIG4_REFERENCE["reviewkd"]
        return lines + [f"Paper reference line: ReviewKD T {ref[0]:.2f}, All {ref[1]:.2f} (Table I). Paper values "
                        f"are those its text states (Fig. 4 itself is an image); epoch: {self.epoch}.", ""]

    def grid_rows(self, layout, gamma) -> List[tuple]:
        """[(method, settings, group or None)] of a grid table at `gamma`, in table order."""
        pair = layout["pairs"][0]
        return [(method, settings, self.find_cell(layout["dataset"], pair, gamma, method, settings))
                for _, g, method, settings in paper_results.cells_of_layout(layout) if g == gamma]

    def render_grid(self, layout) -> List[str]:
        """Every point of every method's grid per γ: head / medium / tail / All as mean ± 95% half-width, ranked
        per column, † against the best other point; then calibration and prediction shares."""
        lines = []
        for gamma in layout["gammas"]:
            rows = self.grid_rows(layout, gamma)
            found = {(m, settings): g for m, settings, g in rows}
            header = ["Method", "setting", *(col for col, _ in GRID_COLUMNS), "n"]
            cells = {}
            for col, metric in GRID_COLUMNS:
                marks, _ = rank({row: g.mean(metric) if g else None for row, g in found.items()},
                                excluded=[row for row in found if row[0] in RANK_EXCLUDED])
                ps = self._tested(found, metric, excluded=[row for row in found if row[0] in RANK_EXCLUDED])
                for row, g in found.items():
                    text = fmt(g.mean(metric), g.ci95(metric)) if g else "–"
                    cells[(row, col)] = dagger(mark(text, marks.get(row)), ps[row])
            table = [[method_label(m), setting_text(settings), *(cells[((m, settings), col)] for col, _ in GRID_COLUMNS),
                      str(g.n if g else 0)] for m, settings, g in rows]
            lines += [f"### γ = {gamma}", ""] + _table(header, table, 2) + [""]
            lines += self.calibration_table([(f"{method_label(m)} {setting_text(settings)}".strip(), g)
                                             for m, settings, g in rows])
            lines += self.against_ltkd(rows) + self.sensitivity(rows)
        return lines

    @staticmethod
    def against_ltkd(rows) -> List[str]:
        """LTKD against every other distilled method, each at its config's defaults (chosen before any test
        result): the paired difference per column, mean ± 95% half-width over the shared seeds, and p."""
        defaults = {m: g for m, _, g in rows if at_defaults(g)}
        ltkd = defaults.get("ltkd")
        others = [m for m in defaults if m not in ("ltkd", *RANK_EXCLUDED)]
        if ltkd is None or not others:
            return []
        table = []
        for m in others:
            cells = []
            for _, metric in GRID_COLUMNS:
                differences = paired_differences(ltkd, defaults[m], metric)
                p = paired_p(ltkd, defaults[m], metric)
                cells.append("–" if not len(differences) else
                             fmt(float(np.mean(differences)), ci95(list(differences))) + ("" if p is None else
                                                                                         f" (p {p:.3g})"))
            table.append([f"LTKD − {method_label(m)}", *cells, str(len(paired_differences(ltkd, defaults[m],
                                                                                          "accuracy")))])
        return (["LTKD against each method at its defaults: paired difference over shared seeds, mean ± 95% "
                 "half-width (p of the paired t-test):", ""]
                + _table(["", *(col for col, _ in GRID_COLUMNS), "seeds"], table) + [""])

    @staticmethod
    def sensitivity(rows) -> List[str]:
        """How far each method moves with its weights: per column the lowest and highest mean over its grid."""
        by_method = {}
        for m, _, g in rows:
            if g is not None and m not in RANK_EXCLUDED:
                by_method.setdefault(m, []).append(g)
        table = []
        for m, groups in by_method.items():
            if len(groups) < 2:
                continue
            cells = []
            for _, metric in GRID_COLUMNS:
                means = [g.mean(metric) for g in groups if g.mean(metric) is not None]
                cells.append(f"{min(means):.2f} – {max(means):.2f} ({max(means) - min(means):.2f})" if means else "–")
            table.append([method_label(m), str(len(groups)), *cells])
        if not table:
            return []
        return (["Sensitivity to the weights: lowest – highest mean over each method's grid points (range):", ""]
                + _table(["Method", "points", *(col for col, _ in GRID_COLUMNS)], table) + [""])

    @staticmethod
    def calibration_table(rows) -> List[str]:
        """ECE (%) overall and per group, and where the test predictions fall (% per group, the labels' share in
        the header), mean over seeds, for the rows [(label, group)] that have them; the groups are the records'."""
        rows = [(label, g) for label, g in rows if g is not None and g.mean("ece") is not None]
        if not rows:
            return []
        record = rows[0][1].runs[0].record
        names = record_group_names(record)
        metrics = (["ece"] + [f"ece_{name}" for name in names] + [f"prediction_share_{name}" for name in names])
        header = ["Run", "ECE", *(f"ECE {name}" for name in names),
                  *(f"predicted {name} (labels {fmt(rows[0][1].mean(f'label_share_{name}'))})" for name in names)]
        table = [[label, *(fmt(g.mean(metric)) for metric in metrics)] for label, g in rows]
        return ([f"Calibration (ECE, %, {CALIBRATION_BINS} equal-width bins; mean over seeds) and the share of test "
                 "predictions per group (%):", ""] + _table(header, table) + [""])

    def csv_rows(self) -> List[dict]:
        """One row per group: every metric's mean, std and 95% half-width, the p of the paired test behind its †
        in the tables rendered (against the best other row of its column; blank where no table tests it), and the
        paper's cell (default α/β or Fig. 4's)."""
        rows = []
        for key in sorted(self.groups, key=lambda k: (k.dataset, float(k.gamma), k.teacher, k.student, k.method,
                                                       k.alpha or 0, k.beta or 0, k.variant)):
            group = self.groups[key]
            if key.default_hp:
                paper, source = paper_results.lookup(key.dataset, key.gamma, key.method, teacher=key.teacher,
                                                     student=key.student, with_source=True)
            elif (key.dataset, float(key.gamma), key.method, key.pair) == (
                    "cifar100", 20.0, "ltkd", "resnet32x4-resnet8x4"):
                paper, source = paper_results.fig4_value(key.alpha, key.beta), "Fig. 4"
            else:
                paper, source = None, None
            row = dict(dataset=key.dataset, gamma=key.gamma, method=key.method, teacher=key.teacher,
                       student=key.student, alpha="" if key.alpha is None else key.alpha,
                       beta="" if key.beta is None else key.beta, variant=key.variant, epoch=self.epoch,
                       n=group.n, seeds=" ".join(map(str, group.seeds)),
                       epochs=" ".join(str(r.record.get("epoch")) for r in group.runs))
            for name, metric in METRICS:
                mean, std, ci = group.mean(metric), group.std(metric), group.ci95(metric)
                p = self.table_ps.get((key, metric))  # the test behind a table's † (accuracy columns only)
                row[f"{name}_mean"] = "" if mean is None else round(mean, 4)
                row[f"{name}_std"] = "" if std is None else round(std, 4)
                row[f"{name}_ci95"] = "" if ci is None else round(ci, 4)
                row[f"{name}_p"] = "" if p is None else float(f"{p:.4g}")
            for i, (name, metric) in enumerate(PAPER_COLUMNS):
                value, mean = paper[i] if paper else None, group.mean(metric)
                row[f"paper_{name}"] = "" if value is None else value
                row[f"diff_{name}"] = "" if value is None or mean is None else round(mean - value, 4)
            row["paper_source"] = source or ""
            rows.append(row)
        return rows
