"""End-to-end codec throughput: fastcodec vs Pillow JPEG / WebP / AVIF and bmshj2018-factorized.

Workload and codecs: codec_workload.py (8 Kodak images of 768x512, or the bundled sample; the
Pillow settings); the learned baseline: factorized_baseline.py (CompressAI's model when it
imports, else this suite's re-implementation of the same architecture, labelled as such).

Benchmarks (pytest-benchmark group "codec"), baselines first so fastcodec's ratios are known
when its rows are recorded (they are filled in again at the end):

* ``test_pillow[<op>-<format>-<n>thread(s)]``: the whole image set, one image after the other
  (1 thread) or over a pool of all cores;
* ``test_factorized[<op>-<device>-b<batch>]`` and ``test_fastcodec[<op>-<device>-b<batch>]``:
  one ``encode`` / ``decode`` call on ``batch`` images; devices ``cpu``, ``cpu-bf16`` and, when
  torch sees a GPU, ``cuda`` and ``cuda-bf16`` (``-bf16``: the transforms in bfloat16, both
  codecs, so fastcodec's ratios compare equal precisions); otherwise the CUDA rows are skipped
  with the reason;
* ``test_fastcodec_refine[encode-<device>-b<batch>-r<steps>]``: the same encode with
  encoder-side refinement (``refine_steps``; CPU and CUDA, float32), its time and PSNR against
  the plain encode row of the same device and batch.

Each records ``MP_per_s``, ``images_per_s``, ``bpp``, ``psnr_db`` (decode rows), the peak host
memory of the warm-up call (``peak_host_bytes``: this process's resident memory;
``peak_host_delta_bytes``: above what it was before the call), ``peak_bytes`` (CUDA: peak
allocated device memory), transform ``GMAC_per_MP`` for the learned codecs, and fastcodec's
``speedup_vs_<baseline>`` (MP/s ratios). Every output is checked (sizes, dtypes, a PSNR floor
for the trained codecs); no timing is asserted. A "codec summary" section is printed at the end
(and appended to ``--bench-summary PATH`` when given).

    python -m pytest benches/test_bench_codec.py -q --benchmark-json out.json
    python -m pytest benches/test_bench_codec.py -q --quick        # CI-sized, a few seconds
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import torch

import codec_workload as cw
from conftest import _cpu_snapshot, _other_cores, note_skipped_anchor, run_benchmark
from factorized_baseline import FactorizedReimpl, load_baseline

pytestmark = pytest.mark.benchmark(group="codec")

CORES = os.cpu_count() or 1
OPS = ("encode", "decode")
#: Images the factorized baseline's latent spreads are set on (factorized_baseline.py).
CALIBRATION_IMAGES = 2
_PLUGIN = "fastcodec-codec-summary"
#: Device ids of the cases (``-bf16``: transforms in bfloat16); the CUDA ones skip without CUDA.
FASTCODEC_DEVICES = ("cpu", "cpu-bf16", "cuda", "cuda-bf16")
FACTORIZED_DEVICES = FASTCODEC_DEVICES


# --------------------------------------------------------------------------------------------
# parametrization (depends on --quick)


def _cases(devices, quick: bool) -> list:
    mode = "quick" if quick else "full"
    cases = []
    for op in OPS:
        for device in devices:
            for batch in cw.BATCHES[(mode, device.split("-")[0])]:
                cases.append(pytest.param((op, device, batch), id=f"{op}-{device}-b{batch}"))
    return cases


def pytest_generate_tests(metafunc):
    quick = bool(metafunc.config.getoption("--quick"))
    if "pillow_case" in metafunc.fixturenames:
        cases = [pytest.param((op, fmt, t), id=f"{op}-{fmt}-{t}thread{'s' if t > 1 else ''}")
                 for op in OPS for fmt in cw.PILLOW_FORMATS for t in sorted({1, CORES})]
        metafunc.parametrize("pillow_case", cases)
    if "factorized_case" in metafunc.fixturenames:
        # every fastcodec device has its factorized row: ratios compare equal precisions
        metafunc.parametrize("factorized_case", _cases(FACTORIZED_DEVICES, quick))
    if "fastcodec_case" in metafunc.fixturenames:
        metafunc.parametrize("fastcodec_case", _cases(FASTCODEC_DEVICES, quick))
    if "refine_case" in metafunc.fixturenames:
        mode = "quick" if quick else "full"
        batch = cw.REFINE_BATCH[mode]
        metafunc.parametrize("refine_case", [
            pytest.param((device, batch, steps), id=f"encode-{device}-b{batch}-r{steps}")
            for device in ("cpu", "cuda") for steps in cw.REFINE_STEPS[(mode, device)]])


# --------------------------------------------------------------------------------------------
# session state and the summary


class _Summary:
    """Prints the codec summary at the end of the session (registered as a plugin by the
    ``codec_results`` fixture, so it only runs when a codec benchmark did)."""

    def __init__(self, results: cw.CodecResults) -> None:
        self.results = results

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter, exitstatus, config):
        start = self.results.started
        other = None
        if start is not None:
            end = _cpu_snapshot()
            cores = _other_cores(start, end)
            if cores is not None:
                other = (f"other processes used {cores:.2f} of {CORES} cores on average during "
                         f"the codec benchmarks ({end[0] - start[0]:.1f} s)")
        lines = self.results.summary_lines(other)
        if not lines:
            return
        terminalreporter.section("codec summary")
        for line in lines:
            terminalreporter.write_line(line)
        path = config.getoption("--bench-summary")
        if path:  # after the coder summary when that wrote the file in this session
            fresh = os.path.exists(path) and os.path.getmtime(path) >= self.results.wall_start
            with open(path, "a" if fresh else "w") as fh:
                fh.write(("\n" if fresh else "") + "# codec summary\n" + "\n".join(lines) + "\n")
            terminalreporter.write_line(f"codec summary written to {path}")


@pytest.fixture(scope="session")
def codec_results(pytestconfig, quick):
    results = cw.CodecResults(images=cw.load_images(quick))
    results.started, results.wall_start = _cpu_snapshot(), time.time()
    manager = pytestconfig.pluginmanager
    old = manager.get_plugin(_PLUGIN)
    if old is not None:
        manager.unregister(old)
    manager.register(_Summary(results), _PLUGIN)
    return results


def _device(device: str, results: cw.CodecResults) -> str:
    """The torch device of a case, or a skip (noted for the summary) without CUDA."""
    kind = device.split("-")[0]
    if kind == "cuda" and not torch.cuda.is_available():
        reason = "no CUDA device (torch.cuda.is_available() is False)"
        results.skip("cuda rows", reason)
        pytest.skip(reason)
    if device == "cpu-bf16" and not _cpu_has_bf16():
        reason = "this CPU has no native bfloat16 (AMX / AVX512-BF16): bf16 would be emulated"
        results.skip("cpu-bf16 rows", reason)
        pytest.skip(reason)
    return kind


def _cpu_has_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _dtype(device: str):
    """The transforms' autocast dtype of a case id (``...-bf16``: bfloat16, else float32)."""
    return torch.bfloat16 if device.endswith("-bf16") else None


