"""ltkd_jax.tools.report on synthetic run directories (known numbers), and the paper data in ltkd_jax.tools.paper_results."""
import csv
import json
import os

import pytest

from ltkd_jax import recipes
from ltkd_jax.tools import paper_results, report, report_tables, runs as runs_lib
import paper_marks

PAIR = "resnet32x4-resnet8x4"


def make_run(root, dataset, arg, seed, tests, *, fields=None, name=None):
    """A run directory: config.json of `build_config(dataset, arg)` (+ `fields`, dotted) and one test record per
    (epoch, All, T) in `tests` (plus a train record, which the report must ignore)."""
    config = recipes.build_config(dataset, arg)
    config.seed = seed
    for path, value in (fields or {}).items():
        *parents, leaf = path.split(".")
        node = config
        for part in parents:
            node = node[part]
        node[leaf] = value
    path = os.path.join(root, name or f"{arg.replace(',', '_')}_{sorted((fields or {}).items())}_seed{seed}")
    os.makedirs(path)
    with open(os.path.join(path, "config.json"), "w") as f:
        f.write(config.to_json(indent=2))
    with open(os.path.join(path, "metrics.jsonl"), "w") as f:
        for epoch, overall, tail in tests:
            f.write(json.dumps({"step": epoch * 10, "epoch": epoch, "split": "train", "loss": 1.0,
                                "teacher_group_sums": [30.0, 20.0, 14.0]}) + "\n")
            f.write(json.dumps({"step": epoch * 10, "epoch": epoch, "split": "test", "accuracy": overall,
                                "accuracy_tail": tail, "accuracy_head": overall + 10, "accuracy_medium": overall,
                                "accuracy_many": overall + 10, "accuracy_medium_shot": overall,
                                "accuracy_few": tail, "loss": 1.0, "per_class_accuracy": [overall] * 3}) + "\n")
    return path


def finished(overall, tail, epochs=240):
    return [(epochs - 1, overall - 1, tail - 1), (epochs, overall, tail)]


def table_rows(text, heading, which=0, raw=False):
    """{row label: [cells]} (or with `raw` the list of rows) of the `which`-th markdown table after `heading`."""
    lines = text.splitlines()
    i = lines.index(heading)
    tables, current = [], None
    for line in lines[i + 1:]:
        if line.startswith("#"):
            break
        if line.startswith("|"):
            if current is None:
                current = []
                tables.append(current)
            current.append([c.strip() for c in line.strip("|").split("|")])
        else:
            current = None
    rows = tables[which][2:]
    return rows if raw else {row[0]: row[1:] for row in rows}


@pytest.fixture
def table_one(tmp_path):
    root = str(tmp_path / "runs")
    g = 20
    for seed, t in enumerate((60, 62, 64)):
        make_run(root, "cifar100", f"teacher,resnet32x4-resnet32x4,{g}", seed, finished(70, t))
    make_run(root, "cifar100", f"student,resnet8x4-resnet8x4,{g}", 0, finished(50, 30))
    for seed, t in enumerate((40, 42, 44)):
        make_run(root, "cifar100", f"kd,{PAIR},{g}", seed, finished(55, t))
    for seed, t in enumerate((44, 46)):
        make_run(root, "cifar100", f"dkd,{PAIR},{g}", seed, finished(58, t))
    for seed, (overall, t) in enumerate(((60, 50), (61, 51), (62, 52))):
        make_run(root, "cifar100", f"ltkd,{PAIR},{g}", seed, finished(overall, t))
    return root


