"""``fastcodec bench``: one quick coder run into a temporary results folder, then the table,
``--compare`` and ``--plot`` on that file (no timing is asserted anywhere)."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fastcodec import bench
from fastcodec.bench import command
from fastcodec.bench.compare import compare, compare_lines, machine_differences
from fastcodec.bench.plots import history_series, series_label
from fastcodec.bench.results import rel_spread, result_commit, table_lines

ROOT = Path(__file__).resolve().parents[1]
BENCHES = ROOT / "benches"


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """``(results path, stdout)`` of ``fastcodec bench --group coder --quick``."""
    pytest.importorskip("pytest_benchmark", reason="pytest-benchmark is not installed")
    tmp = tmp_path_factory.mktemp("bench")
    results = tmp / "results"
    run = subprocess.run(
        [sys.executable, "-m", "fastcodec", "bench", "--group", "coder", "--quick",
         "--benches", str(BENCHES), "--results-dir", str(results), "--note", "test run"],
        # Outside the checkout, so the installed package is imported (see test_benches_quick.py).
        cwd=tmp, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    files = sorted(results.glob("coder-*-quick.json"))
    assert len(files) == 1, (list(results.iterdir()), run.stdout[-2000:])
    return files[0], run.stdout


def test_results_file_has_machine_and_run(quick_run):
    path, _ = quick_run
    data = json.loads(path.read_text())
    machine, run = data["machine"], data["run"]
    for key in ("date", "cpu", "cores", "ram_gib", "gpus", "gpu", "gpu_driver", "versions",
                "git", "command", "pytest_command", "kind"):
        assert key in machine, key
    for lib in ("python", "numpy", "torch", "triton", "fastcodec"):
        assert lib in machine["versions"], lib
    assert machine["cores"] >= 1 and machine["cpu"]
    assert set(machine["git"]) >= {"commit", "dirty"}
    assert machine["command"].startswith("fastcodec bench") and "--quick" in machine["command"]
    assert path.name.startswith(f"coder-{machine['kind']}-")
    assert run["group"] == "coder" and run["quick"] is True and run["pytest_exit_status"] == 0
    assert run["note"] == "test run" and run["peak_host_rss_bytes"] > 0
    names = {b["name"] for b in data["benchmarks"]}
    assert "test_fastcodec_encode[1thread]" in names
    assert "test_fastcodec_batch[decode-batch8-2threads]" in names
    batch = [b["extra_info"] for b in data["benchmarks"] if b["group"] == "coder-batch"]
    assert {i["batch"] for i in batch} == {1, 2, 4, 8}
    assert all(i["Msym_per_s"] > 0 and i["images_per_s"] > 0 for i in batch)


def test_table_is_printed(quick_run):
    _, out = quick_run
    assert "range coder summary" in out  # the suite's own summary
    assert "group coder:" in out and "group coder-batch:" in out
    assert "Msym/s" in out and "ns/sym" in out
    assert "fastcodec_encode[1thread]" in out


def test_compare_with_itself_flags_nothing(quick_run, capsys):
    path, _ = quick_run
    data = json.loads(path.read_text())
    rows = compare(data, data)
    assert rows and all(r.ratio == 1.0 and not r.flag for r in rows)
    assert bench.main(["--from", str(path), "--compare", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"{len(rows)} compared, 0 flagged" in out
    assert "SLOWER" not in out and "FASTER" not in out


def _slowed(data: dict, name: str, factor: float) -> dict:
    """A copy of ``data`` where benchmark ``name`` took ``factor`` times as long."""
    old = copy.deepcopy(data)
    for b in old["benchmarks"]:
        if b["name"] != name:
            continue
        stats = b["stats"]
        for key in ("min", "max", "mean", "stddev", "median", "iqr", "q1", "q3", "ld15iqr",
                    "hd15iqr", "total"):
            if isinstance(stats.get(key), (int, float)):
                stats[key] *= factor
        stats["data"] = [v * factor for v in stats.get("data", [])]
        info = b["extra_info"]
        for key in ("seconds", "best_seconds", "ns_per_symbol"):
            info[key] *= factor
        for key in ("Msym_per_s", "MB_per_s", "images_per_s"):
            if key in info:
                info[key] /= factor
    return old


def test_compare_flags_a_2x_slower_old_result(quick_run, tmp_path, capsys):
    path, _ = quick_run
    data = json.loads(path.read_text())
    # The steadiest benchmark of the run, so that its own spread cannot hide a 2x change.
    target = min(data["benchmarks"], key=rel_spread)
    if rel_spread(target) > 0.24:
        pytest.skip(f"every benchmark varied by > 24% between rounds (busy machine): "
                    f"{target['name']} {rel_spread(target):.0%}")
    old_path = tmp_path / "old.json"
    old_path.write_text(json.dumps(_slowed(data, target["name"], 2.0)))
    rows = compare(json.loads(old_path.read_text()), data)
    flagged = [r for r in rows if r.flag]
    assert [(r.name, r.flag) for r in flagged] == [(target["name"], "FASTER")]
    assert flagged[0].ratio == pytest.approx(0.5)
    assert bench.main(["--from", str(path), "--compare", str(old_path)]) == 0
    out = capsys.readouterr().out
    assert "1 flagged" in out and "FASTER" in out


def _bench_entry(median: float, iqr: float, workload: str = "8x192x32x48") -> dict:
    return {"group": "coder", "name": "test_x",
            "stats": {"median": median, "iqr": iqr, "stddev": iqr, "rounds": 20,
                      "q1": median - iqr / 2, "q3": median + iqr / 2},
            "extra_info": {"seconds": median, "symbols": 1000, "workload": workload}}


@pytest.mark.parametrize("old,new,old_iqr,new_iqr,flag", [
    (1.0, 1.03, 0.01, 0.01, ""),  # 3% change, spread floor 2% -> limit 4%
    (1.0, 1.05, 0.01, 0.01, "SLOWER"),
    (1.0, 0.95, 0.01, 0.01, "FASTER"),
    (1.0, 1.15, 0.10, 0.01, ""),  # noisy old run: limit 2 x 10%
    (1.0, 1.15, 0.01, 0.105, ""),  # noisy new run
    (1.0, 1.25, 0.10, 0.01, "SLOWER"),
])
def test_compare_rule(old, new, old_iqr, new_iqr, flag):
    rows = compare({"benchmarks": [_bench_entry(old, old_iqr)]},
                   {"benchmarks": [_bench_entry(new, new_iqr)]})
    assert len(rows) == 1 and rows[0].flag == flag


def test_compare_different_workloads_per_symbol():
    old = _bench_entry(1.0, 0.01)
    new = _bench_entry(0.25, 0.0025, workload="2x192x8x12")
    new["extra_info"]["symbols"] = 250
    (row,) = compare({"benchmarks": [old]}, {"benchmarks": [new]})
    assert row.ratio == pytest.approx(1.0) and not row.flag and "per symbol" in row.note


def test_plot_writes_pngs(quick_run, tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="matplotlib is not installed (the 'bench' extra)")
    path, _ = quick_run
    plots = tmp_path / "plots"
    rc = bench.main(["--from", str(path), "--plot", "--results-dir", str(path.parent),
                     "--plot-dir", str(plots)])
    assert rc == 0
    pngs = sorted(plots.glob("*.png"))
    assert {p.name for p in pngs} == {f"{path.stem}-batch.png", "history-Msym_per_s.png"}
    for p in pngs:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000
    assert "plot:" in capsys.readouterr().out


def test_errors_are_one_line(tmp_path, capsys):
    assert bench.main(["--benches", str(tmp_path)]) == 2
    assert "not fastcodec's benches/ folder" in capsys.readouterr().err
    assert bench.main(["--from", str(tmp_path / "missing.json")]) == 2
    assert "no such results file" in capsys.readouterr().err


def test_bench_is_a_subcommand(capsys):
    from fastcodec.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench", "--help"])
    out = capsys.readouterr().out
    assert "--compare" in out and "--plot" in out and "compare rule" in out


# --------------------------------------------------------------------------------------------
# --compare across machines and models


RESULTS = BENCHES / "results"


def _machine(cpu: str, cores: int = 2, gpu=None) -> dict:
    return {"cpu": cpu, "cores": cores, "gpu": gpu, "kind": "cpu" if gpu is None else "gpu-x",
            "date": "2026-12-04T10:00:00+00:00", "git": {"commit": "a" * 40, "dirty": False}}


def test_compare_marks_other_models_not_comparable():
    old, new = _bench_entry(1.0, 0.01), _bench_entry(0.5, 0.01)
    old["extra_info"]["model"], new["extra_info"]["model"] = "fcf64-v1", "fcf96-v6"
    same_old, same_new = _bench_entry(1.0, 0.01), _bench_entry(0.5, 0.01)
    same_old["name"] = same_new["name"] = "test_y"
    same_old["extra_info"]["quality"], same_new["extra_info"]["quality"] = 4.0, 4.0
    rows = compare({"benchmarks": [old, same_old]}, {"benchmarks": [new, same_new]})
    row, same = rows
    assert not row.comparable and row.flag == ""
    assert row.note == "not comparable (model fcf64-v1 vs fcf96-v6)"
    assert same.comparable and same.flag == "FASTER"
    text = "\n".join(compare_lines(rows, "old.json", "new.json"))
    line = next(t for t in text.splitlines() if t.startswith("x "))
    assert "not comparable (model fcf64-v1 vs fcf96-v6)" in line and "FASTER" not in line
    assert "1 compared, 1 flagged" in text and "1 not comparable" in text


@pytest.mark.parametrize("key,a,b", [("quality", 4.0, 8.0), ("dtype", "fp32", "bf16")])
def test_compare_other_quality_or_dtype_not_comparable(key, a, b):
    old, new = _bench_entry(1.0, 0.01), _bench_entry(2.0, 0.01)
    old["extra_info"][key], new["extra_info"][key] = a, b
    (row,) = compare({"benchmarks": [old]}, {"benchmarks": [new]})
    assert not row.comparable and not row.flag and f"{key} {a} vs {b}" in row.note


def test_machine_differences():
    amd = {"machine": _machine("AMD EPYC"), "benchmarks": []}
    intel = {"machine": _machine("Intel(R) Xeon(R) Processor"), "benchmarks": []}
    gpu = {"machine": _machine("AMD EPYC", 16, "NVIDIA H100 80GB HBM3"), "benchmarks": []}
    # pytest-benchmark's own machine_info (files without a machine block): no GPU recorded
    bare = {"machine_info": {"cpu": {"brand_raw": "AMD EPYC", "count": 2}}, "benchmarks": []}
    assert machine_differences(amd, amd) == []
    assert machine_differences(amd, intel) == ["CPU AMD EPYC vs Intel(R) Xeon(R) Processor"]
    assert machine_differences(amd, gpu) == ["cores 2 vs 16",
                                             "GPU none vs NVIDIA H100 80GB HBM3"]
    assert machine_differences(bare, amd) == []
    assert machine_differences(bare, intel) == ["CPU AMD EPYC vs Intel(R) Xeon(R) Processor"]


def test_compare_stored_runs_of_other_machines_and_models(capsys):
    """The reviewer's case: an AMD EPYC + fcf64-v1 run against an Intel Xeon + fcf96-v6 run."""
    old, new = RESULTS / "codec-cpu-2026-11-25.json", RESULTS / "codec-cpu-2026-12-04-fcf96-v6.json"
    if not (old.is_file() and new.is_file()):
        pytest.skip("stored codec results are not in this checkout")
    assert bench.main(["--from", str(new), "--compare", str(old)]) == 0
    out = capsys.readouterr().out
    compared = out[out.index("compare: new"):]
    assert "WARNING: different machines, old vs new: CPU AMD EPYC vs Intel(R) Xeon(R) Processor" \
        in compared
    fast = [t for t in compared.splitlines() if t.startswith("fastcodec[")]
    assert fast and all("not comparable (model fcf64-v1 vs fcf96-v6)" in t for t in fast)
    assert not any("FASTER" in t or "SLOWER" in t for t in fast)
    summary = next(t for t in compared.splitlines() if " compared, " in t)
    assert "fastcodec[" not in summary
    assert "4 not comparable" in compared