def _measure(benchmark, fn, *, quick: bool, device: str):
    """Warm-up call (peak memory recorded), then the timed rounds; returns
    ``(last output, median seconds, best seconds, extra info)``."""
    cuda = device == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    with cw.PeakRss() as rss:
        t0 = time.perf_counter()
        fn()
        warm = time.perf_counter() - t0
    extra = {"warmup_seconds": warm, "peak_host_bytes": rss.peak,
             "peak_host_delta_bytes": rss.delta, "torch_threads": torch.get_num_threads()}
    if cuda:
        extra["peak_bytes"] = int(torch.cuda.max_memory_allocated())
        extra["device_name"] = torch.cuda.get_device_name()
    out, seconds, best = run_benchmark(benchmark, fn, cw.pick_rounds(warm, quick),
                                       warmup_rounds=0)
    return out, seconds, best, extra


def _record(benchmark, results, *, images, out_bytes, seconds, best, extra, **keys) -> dict:
    info = cw.throughput_info(images=images, seconds=seconds, best_seconds=best,
                              nbytes=out_bytes, **keys)
    info.update(extra)
    benchmark.extra_info.update(info)
    results.record(benchmark.extra_info)
    return benchmark.extra_info


# --------------------------------------------------------------------------------------------
# Pillow


def test_pillow(benchmark, pillow_case, codec_results, quick, pytestconfig):
    op, fmt, threads = pillow_case
    why = cw.pillow_available(fmt)
    if why:
        codec_results.skip(f"pillow-{fmt}", why)
        n = len(codec_results.images.images)  # fill_ratios: Pillow ratios of these rows only
        note_skipped_anchor(
            pytestconfig, group="codec", anchor=f"pillow-{fmt}", ratio=f"speedup_vs_{fmt}",
            reason=why, applies=lambda info: (info.get("codec"), info.get("device"),
                                              info.get("batch")) == ("fastcodec", "cpu", n))
        pytest.skip(why)
    images = codec_results.images.images
    codec = cw.PillowCodec(fmt, threads)
    codec_results.labels[f"pillow-{fmt}"] = codec.label
    try:
        if op == "encode":
            out, seconds, best, extra = _measure(benchmark, lambda: codec.encode(images),
                                                 quick=quick, device="cpu")
            blobs = out
            assert len(out) == len(images) and all(out)
            value = cw.check_decoded(images, codec.decode(out), cw.MIN_PSNR_DB["pillow"])
        else:
            blobs = codec.encode(images)
            out, seconds, best, extra = _measure(benchmark, lambda: codec.decode(blobs),
                                                 quick=quick, device="cpu")
            value = cw.check_decoded(images, out, cw.MIN_PSNR_DB["pillow"])
    finally:
        codec.close()
    extra["psnr_db"] = value
    _record(benchmark, codec_results, codec=f"pillow-{fmt}", op=op, device="cpu",
            batch=len(images), threads=threads, images=images,
            out_bytes=sum(map(len, blobs)), seconds=seconds, best=best, extra=extra)