def test_main_table_cells_ranking_and_delta(table_one):
    text, rows, _ = report.build(table_one, ["I"])
    assert "Epoch: last" in text
    ours = table_rows(text, "### ResNet32×4 – ResNet8×4", 0)
    # columns: γ=10 T, γ=10 All, γ=20 T, γ=20 All, γ=100 T, γ=100 All
    # mean ± t(0.975, n - 1) std / sqrt(n): t = 4.303 for 3 seeds, 12.706 for 2 (a t table's values).
    assert ours["Teacher"][2:4] == ["62.00 ± 4.97", "70.00 ± 0.00"]  # best numbers, but the Teacher is not ranked
    assert ours["Student"][2:4] == ["30.00", "50.00"]  # one seed: the mean alone
    # KD against LTKD, paired over seeds 0-2: differences -10, -9, -8 (T) and -5, -6, -7 (All): p < 0.05.
    assert ours["KD"][2:4] == ["42.00 ± 4.97 †", "55.00 ± 0.00 †"]
    # DKD against LTKD over seeds 0, 1: differences -6, -5 (t = -11, p = 0.058) and -2, -3 (p = 0.13): no mark.
    assert ours["DKD"][2:4] == ["<u>45.00 ± 12.71</u>", "<u>58.00 ± 0.00</u>"]
    assert ours["LTKD"][2:4] == ["**51.00 ± 2.48**", "**61.00 ± 2.48**"]
    assert ours["FitNet"][2:4] == ["–", "–"] and ours["KD"][0] == "–"
    assert ours["Δ (best − 2nd)"][2:4] == ["+6.00", "+3.00"]
    assert ours["LTKD − best other"][2:4] == ["+6.00", "+3.00"]
    assert "n = 3 (seeds) per cell, except Student γ=20: 1; DKD γ=20: 2" in text
    paper = table_rows(text, "### ResNet32×4 – ResNet8×4", 1)
    assert paper["LTKD"][2:4] == ["**49.70**", "**62.54**"] and paper["ReviewKD"][2:4] == ["<u>40.12</u>", "<u>59.17</u>"]
    assert paper["Teacher"][4] == "15.28" and paper["ReviewKD"][4] == "<u>15.09</u>"  # Teacher excluded, as the paper
    assert paper["Δ (best − 2nd)"] == ["+6.58", "+2.05", "+9.58", "+3.37", "+12.12", "+4.97"]
    diff = table_rows(text, "### ResNet32×4 – ResNet8×4", 2)
    assert diff["LTKD"][2:4] == ["+1.30", "-1.54"] and diff["FitNet"][2] == "–"
    by_method = {r["method"]: r for r in rows}
    ltkd = by_method["ltkd"]
    assert (ltkd["n"], ltkd["T_mean"], ltkd["T_std"], ltkd["All_mean"]) == (3, 51.0, 1.0, 61.0)
    assert ltkd["T_ci95"] == pytest.approx(4.303 / 3 ** 0.5, abs=1e-3) and ltkd["T_p"] == pytest.approx(0.0577, abs=1e-3)
    assert by_method["kd"]["T_p"] < 0.05 and by_method["student"]["T_p"] == ""  # one seed: no test
    assert (ltkd["paper_T"], ltkd["paper_All"], ltkd["diff_T"], ltkd["paper_source"]) == (49.70, 62.54, 1.3, "I")
    assert by_method["student"]["T_std"] == "" and by_method["student"]["student"] == "resnet8x4"
    assert by_method["teacher"]["paper_T"] == 39.19 and by_method["teacher"]["student"] == ""


def test_cli_writes_markdown_and_csv(table_one, tmp_path, capsys):
    out = str(tmp_path / "out")
    assert report.main([table_one, f"--out={out}", "--table=I"]) == 0
    assert "## Table I" in capsys.readouterr().out
    with open(os.path.join(out, "results.csv")) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 5 and set(rows[0]) == set(report_tables.CSV_FIELDS)
    kd = next(r for r in rows if r["method"] == "kd")
    assert (kd["gamma"], kd["teacher"], kd["student"], kd["seeds"], kd["T_mean"], kd["T_std"]) == \
        ("20", "resnet32x4", "resnet8x4", "0 1 2", "42.0", "2.0")
    assert kd["paper_T"] == "36.81" and kd["epoch"] == "last" and kd["epochs"] == "240 240 240"
    assert "| LTKD |" in open(os.path.join(out, "tables.md")).read()