# --------------------------------------------------------------------------------------------
# history plot: series and labels


def _stored(date: str, machine: dict, model: str, value: float, commit_info=None) -> tuple:
    data = {"benchmarks": [{"group": "codec", "name": "test_fastcodec[encode-cpu-b1]",
                            "stats": {"median": 1.0, "q1": 0.9, "q3": 1.1},
                            "extra_info": {"MP_per_s": value, "workload": "1x512x768",
                                           "model": model}}]}
    if machine:
        data["machine"] = machine
    else:
        data["machine_info"] = {"cpu": {"brand_raw": "AMD EPYC", "count": 2}}
        data["commit_info"] = commit_info or {"id": "unversioned", "dirty": False}
    return date, Path(f"{date}.json"), data


def test_history_series_splits_models_and_machines():
    xeon = _machine("Intel(R) Xeon(R) Processor")
    found = [
        _stored("2026-11-25T15:30:00+00:00", None, "fcf64-v1", 3.0),
        _stored("2026-12-03T18:16:00+00:00", xeon, "fcf64-v2", 7.6),
        _stored("2026-12-04T16:00:00+00:00", xeon, "fcf64-v2", 7.2),
        _stored("2026-12-04T18:00:00+00:00",
                _machine("Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz", 16, "NVIDIA H100 80GB HBM3"),
                "fcf96-v6", 900.0),
    ]
    runs, series = history_series(found, "MP_per_s", ("fastcodec[encode-cpu-b1]",))
    assert len(runs) == 4
    assert "AMD EPYC" in runs[0] and "unversioned" in runs[0] and "unversi\n" not in runs[0]
    assert "Intel Xeon" in runs[1] and "\ncpu" not in runs[1]
    assert "Intel Xeon Gold 6338 + H100 80GB HBM3" in runs[3].replace("\n", " ")
    name = "fastcodec[encode-cpu-b1]"
    assert series == {
        (name, "1x512x768", "fcf64-v1", "AMD EPYC"): [
            (0, 3.0, pytest.approx(3.0 / 1.1), pytest.approx(3.0 / 0.9), False)],
        (name, "1x512x768", "fcf64-v2", "Intel Xeon"): [
            (1, 7.6, pytest.approx(7.6 / 1.1), pytest.approx(7.6 / 0.9), False),
            (2, 7.2, pytest.approx(7.2 / 1.1), pytest.approx(7.2 / 0.9), False)],
        (name, "1x512x768", "fcf96-v6", "Intel Xeon Gold 6338 + H100 80GB HBM3"): [
            (3, 900.0, pytest.approx(900 / 1.1), pytest.approx(900 / 0.9), False)],
    }
    labels = {series_label(k, {"1x512x768"}) for k in series}
    assert f"{name} fcf64-v1 on AMD EPYC" in labels
    # one machine: no machine in the key or the label, the model still splits the lines
    _, one = history_series(found[1:3], "MP_per_s", ("fastcodec[encode-cpu-b1]",))
    assert list(one) == [(name, "1x512x768", "fcf64-v2", "")]