# --------------------------------------------------------------------------------------------
# bmshj2018-factorized


@pytest.fixture(scope="session")
def factorized_models(codec_results):
    """``get(device)``: the baseline on that device, built once (calibrated on the images)."""
    cache = {}

    def get(device: str):
        """``device``: a case id (``cpu``, ``cpu-bf16``, ``cuda``, ``cuda-bf16``)."""
        if device not in cache:
            calibration = codec_results.images.images[:CALIBRATION_IMAGES]
            model, why_not = load_baseline(calibration, device.split("-")[0], _dtype(device))
            if why_not and not any("CompressAI" in n for n in codec_results.notes):
                codec_results.notes.append(
                    f"note: CompressAI's model is not used ({why_not}); the factorized rows are "
                    "this suite's re-implementation of its architecture (factorized_baseline.py), "
                    "entropy coded with fastcodec's range coder on one thread")
            if isinstance(model, FactorizedReimpl):  # its coder round-trips the latent
                crop = [im[:64, :64].copy() for im in codec_results.images.images[:2]]
                enc = model.encode(crop)
                assert np.array_equal(model.decode_symbols(enc), model.latent_symbols(crop))
            enc_g, dec_g = cw.gmac_per_mp(*model.transforms(), model.latent_channels,
                                          model.device)
            cache[device] = (model, enc_g, dec_g)
            codec_results.labels["factorized"] = model.label
        return cache[device]

    return get


def test_factorized(benchmark, factorized_case, codec_results, factorized_models, quick):
    op, device, batch = factorized_case
    kind = _device(device, codec_results)
    model, enc_g, dec_g = factorized_models(device)
    images = codec_results.images.batch(batch)
    if op == "encode":
        out, seconds, best, extra = _measure(benchmark, lambda: model.encode(images),
                                             quick=quick, device=kind)
        encoded = out
        assert len(out.streams) == batch and all(out.streams)
        extra["GMAC_per_MP"] = enc_g
    else:
        encoded = model.encode(images)
        out, seconds, best, extra = _measure(benchmark, lambda: model.decode(encoded),
                                             quick=quick, device=kind)
        # untrained weights: no quality floor, only sizes and dtypes
        extra["psnr_db"] = cw.check_decoded(images, out, None)
        extra["GMAC_per_MP"] = dec_g
    extra["model"] = model.label
    _record(benchmark, codec_results, codec="factorized", op=op, device=device, batch=batch,
            threads=torch.get_num_threads(), images=images, out_bytes=encoded.num_bytes,
            seconds=seconds, best=best, extra=extra)