def test_last_versus_best_epoch(tmp_path):
    root = str(tmp_path)
    make_run(root, "cifar100", f"kd,{PAIR},100", 0, [(120, 60.0, 50.0), (240, 55.0, 45.0)])
    text, rows, _ = report.build(root, ["I"], epoch="last")
    assert "Epoch: last" in text and (rows[0]["All_mean"], rows[0]["T_mean"], rows[0]["epochs"]) == (55.0, 45.0, "240")
    text, rows, _ = report.build(root, ["I"], epoch="best")
    assert "Epoch: best" in text and (rows[0]["All_mean"], rows[0]["T_mean"], rows[0]["epochs"]) == (60.0, 50.0, "120")
    assert table_rows(text, "### ResNet32×4 – ResNet8×4")["KD"][4:6] == ["**50.00**", "**60.00**"]


def test_unfinished_runs_and_variants(tmp_path):
    root = str(tmp_path)
    make_run(root, "cifar100", f"kd,{PAIR},20", 0, finished(55, 40))
    make_run(root, "cifar100", f"kd,{PAIR},20", 1, [(100, 10.0, 5.0)])  # still running
    make_run(root, "cifar100", f"kd,{PAIR},20", 2, finished(30, 20, epochs=10), fields={"num_epochs": 10})
    text, rows, _ = report.build(root, ["I"])
    assert "1 unfinished runs left out" in text
    assert "## Table I: CIFAR-100-LT, homogeneous pairs — variant: num_epochs=10" in text
    assert sorted((r["variant"], r["n"]) for r in rows) == [("", 1), ("num_epochs=10", 1)]
    _, rows, _ = report.build(root, ["I"], include_unfinished=True)
    assert sorted((r["variant"], r["n"]) for r in rows) == [("", 2), ("num_epochs=10", 1)]
    # A directory holding some other program's config.json is reported, not a traceback.
    other = tmp_path / "not_a_run"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"foo": 1}))
    (other / "metrics.jsonl").write_text(json.dumps({"split": "test", "epoch": 1, "accuracy": 1.0}) + "\n")
    text, rows, _ = report.build(root, ["I"])
    assert "1 run directories unreadable or without a test record: not_a_run" in text
    assert sorted((r["variant"], r["n"]) for r in rows) == [("", 1), ("num_epochs=10", 1)]


def test_configs_that_are_not_objects_are_unreadable(tmp_path):
    """A config.json (or metrics record) that is valid JSON but not an object is counted, not an AttributeError."""
    root = str(tmp_path)
    make_run(root, "cifar100", f"kd,{PAIR},20", 0, finished(55, 40))
    test_record = json.dumps({"split": "test", "epoch": 1, "accuracy": 1.0})
    for name, config, metrics in (("list_config", "[1, 2]", test_record), ("number_config", "3", test_record),
                                  ("list_record", json.dumps({"foo": 1}), "[1]"),
                                  ("no_accuracy", json.dumps({"foo": 1}), json.dumps({"split": "test"}))):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(config)
        (tmp_path / name / "metrics.jsonl").write_text(metrics + "\n")
        assert runs_lib.load_run(str(tmp_path / name)) is None
    text, rows, _ = report.build(root, ["I"])
    assert "4 run directories unreadable or without a test record: " in text
    assert [(r["method"], r["n"]) for r in rows] == [("kd", 1)]


def test_cli_rejects_an_out_that_is_a_file(table_one, tmp_path, capsys):
    existing = tmp_path / "existing.txt"
    existing.write_text("x")
    under = existing / "sub"
    for out, message in ((existing, f"--out={existing} is an existing file, not a directory"),
                         (under, f"--out={under} lies under the file {existing}, not a directory")):
        with pytest.raises(SystemExit) as exit_info:
            report.main([table_one, f"--out={out}"])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert message in err.strip().splitlines()[-1] and "Traceback" not in err  # usage, then one error line
    assert existing.read_text() == "x"