def test_result_commit_does_not_cut_words():
    assert result_commit({"commit_info": {"id": "unversioned"}}) == "unversioned"
    assert result_commit({"commit_info": {"id": "0123456789abcdef", "dirty": True}}) \
        == "0123456+"


# --------------------------------------------------------------------------------------------
# --compare / --plot checked before the run


@pytest.fixture
def no_run(monkeypatch):
    def run_suite(*args, **kwargs):
        raise AssertionError("the suite ran before the options were checked")

    monkeypatch.setattr(command, "run_suite", run_suite)  # where _main looks it up


def test_no_run_stands_in_for_the_run(no_run, tmp_path):
    """``no_run`` replaces the ``run_suite`` that ``main`` calls (else the checks below would
    pass without it: a run that is not stopped ends with status 0 here)."""
    with pytest.raises(AssertionError, match="the suite ran"):
        bench.main(["--group", "coder", "--quick", "-k", "fastcodec_encode", "--benches",
                    str(BENCHES), "--results-dir", str(tmp_path)])


def test_compare_file_checked_before_the_run(no_run, tmp_path, capsys):
    rc = bench.main(["--group", "coder", "--quick", "-k", "fastcodec_encode", "--benches",
                     str(BENCHES), "--results-dir", str(tmp_path),
                     "--compare", str(tmp_path / "nonexistent.json")])
    assert rc == 2
    assert "no such results file" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("{}")
    assert bench.main(["--group", "coder", "--benches", str(BENCHES), "--results-dir",
                       str(tmp_path), "--compare", str(tmp_path / "bad.json")]) == 2
    assert "not a pytest-benchmark results file" in capsys.readouterr().err


