"""Fused conv ops: fastcodec's fused op vs eager PyTorch vs torch.compile (group "ops").

Shapes, variants, timing method, floor and summary: ops_workload.py. On CUDA the fused op runs
the Triton kernels (and the CUDA C++ ones when built) on the codec's layer shapes (batch 16),
in bf16 / fp16 / fp32 and NCHW / channels_last; on CPU (here and in CI) it runs with
``backend="torch"`` on small fp32 shapes, which measures the custom-op dispatch overhead.

Every variant is checked against eager once (``torch.testing.assert_close``, dtype tolerances)
before it is timed; there is no timing assertion. Results go to ``benchmark.extra_info`` (ms,
GB/s, TFLOP/s, floor, speed-ups over eager and torch.compile, peak device memory) and to the
"fused ops summary" printed at the end of the session (conftest.py).
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import ops_workload as W  # noqa: E402
from conftest import run_benchmark  # noqa: E402

pytestmark = pytest.mark.benchmark(group="ops")


def pytest_generate_tests(metafunc):
    if "ops_item" not in metafunc.fixturenames:
        return
    plan = W.build_plan(W.settings_from_config(metafunc.config))
    metafunc.parametrize("ops_item", plan, ids=[f"{case.id}-{variant}" for case, variant in plan])


def _rounds(env, default_cpu: int, default_cuda: int) -> int:
    forced = env.settings.rounds
    if forced:
        return max(1, forced)
    if env.kind == "cuda":
        return default_cuda
    return 5 if env.settings.quick else default_cpu


def test_ops(benchmark, ops_item, ops_env, ops_note_skip):
    case, variant = ops_item
    env = ops_env
    settings = env.settings

    reason = W.variant_unavailable(variant, env.kind)
    if reason:
        ops_note_skip(variant, reason)
    if variant == "compile" and not settings.compile_enabled:
        ops_note_skip("compile", settings.compile_note)
    reason = env.over_budget(variant)
    if reason:
        ops_note_skip(f"{variant} (some cases)", reason)

    data = env.case_data(case)
    with torch.no_grad():
        fn = W.build_variant(case, variant, data, settings, env.kind)
        base = torch.cuda.memory_allocated(env.device) if env.kind == "cuda" else 0

        # Correctness, once, on the first buffer (compiles / autotunes on the way).
        out = fn(data.xs[0])
        W.check_against_eager(out, data, env.kind)
        del out

        info = benchmark.extra_info
        info["buffers"] = len(data.xs)
        info["rotated_MB"] = data.rotated_bytes / 2**20
        state = {"i": 0}

        def next_x():
            state["i"] += 1
            return data.xs[state["i"] % len(data.xs)]

        if env.kind == "cuda":
            timing = W.time_cuda(fn, data.xs, cycles_per_us=env.cycles_per_us)
            peak, held = W.cuda_memory(fn, data.xs[0], base)

            def sync_call():
                fn(next_x())
                torch.cuda.synchronize()

            _, sync_s, _ = run_benchmark(benchmark, sync_call, _rounds(env, 40, 15))
            seconds = timing.median_ms * 1e-3
            info.update({
                "timing": "cuda events, median",
                "reps": timing.reps,
                "min_ms": timing.min_ms,
                "p10_ms": timing.p10_ms,
                "p90_ms": timing.p90_ms,
                "sleep_us": timing.sleep_us,
                "host_issue_us": timing.host_issue_us,
                "host_bound": timing.host_bound,
                "sync_ms": sync_s * 1e3,
                "peak_bytes": peak,
                "held_bytes": held,
            })
        else:
            _, seconds, best = run_benchmark(benchmark, lambda: fn(next_x()), _rounds(env, 40, 15))
            info.update({"timing": "pytest-benchmark median round", "min_ms": best * 1e3})

    env.record(case, variant, seconds, info)