def test_ablation_tables(tmp_path):
    root = str(tmp_path)
    for seed in (0, 1):
        make_run(root, "cifar100", f"ltkd_inter_biased,{PAIR},20", seed, finished(50 + seed, 30))
        make_run(root, "cifar100", f"ltkd_inter_balanced,{PAIR},20", seed, finished(49 + seed, 33))
    text, _, _ = report.build(root)  # tables chosen automatically: only VI has runs
    assert "## Table VI" in text and "## Table VII" not in text and "## Table I:" not in text
    ours = table_rows(text, "## Table VI: inter-group distillation only, biased vs balanced (CIFAR-100-LT, γ = 20)")
    # The rows differ by the same amount at both seeds (T: 3, All: 1): certain, p = 0, both marked.
    assert ours["Biased"][:4] == ["✓", "✗", "30.00 ± 0.00 †", "**50.50 ± 6.35** †"]
    assert ours["Ours"][:4] == ["✓", "✗", "**33.00 ± 0.00** †", "49.50 ± 6.35 †"]
    assert ours["Δ (Ours − Biased)"][2:4] == ["+3.00", "-1.00"]
    paper = table_rows(text, "## Table VI: inter-group distillation only, biased vs balanced (CIFAR-100-LT, γ = 20)", 1)
    assert paper["Δ (Ours − Biased)"][2:] == ["+2.21", "+0.78", "+0.67", "-0.01", "+1.71", "+0.40", "+0.55", "+0.01",
                                             "+0.59", "+0.38", "+2.21", "+0.60"]


def test_fig4_sweep(tmp_path):
    root = str(tmp_path / "runs")
    make_run(root, "cifar100", f"ltkd,{PAIR},20", 0, finished(62, 49))  # default α = β = 6
    make_run(root, "cifar100", f"ltkd,{PAIR},20", 0, finished(61, 48),
             fields={"distill.alpha": 2.0, "distill.beta": 1.0})
    make_run(root, "cifar100", f"ltkd,{PAIR},20", 1, finished(63, 47),
             fields={"distill.alpha": 2.0, "distill.beta": 1.0})
    out = str(tmp_path / "out")
    assert report.main([root, f"--out={out}"]) == 0
    text = open(os.path.join(out, "tables.md")).read()
    assert "## Fig. 4" in text and "## Table I:" not in text  # the α/β runs make the sweep appear, not Table I
    alpha_line = table_rows(text, "### β = 1, α varied")
    assert alpha_line["2"] == ["1", "**47.50 ± 6.35**", "**62.00 ± 12.71**", "2", "48.04", "–"]
    assert alpha_line["4"][1:4] == ["–", "–", "0"]
    beta_line = {row[1]: row[1:] for row in table_rows(text, "### α = 6, β varied", raw=True)}  # keyed by β
    assert beta_line["6"] == ["6", "**49.00**", "**62.00**", "1", "49.70", "62.54"]
    assert beta_line["8"] == ["8", "–", "–", "0", "49.72", "–"]
    assert os.path.exists(os.path.join(out, "fig4.png"))
    with open(os.path.join(out, "results.csv")) as f:
        rows = {(r["alpha"], r["beta"]): r for r in csv.DictReader(f)}
    assert rows[("2.0", "1.0")]["paper_T"] == "48.04" and rows[("2.0", "1.0")]["paper_source"] == "Fig. 4"
    assert rows[("6.0", "6.0")]["paper_source"] == "I"


def test_paper_deltas_and_underlines_follow_the_ranking_rule():
    """Every published Δ = best − second best with the Teacher row excluded, and every legible underline sits on
    the second best; including the Teacher breaks it (so the rule, and the transcription, are the paper's)."""
    broken_with_teacher = 0
    for name, table in paper_results.MAIN_TABLES.items():
        layout = paper_results.LAYOUTS[name]
        assert set(table) == set(layout["pairs"])
        for pair, by_gamma in table.items():
            assert set(by_gamma) == set(layout["gammas"])
            for gamma, cells in by_gamma.items():
                assert list(cells) == list(layout["methods"])
                for i, col in enumerate(("T", "All")):
                    column = {m: v[i] for m, v in cells.items()}
                    marks, delta = report_tables.rank(column)
                    assert round(delta, 2) == paper_marks.MAIN_DELTAS[name][pair][gamma][i], (name, pair, gamma)
                    underlined = paper_marks.UNDERLINED[name].get((pair, gamma, col))
                    if underlined:
                        assert marks[underlined] == "second", (name, pair, gamma, col)
                    _, delta_all = report_tables.rank(column, excluded=())
                    broken_with_teacher += round(delta_all, 2) != paper_marks.MAIN_DELTAS[name][pair][gamma][i]
    assert broken_with_teacher > 0
    assert sum(len(u) for u in paper_marks.UNDERLINED.values()) >= 80