def test_plot_without_matplotlib_fails_before_the_run(no_run, monkeypatch, tmp_path, capsys):
    def no_matplotlib():
        raise ImportError("No module named 'matplotlib'")

    monkeypatch.setattr(command, "import_pyplot", no_matplotlib)  # where _main looks it up
    rc = bench.main(["--group", "coder", "--quick", "--benches", str(BENCHES),
                     "--results-dir", str(tmp_path), "--plot"])
    assert rc == 2
    assert "--plot needs matplotlib" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# skipped anchors: n/a with the reason


def test_table_says_n_a_for_skipped_anchors():
    fast = _bench_entry(1.0, 0.01)
    fast["name"] = "test_fastcodec_encode[1thread]"
    fast["extra_info"]["speedup_vs_compressai"] = 2.0
    anchor = _bench_entry(2.0, 0.01)
    anchor["name"] = "test_compressai_encode"
    data = {"benchmarks": [anchor, fast], "skipped_anchors": [
        {"group": "coder", "anchor": "constriction", "ratio": "speedup_vs_constriction",
         "reason": "constriction is not installed", "rows": [fast["name"]]}]}
    lines = table_lines(data)
    header = next(t for t in lines if t.startswith("benchmark"))
    assert "vs compressai" in header and "vs constriction" in header
    row = next(t for t in lines if t.startswith("fastcodec_encode"))
    assert row.split()[-2:] == ["2.00x", "n/a"]
    assert next(t for t in lines if t.startswith("compressai_encode")).split()[-2:] == ["-", "-"]
    assert "vs constriction: n/a, constriction skipped: constriction is not installed" in lines


