"""The paper-format tables of `ltkd_jax.tools.report`: cells (mean ± std over seeds), the paper's ranking marks
and Δ rows, the paper's numbers and ours − paper beside, and the CSV rows of every run group."""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

from ltkd_jax.methods import label as method_label
from ltkd_jax.tools import paper_results
from ltkd_jax.tools.runs import Group, GroupKey

METRICS = (("T", "accuracy_tail"), ("All", "accuracy"), ("head", "accuracy_head"), ("medium", "accuracy_medium"),
           ("many", "accuracy_many"), ("medium_shot", "accuracy_medium_shot"), ("few", "accuracy_few"))
PAPER_COLUMNS = METRICS[:2]  # the paper's tables report tail (T) and overall (All) accuracy
COLUMNS = tuple(col for col, _ in PAPER_COLUMNS)
RANK_EXCLUDED = ("teacher",)
CSV_FIELDS = (["dataset", "gamma", "method", "teacher", "student", "alpha", "beta", "variant", "epoch", "n", "seeds",
               "epochs"] + [f"{name}_{s}" for name, _ in METRICS for s in ("mean", "std")]
              + ["paper_T", "paper_All", "diff_T", "diff_All", "paper_source"])


def fmt(mean: Optional[float], std: Optional[float] = None) -> str:
    if mean is None:
        return "–"
    return f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"


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


def _rows(labels, methods, groups, values, stds, marks) -> List[List[str]]:
    return [labels[m] + [mark(fmt(values[(m, c, col)], stds.get((m, c, col))), marks.get((m, c, col)))
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
        found = {k.variant for k in self.groups if k.dataset == layout["dataset"]
                 and any(float(k.gamma) == float(g) for g in layout["gammas"])}
        return sorted(found, key=lambda v: (v != "", v))

    def _ours(self, methods, groups, find, label):
        """(means, stds, run counts) of a block; `find(method, group)` -> Group or None."""
        ours, stds, counts = {}, {}, {}
        for m in methods:
            for c in groups:
                group = find(m, c)
                counts[label(m, c)] = group.n if group else 0
                for col, metric in PAPER_COLUMNS:
                    ours[(m, c, col)] = group.mean(metric) if group else None
                    stds[(m, c, col)] = group.std(metric) if group else None
        return ours, stds, counts

    def render(self, name: str) -> List[str]:
        layout = paper_results.LAYOUTS[name]
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
            ours, stds, counts = self._ours(
                methods, gammas, lambda m, g: self.find(dataset, g, m, pair, variant),
                lambda m, g: f"{method_label(m)} γ={g}")
            lines += [f"### {paper_results.PAIR_LABELS.get(pair, pair)}", ""]
            lines += _table(header, self._main_rows(labels, methods, gammas, ours, stds))
            lines += ["", _n_note(counts) + f"; epoch: {self.epoch}.", ""]
            if name in paper_results.MAIN_TABLES:
                paper = _paper_cells(name, methods, gammas, lambda g: (pair, g))
                lines += [f"Paper (Table {name}):", ""]
                lines += _table(header, self._main_rows(labels, methods, gammas, paper, {})) + [""]
                lines += _ours_minus_paper(header, labels, methods, gammas, ours, paper, 1)
        return lines

    @staticmethod
    def _main_rows(labels, methods, gammas, values, stds) -> List[List[str]]:
        marks, deltas = _marks(methods, gammas, values)
        rows = _rows(labels, methods, gammas, values, stds, marks)
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
        ours, stds, counts = self._ours(methods, pairs, lambda m, p: self.find(dataset, gamma, m, p, variant),
                                        lambda m, p: f"{labels[m][0]} {p}")

        def block(values, stds):
            marks, _ = _marks(methods, pairs, values, excluded=(), second=name != "VI")  # VI: two rows, one mark
            rows = _rows(labels, methods, pairs, values, stds, marks)
            if name == "VI":  # the paper's Δ = Ours − Biased
                biased, balanced = methods
                rows.append(["Δ (Ours − Biased)", "", ""] + [fmt_delta(values[(balanced, p, col)],
                                                                       values[(biased, p, col)])
                                                           for p in pairs for col in COLUMNS])
            return _table(header, rows, 3)

        lines = block(ours, stds) + ["", _n_note(counts) + f"; epoch: {self.epoch}.", ""]
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
                cells = [mark(fmt(group.mean(metric), group.std(metric)) if group else "–", marks.get((point, col)))
                         for col, metric in PAPER_COLUMNS]
                rows.append([f"{point[0]:g}", f"{point[1]:g}", *cells, str(group.n if group else 0),
                             fmt(paper[0]), fmt(paper[1])])
            lines += [f"### {title}", ""] + _table(header, rows, 2) + [""]
            self.fig4_series[title] = found
        ref = paper_results.FIG4_REFERENCE["reviewkd"]
        return lines + [f"Paper reference line: ReviewKD T {ref[0]:.2f}, All {ref[1]:.2f} (Table I). Paper values "
                        f"are those its text states (Fig. 4 itself is an image); epoch: {self.epoch}.", ""]

    def csv_rows(self) -> List[dict]:
        """One row per group: every metric's mean and std, and the paper's cell (default α/β or Fig. 4's)."""
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
                mean, std = group.mean(metric), group.std(metric)
                row[f"{name}_mean"] = "" if mean is None else round(mean, 4)
                row[f"{name}_std"] = "" if std is None else round(std, 4)
            for i, (name, metric) in enumerate(PAPER_COLUMNS):
                value, mean = paper[i] if paper else None, group.mean(metric)
                row[f"paper_{name}"] = "" if value is None else value
                row[f"diff_{name}"] = "" if value is None or mean is None else round(mean - value, 4)
            row["paper_source"] = source or ""
            rows.append(row)
        return rows