def test_paper_tables_agree_with_each_other():
    vi, vii = paper_results.ABLATION_TABLES["VI"], paper_results.ABLATION_TABLES["VII"]
    for pair in paper_results.ABLATION_PAIRS:
        table = "I" if pair in paper_results.HOMOGENEOUS else "II"
        assert vii["kd"][pair] == paper_results.table_value(table, pair, 20, "kd")
        assert vii["ltkd"][pair] == paper_results.table_value(table, pair, 20, "ltkd")
        for i in (0, 1):
            delta = vi["ltkd_inter_balanced"][pair][i] - vi["ltkd_inter_biased"][pair][i]
            assert round(delta, 2) == paper_marks.ABLATION_DELTAS["VI"][pair][i]
    # Teacher / Student rows repeat across pairs sharing a network; lookup finds them by architecture.
    assert paper_results.lookup("cifar100", 10, "teacher", teacher="resnet32x4") == (50.72, 64.95)
    assert paper_results.table_value("II", "resnet32x4-shufflenet_v1", 10, "teacher") == (50.72, 64.95)
    assert paper_results.lookup("tiny_imagenet", 100, "student", student="mobilenet_v2") == (3.97, 22.99)
    assert paper_results.lookup("imagenet2012", 20, "fitnet", teacher="resnet34", student="resnet18") is None
    assert paper_results.fig4_value(6, 6) == (49.70, 62.54) == paper_results.table_value("I", PAIR, 20, "ltkd")
    assert paper_results.fig4_value(6, 1) == (None, 61.45)


def test_run_dirs_are_found_once(tmp_path):
    """Nested runs are found; a symlink (to a run, or back up the tree) and a run's own outputs are not walked."""
    root = tmp_path / "runs"
    first = make_run(str(root), "cifar100", f"kd,{PAIR},20", 0, finished(55, 40), name="a")
    nested = make_run(str(root / "group"), "cifar100", f"kd,{PAIR},20", 1, finished(55, 42), name="b")
    os.makedirs(os.path.join(first, "checkpoints", "10"))
    with open(os.path.join(first, "checkpoints", "10", "config.json"), "w") as f:  # an orbax file of that name
        f.write("{}")
    with open(os.path.join(first, "checkpoints", "10", "metrics.jsonl"), "w") as f:
        f.write("{}\n")
    os.symlink(first, root / "link_to_a")
    os.symlink(root, root / "group" / "up")
    assert runs_lib.find_run_dirs(str(root)) == [first, nested]


def test_variants_are_every_field_but_the_runtime_ones_and_seeds(tmp_path):
    """Seeds and experiment.RUNTIME_FIELDS do not split a group; any other difference from the config file's
    default does, a field missing from config.json included (no backfill of older files)."""
    root = str(tmp_path)
    make_run(root, "cifar100", f"kd,{PAIR},20", 0, finished(55, 40),
             fields={"log_every_steps": 7, "teachers_dir": "/elsewhere", "teacher_seed": 3, "overwrite": True})
    make_run(root, "cifar100", f"kd,{PAIR},20", 1, finished(57, 42))
    make_run(root, "cifar100", f"kd,{PAIR},20", 2, finished(50, 30), fields={"eval_every_epochs": 5})
    older = make_run(root, "cifar100", f"kd,{PAIR},20", 3, finished(40, 20), name="older")
    stored = json.loads(open(os.path.join(older, "config.json")).read())
    del stored["dtype"]
    with open(os.path.join(older, "config.json"), "w") as f:
        json.dump(stored, f)
    _, rows, _ = report.build(root, ["I"])
    assert sorted((r["variant"], r["n"], r["seeds"]) for r in rows) == [
        ("", 2, "0 1"), ("dtype=None", 1, "3"), ("eval_every_epochs=5", 1, "2")]