def test_missing_anchor_is_n_a_in_the_run_and_the_stored_file(tmp_path, capsys):
    """The reviewer's case: constriction fails to import (a shadow package on PYTHONPATH)."""
    pytest.importorskip("pytest_benchmark", reason="pytest-benchmark is not installed")
    shadow = tmp_path / "shadow" / "constriction"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text('raise ImportError("simulated: constriction missing")\n')
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [str(shadow.parent), os.environ.get("PYTHONPATH")])))
    results = tmp_path / "results"
    run = subprocess.run(
        [sys.executable, "-m", "fastcodec", "bench", "--group", "coder", "--quick",
         "-k", "constriction or fastcodec_encode", "--benches", str(BENCHES),
         "--results-dir", str(results)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    (path,) = results.glob("coder-*.json")
    skipped = json.loads(path.read_text())["skipped_anchors"]
    (rec,) = [s for s in skipped if s["anchor"] == "constriction"]
    assert rec["group"] == "coder" and rec["ratio"] == "speedup_vs_constriction"
    assert "simulated: constriction missing" in rec["reason"]
    assert set(rec["rows"]) == {"test_fastcodec_encode[1thread]", "test_fastcodec_encode[2threads]"}
    assert bench.main(["--from", str(path)]) == 0
    for out in (run.stdout, capsys.readouterr().out):
        table = out[out.index("group coder:"):]
        assert "vs constriction" in table.splitlines()[1]
        rows = [t for t in table.splitlines() if t.startswith("fastcodec_encode")]
        assert len(rows) == 2 and all("n/a" in t for t in rows)
        assert "constriction skipped: constriction is not installed (simulated" in table