# --------------------------------------------------------------------------------------------
# fastcodec


@pytest.fixture(scope="session")
def fastcodec_codecs(codec_results, pytestconfig):
    """``get(device_id)``: a ``fastcodec.Codec`` for ``cpu`` / ``cpu-bf16`` / ``cuda`` /
    ``cuda-bf16``."""
    import fastcodec
    from fastcodec.zoo import DEFAULT_MODEL, load_model

    model_id = pytestconfig.getoption("--codec-model") or DEFAULT_MODEL
    cache = {}

    def get(device_id: str):
        if device_id not in cache:
            kind = device_id.split("-")[0]
            dtype = _dtype(device_id)
            codec = fastcodec.Codec(cw.FASTCODEC_QUALITY, kind, model=model_id,
                                    transform_dtype=dtype)
            shipped = load_model(codec.model_id, kind)
            model = shipped.model
            enc_g, dec_g = cw.gmac_per_mp(model.g_a, model.g_s, model.M, kind)
            step = shipped.metadata.get("step", "?")
            codec_results.labels["fastcodec"] = (
                f"fastcodec {fastcodec.__version__} {codec.model_id} (training step {step}), "
                f"quality {codec.quality:g}, batch_size {codec.batch_size}, "
                f"{codec.threads} coder threads")
            cache[device_id] = (codec, enc_g, dec_g)
        return cache[device_id]

    return get


def test_fastcodec(benchmark, fastcodec_case, codec_results, fastcodec_codecs, quick):
    op, device, batch = fastcodec_case
    kind = _device(device, codec_results)
    codec, enc_g, dec_g = fastcodec_codecs(device)
    images = codec_results.images.batch(batch)
    floor = cw.MIN_PSNR_DB["fastcodec"]
    if op == "encode":
        out, seconds, best, extra = _measure(benchmark, lambda: codec.compress(images),
                                             quick=quick, device=kind)
        blobs = out
        assert len(out) == batch and all(out)
        extra["psnr_db"] = cw.check_decoded(images, codec.decompress(out), floor)
        extra["GMAC_per_MP"] = enc_g
    else:
        blobs = codec.compress(images)
        out, seconds, best, extra = _measure(benchmark, lambda: codec.decompress(blobs),
                                             quick=quick, device=kind)
        extra["psnr_db"] = cw.check_decoded(images, out, floor)
        extra["GMAC_per_MP"] = dec_g
    extra.update(quality=codec.quality, model=codec.model_id)
    _record(benchmark, codec_results, codec="fastcodec", op=op, device=device, batch=batch,
            threads=codec.threads, images=images, out_bytes=sum(map(len, blobs)),
            seconds=seconds, best=best, extra=extra)


def test_fastcodec_refine(benchmark, refine_case, codec_results, fastcodec_codecs, quick):
    """Encode with ``refine_steps``: its cost and its PSNR gain against the plain encode row of
    the same device and batch (``encode_time_vs_plain``, ``psnr_gain_db``, ``bpp_change``)."""
    import fastcodec

    device, batch, steps = refine_case
    kind = _device(device, codec_results)
    plain, _, _ = fastcodec_codecs(device)
    codec = fastcodec.Codec(plain.quality, kind, model=plain.model_id, refine_steps=steps)
    images = codec_results.images.batch(batch)
    out, seconds, best, extra = _measure(benchmark, lambda: codec.compress(images),
                                         quick=quick, device=kind)
    assert len(out) == batch and all(out)
    # the files are plain ones: the plain codec decodes them
    extra["psnr_db"] = cw.check_decoded(images, plain.decompress(out),
                                        cw.MIN_PSNR_DB["fastcodec"])
    extra.update(quality=codec.quality, model=codec.model_id, refine_steps=steps)
    _record(benchmark, codec_results, codec=f"fastcodec-r{steps}", op="encode", device=device,
            batch=batch, threads=codec.threads, images=images, out_bytes=sum(map(len, out)),
            seconds=seconds, best=best, extra=extra)