def test_the_beyond_table_sets_the_long_tail_baselines_beside_ltkd(tmp_path):
    root = str(tmp_path / "runs")
    for method, (overall, tail) in {"kd": (55, 40), "bkd": (56, 45), "dive": (57, 47), "kd_ls": (56, 41),
                                    "ltkd_ls": (60, 52), "ltkd": (61, 51)}.items():
        for seed in (0, 1):
            make_run(root, "cifar100", f"{method},{PAIR},20", seed, finished(overall + seed, tail + seed))
    text, _, _ = report.build(root, ["beyond"])
    rows = table_rows(text, "### ResNet32×4 – ResNet8×4")
    assert rows["BKD"][2:4] == ["45.50 ± 6.35 †", "56.50 ± 6.35 †"]  # γ = 20: T, All; constant gaps: p = 0
    assert rows["DiVE"][2] == "47.50 ± 6.35 †" and rows["LTKD + LS"][2] == "**52.50 ± 6.35** †"
    assert rows["LTKD − best other"][2:4] == ["-1.00", "+1.00"]  # LTKD + LS is the best other in both
    assert "Paper (Table" not in text  # no published numbers for these


def _group(values_by_seed):
    runs = [runs_lib.RunResult(f"run{seed}", {"seed": seed}, {"accuracy": value}, True, 1)
            for seed, value in values_by_seed.items()]
    return runs_lib.Group(None, runs)


def test_confidence_half_width_and_paired_tests_on_known_answers():
    base = {0: 61.2, 1: 58.9, 2: 63.4, 3: 60.1, 4: 59.5}
    plain = _group(base)
    # 95% half-width of [1, 2, 3]: t(0.975, 2) = 4.303 times 1 / sqrt(3).
    assert _group({0: 1.0, 1: 2.0, 2: 3.0}).ci95("accuracy") == pytest.approx(4.303 / 3 ** 0.5, abs=1e-3)
    assert _group({0: 1.0}).ci95("accuracy") is None
    # A constant offset over the seeds is significant, however small and whatever the seeds' own spread ...
    assert runs_lib.paired_p(_group({s: v + 0.3 for s, v in base.items()}), plain, "accuracy") == 0.0
    # ... a nearly constant one too; differences that are noise around zero are not.
    offset = [0.31, 0.29, 0.30, 0.32, 0.28]
    assert runs_lib.paired_p(_group({s: v + d for (s, v), d in zip(base.items(), offset)}), plain,
                             "accuracy") < 1e-5
    noise = [1.0, -1.0, 2.0, -2.0, 0.0]
    assert runs_lib.paired_p(_group({s: v + d for (s, v), d in zip(base.items(), noise)}), plain,
                             "accuracy") == pytest.approx(1.0)
    # Differences 1, 2, 3: t = 2 / (1 / sqrt(3)) = 3.464 on 2 degrees of freedom, two-sided p = 0.0742.
    assert runs_lib.paired_p(_group({s: v + s + 1 for s, v in base.items() if s < 3}), plain,
                             "accuracy") == pytest.approx(0.0742, abs=1e-4)
    # Only the seeds both have are paired; fewer than two: no test.
    assert runs_lib.paired_p(_group({0: 1.0, 7: 2.0}), plain, "accuracy") is None


