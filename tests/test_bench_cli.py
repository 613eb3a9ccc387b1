"""``fastcodec bench``: one quick coder run into a temporary results folder, then the table,
``--compare`` and ``--plot`` on that file (no timing is asserted anywhere)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from fastcodec import bench

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
    rows = bench.compare(data, data)
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
    target = min(data["benchmarks"], key=bench.rel_spread)
    if bench.rel_spread(target) > 0.24:
        pytest.skip(f"every benchmark varied by > 24% between rounds (busy machine): "
                    f"{target['name']} {bench.rel_spread(target):.0%}")
    old_path = tmp_path / "old.json"
    old_path.write_text(json.dumps(_slowed(data, target["name"], 2.0)))
    rows = bench.compare(json.loads(old_path.read_text()), data)
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
    rows = bench.compare({"benchmarks": [_bench_entry(old, old_iqr)]},
                         {"benchmarks": [_bench_entry(new, new_iqr)]})
    assert len(rows) == 1 and rows[0].flag == flag


def test_compare_different_workloads_per_symbol():
    old = _bench_entry(1.0, 0.01)
    new = _bench_entry(0.25, 0.0025, workload="2x192x8x12")
    new["extra_info"]["symbols"] = 250
    (row,) = bench.compare({"benchmarks": [old]}, {"benchmarks": [new]})
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
