"""bench/report.py and scripts/bench.sh's argument handling, on recorded load-generator output.

No load is generated here: the tests write oha and wrk results of known figures into a folder
and check the report and the regression guard (`--compare`), whose exit code CI would act on.

    python -m pytest -q -p no:cacheprovider tests/scripts/test_bench_report.py
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REPORT = ROOT / "bench" / "report.py"
BENCH = ROOT / "scripts" / "bench.sh"
BASH = shutil.which("bash") or "/bin/bash"


def oha(folder, name, rps, p99_ms, ok=1000, errors=0, p50_ms=None):
    """One oha --output-format json result, as the fields report.py reads."""
    p50_ms = p99_ms / 3 if p50_ms is None else p50_ms
    (folder / name).write_text(json.dumps({
        "summary": {"requestsPerSec": rps, "successRate": ok / (ok + errors)},
        "latencyPercentiles": {"p50": p50_ms / 1000, "p95": p99_ms / 1500, "p99": p99_ms / 1000},
        "statusCodeDistribution": {"200": ok},
        "errorDistribution": {"aborted due to deadline": errors} if errors else {},
    }))


def cpu(folder, name, seconds):
    """The server's CPU seconds during one run, as bench.sh writes them beside the run's result."""
    (folder / name).write_text(f"{seconds:.6f}\n")


def wrk(folder, name, rps, p99_ms, requests=5000, failed=0):
    (folder / name).write_text(json.dumps({
        "requests": requests, "failed": failed, "rps": rps, "p50": p99_ms / 3, "p95": p99_ms / 1.5, "p99": p99_ms,
    }) + "\n")


def run_report(*args):
    return subprocess.run([sys.executable, str(REPORT), *map(str, args)], capture_output=True, text=True, timeout=60)


def builds(folder, current_rps, current_p50, current_p99=2.0):
    for c in (1, 16, 64):
        oha(folder, f"previous-2026-c{c}.json", 20000, 2.0, p50_ms=0.5)
        oha(folder, f"current-2026-c{c}.json", current_rps, current_p99, p50_ms=current_p50)
        cpu(folder, f"previous-2026-c{c}.cpu", 0.05)  # 50 µs for each of 1000 answers
        cpu(folder, f"current-2026-c{c}.cpu", 0.04)
        wrk(folder, f"previous-session-c{c}.wrk.json", 12000, 3.0)
        wrk(folder, f"current-session-c{c}.wrk.json", 12000, 3.0)


def test_compare_passes_within_the_threshold(tmp_path):
    builds(tmp_path, current_rps=18000, current_p50=0.55)  # -10 % requests/s, +10 % median
    result = run_report("--compare", tmp_path, "--threshold", 15)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no regression beyond 15.0 %" in result.stdout


@pytest.mark.parametrize("rps, p50", [(16000, 0.5), (20000, 0.6)])
def test_compare_fails_on_fewer_requests_or_a_slower_median(tmp_path, rps, p50):
    builds(tmp_path, current_rps=rps, current_p50=p50)  # -20 % requests/s, or +20 % median
    result = run_report("--compare", tmp_path, "--threshold", 15)
    assert result.returncode == 1
    assert "SLOWER" in result.stdout
    assert "regression: requests/s fell or the median latency rose by more than 15.0 %" in result.stdout


def test_refused_calls_do_not_count_as_throughput(tmp_path):
    builds(tmp_path, current_rps=20000, current_p50=0.5)
    # The same requests/s, but a third of them refused (429 past a limit): fewer answered.
    wrk(tmp_path, "current-session-c16.wrk.json", 12000, 3.0, requests=6000, failed=2000)
    result = run_report("--compare", tmp_path, "--threshold", 15)
    assert result.returncode == 1, result.stdout
    assert "session   16        12,000    8,000   -33.3%" in result.stdout


def test_compare_shows_the_cpu_per_request(tmp_path):
    builds(tmp_path, current_rps=20000, current_p50=0.5)
    result = run_report("--compare", tmp_path, "--threshold", 15)
    assert result.returncode == 0, result.stdout
    line = next(line for line in result.stdout.splitlines() if line.startswith("2026      16"))
    assert line.endswith("50.0   40.0   -20.0%"), line
    session = next(line for line in result.stdout.splitlines() if line.startswith("session   16"))
    assert session.endswith("n/a    n/a      n/a"), "no CPU figures recorded for that run"


def test_a_noisier_p99_alone_is_shown_but_does_not_fail(tmp_path):
    builds(tmp_path, current_rps=21000, current_p50=0.5, current_p99=2.5)  # P99 +25 %
    result = run_report("--compare", tmp_path, "--threshold", 15)
    assert result.returncode == 0, result.stdout
    assert "+25.0%" in result.stdout


def test_compare_without_results_is_an_error_not_a_pass(tmp_path):
    result = run_report("--compare", tmp_path)
    assert result.returncode == 1
    assert f"no results of a previous and a current build in {tmp_path}" in result.stderr


def test_concurrency_one_is_reported_but_never_fails_the_guard(tmp_path):
    builds(tmp_path, current_rps=20000, current_p50=0.5)
    oha(tmp_path, "current-2026-c1.json", 10000, 9.0, p50_ms=3.0)
    result = run_report("--compare", tmp_path, "--threshold", 15)
    assert result.returncode == 0, result.stdout


def test_results_name_the_ratios_targets_and_unanswered_requests(tmp_path):
    runs = {
        "ours-sqlite": ("2026", 24000, 2.8), "ours-postgres": ("2026", 22000, 3.0),
        "rmcp-floor": ("2026", 30000, 2.0), "ts-sdk": ("2025", 1000, 50.0), "python-sdk": ("2025", 800, 90.0),
    }
    core, shared = tmp_path / "core", tmp_path / "shared"
    for folder, cold in ((core, "12.5"), (shared, "9.0")):
        folder.mkdir()
        for server, (wire, rps, p99) in runs.items():
            for c in (1, 16, 64):
                oha(folder, f"{server}-{wire}-c{c}.json", rps, p99, errors=3 if server == "python-sdk" else 0)
                cpu(folder, f"{server}-{wire}-c{c}.cpu", 1000 / rps)  # one core busy throughout
            (folder / f"{server}.cold").write_text(cold + "\n")
            (folder / f"{server}.rss").write_text("25600\n" if folder == core else "33792\n")
    wrk(core, "ours-sqlite-session-c16.wrk.json", 13000, 3.1, requests=1000, failed=2)
    out, chart = tmp_path / "RESULTS.md", tmp_path / "results.svg"
    result = run_report(
        "--results", core, "--shared", shared, "--out", out, "--chart", chart, "--requests", "2000,20000,40000"
    )
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    assert "| requests/s at c=16, ours ÷ rmcp floor | 0.80× | ≥ 0.85× | **not met** |" in text
    assert "| CPU per request at c=64, ours (rmcp floor 33.3 µs) | 41.7 µs | < 34 µs | **not met** |" in text
    assert "| requests/s at c=64, ours ÷ TypeScript SDK | 24.0× | ≥ 20× | met |" in text
    assert "| requests/s at c=64, ours ÷ Python SDK | 30.0× | ≥ 25× | met |" in text
    assert "| P99 at c=16, ours | 2.80 ms | < 5 ms | met |" in text
    assert "| peak RSS, ours under load | 25.0 MiB | < 30 MiB | met |" in text
    assert "| peak RSS, ours under load on two cores | 33.0 MiB | < 30 MiB | **not met** |" in text
    assert "| start to first answer, ours | 12.5 ms | < 15 ms | met |" in text
    per_core, two_cores = text.split("## Two cores shared")
    assert "| ts-sdk | official TypeScript SDK, stateless JSON mode | 2025-11-25 stateless echo | 64 | 1,000 | 1,000.0 |" in per_core
    assert "| ours-sqlite | 33.0 | 9.0 |" in two_cores, "the two-core pass has its own RSS and start times"
    assert "| python-sdk | official Python SDK (FastMCP), stateless JSON mode | 2025-11-25 stateless echo | 64 | 800 | 1,250.0 |" in text, \
        "CPU per request counts only answered calls"
    assert "1,000/1,003 |" in text, "requests that got no answer are counted"
    assert "| 3.10 | 998/1,000 |" in text, "wrk's failed requests are counted"
    assert "| ours-sqlite | mcp-server, SQLite store, bearer auth on | legacy session echo | 16 | 13,000 | n/a |" in text
    svg = chart.read_text()
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    assert svg.count("<rect") == 1 + 5 * 3 + 5, "background, a bar per server and concurrency, a legend swatch each"


@pytest.mark.parametrize("args, message", [
    (["--compare"], "bench.sh: --compare needs a revision"),
    (["--compare", "no-such-revision-0000"], "bench.sh: no-such-revision-0000 is not a commit"),
    (["--fast"], "bench.sh: unknown argument --fast (see --help)"),
])
def test_bad_arguments_stop_before_anything_runs(args, message):
    result = subprocess.run([BASH, str(BENCH), *args], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 64
    assert message in result.stderr


def test_help_describes_the_modes():
    result = subprocess.run([BASH, str(BENCH), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for mode in ("--quick", "--compare REV", "bench/RESULTS.md"):
        assert mode in result.stdout