def test_the_study_grid_lists_every_point_with_calibration(tmp_path):
    """Every grid point of fashion_mnist_study is its own row (none picked), found by the config its settings make;
    the calibration table shows the test records' ECE and prediction shares."""
    root = str(tmp_path / "runs")
    pair = "demo_resnet_teacher-demo_resnet_student"
    calibration = {"ece": 5.0, "ece_head": 2.0, "ece_medium": 4.0, "ece_tail": 9.0, "prediction_share_head": 50.0,
                   "prediction_share_medium": 30.0, "prediction_share_tail": 20.0, "label_share_head": 40.0,
                   "label_share_medium": 30.0, "label_share_tail": 30.0}
    for seed in (0, 1, 2):
        path = make_run(root, "fashion_mnist", f"ltkd,{pair},100", seed, finished(80 + seed, 70 + seed, 10),
                        fields={"distill.alpha": 4.0, "distill.beta": 4.0})
        make_run(root, "fashion_mnist", f"bkd,{pair},100", seed, finished(78 + seed, 60 + seed, 10),
                 fields={"distill.temperature": 4.0, "distill.alpha": 0.5})
        make_run(root, "fashion_mnist", f"dkd,{pair},100", seed, finished(77, 55, 10))  # α 1, β 8
        make_run(root, "fashion_mnist", f"dkd,{pair},100", seed, finished(76, 50, 10), fields={"distill.beta": 2.0})
        with open(os.path.join(path, "metrics.jsonl"), "a") as f:  # a later epoch with calibration
            f.write(json.dumps({"step": 110, "epoch": 11, "split": "test", "accuracy": 80.0 + seed,
                                "accuracy_tail": 70.0 + seed, **calibration}) + "\n")
    text, rows, _ = report.build(root)
    assert "## Fashion-MNIST-LT, a fair study" in text
    grid = table_rows(text, "### γ = 100", raw=True)
    labels = [(row[0], row[1]) for row in grid]
    expected = [("Teacher", "defaults"), ("Student", "defaults"), ("KD", "defaults"), ("KD", "T 2"),
                ("DKD", "defaults"), ("DKD", "β 2"), *(("LTKD", f"α {w}, β {w}") for w in (1, 2, 4, 6)),
                *(("BKD", f"T {t}, α {w}") for t in (2, 4) for w in (0.5, 1, 2)), ("BKD", "weights after epoch 8"),
                *(("DiVE", f"T {t}, p {p}") for t in (3, 6) for p in (0.5, 1))]
    assert labels == expected
    ltkd = next(row for row in grid if row[:2] == ["LTKD", "α 4, β 4"])
    bkd = next(row for row in grid if row[:2] == ["BKD", "T 4, α 0.5"])
    assert ltkd[4:] == ["**71.00 ± 2.48** †", "**81.00 ± 2.48** †", "3"]  # T 10 above BKD's at every seed
    assert bkd[4:] == ["<u>61.00 ± 2.48</u> †", "<u>79.00 ± 2.48</u> †", "3"]
    assert grid[0][2:] == ["–"] * 4 + ["0"]
    # A point that sets β alone keeps the config's α: its own row, not the defaults' runs.
    dkd = {row[1]: row[4:6] for row in grid if row[0] == "DKD"}
    assert dkd == {"defaults": ["55.00 ± 0.00 †", "77.00 ± 0.00 †"], "β 2": ["50.00 ± 0.00 †", "76.00 ± 0.00 †"]}
    calibration_rows = table_rows(text, "### γ = 100", 1)
    assert calibration_rows["LTKD α 4, β 4"] == ["5.00", "2.00", "4.00", "9.00", "50.00", "30.00", "20.00"]
    assert "BKD T 4, α 0.5" not in calibration_rows  # its records have no calibration
    assert "predicted head (labels 40.00)" in text
    # The grid's points are rows of the grid, not variants of the other Fashion-MNIST tables.
    beyond, _, _ = report.build(root, ["fashion_mnist_beyond"])
    assert "variant" not in beyond
    by_point = {(r["method"], r["variant"], r["alpha"]): r for r in rows}
    assert by_point[("ltkd", "", 4.0)]["ECE_tail_mean"] == 9.0 and by_point[("ltkd", "", 4.0)]["pred_head_mean"] == 50.0

    # The figures: every grid point per method; the methods at their defaults per group and per class.
    info = {"num_groups": 3, "group_ids": [0, 1, 2], "class_names": ["a", "b", "c"], "train_counts": [100, 30, 5]}
    for seed in (0, 1):
        path = make_run(root, "fashion_mnist", f"ltkd,{pair},100", seed, finished(82, 75, 10))  # α = β = 1
        with open(os.path.join(path, "class_groups.json"), "w") as f:
            json.dump(info, f)
        make_run(root, "fashion_mnist", f"bkd,{pair},100", seed, finished(80, 65 + seed, 10))  # its defaults
    out = tmp_path / "out"
    assert report.main([root, f"--out={out}"]) == 0
    # Each method at its defaults against LTKD at its own: T differences 10, 9: mean 9.5, half-width
    # 12.706 * 0.707 / sqrt(2) = 6.35, t = 19 on 1 degree of freedom, p = 0.0335.
    against = table_rows((out / "tables.md").read_text(), "### γ = 100", 2)
    assert against["LTKD − BKD"][2:] == ["9.50 ± 6.35 (p 0.0335)", "2.00 ± 0.00 (p 0)", "2"]
    # How far each method moves over its grid: LTKD's T means 75 (α = β = 1) and 71 (α = β = 4).
    sensitivity = table_rows((out / "tables.md").read_text(), "### γ = 100", 3)
    assert sensitivity["LTKD"][0] == "2" and sensitivity["LTKD"][3] == "71.00 – 75.00 (4.00)"
    stem = f"fashion_mnist_study_{pair}_gamma100"
    figures = [f"{stem}_grid.png", f"{stem}_groups.png", f"{stem}_per_class.png"]
    assert all((out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for name in figures)
    assert all(f"![{name}]({name})" in (out / "tables.md").read_text() for name in figures)
    assert not (out / f"fashion_mnist_study_{pair}_gamma10_groups.png").exists()  # no run at γ = 10


def test_the_demo_draws_its_methods_side_by_side(tmp_path):
    from ltkd_jax.tools import demo  # pylint: disable=import-outside-toplevel
    member = tmp_path / "student"
    member.mkdir()
    (member / "class_groups.json").write_text(json.dumps(
        {"num_groups": 3, "group_ids": [0, 1, 2], "class_names": ["a", "b", "c"], "train_counts": [50, 9, 2]}))
    record = {"accuracy": 70.0, "accuracy_head": 90.0, "accuracy_medium": 60.0, "accuracy_tail": 40.0,
              "per_class_accuracy": [90.0, 60.0, None]}
    names = demo._figures(str(tmp_path), [("teacher", record), ("student", record), ("ltkd", record)], str(member))
    assert names == ["results_groups.png", "results_per_class.png"]
    assert all((tmp_path / name).read_bytes()[:4] == b"\x89PNG" for name in names)
    assert demo._figures(str(tmp_path), [("student", record)], str(tmp_path / "nowhere")) == []


def test_calibration_of_runs_with_two_groups(tmp_path):
    """Shot groups (2 here) name their groups group0, group1: the calibration table shows theirs."""
    root = str(tmp_path)
    for seed in (0, 1):
        path = make_run(root, "fashion_mnist", "kd,demo_resnet_teacher-demo_resnet_student,100", seed,
                        finished(80, 70, 10), fields={"dataset.groups": "shots"})
        with open(os.path.join(path, "metrics.jsonl"), "a") as f:
            f.write(json.dumps({"step": 110, "epoch": 11, "split": "test", "accuracy": 80.0, "accuracy_tail": 70.0,
                                "ece": 3.0, "ece_group0": 2.0, "ece_group1": 6.0, "prediction_share_group0": 70.0,
                                "prediction_share_group1": 30.0, "label_share_group0": 60.0,
                                "label_share_group1": 40.0}) + "\n")
    text, _, _ = report.build(root, ["fashion_mnist"])
    assert "| Run | ECE | ECE group0 | ECE group1 | predicted group0 (labels 60.00) | predicted group1 (labels 40.00) |" \
        in text
    assert "| KD, γ=100 | 3.00 | 2.00 | 6.00 | 70.00 | 30.00 |" in text
