"""Range-coder throughput: fastcodec (1 and 2 threads) against constriction and CompressAI.

Workload: coder_workload.py (a factorized-prior-like latent, one stream per image). Every
benchmark checks that the decoded symbols are the encoded ones; none has a timing threshold.
Each records Msym/s, ns/symbol, MB/s, bits/symbol and overhead vs ideal in ``extra_info``;
fastcodec's also hold its speed-up over each anchor measured in the same run (the anchors run
first; ratios are also filled in at the end of the session). The summary table is printed at
the end of the session (conftest.py).

``test_fastcodec_batch`` (group "coder-batch") times fastcodec on batches of 1, 2, 4 and 8 images
of the same workload, 1 and 2 threads (Msym/s and images/s vs batch size; the summary has a line
per thread count and ``fastcodec bench --plot`` draws it).
"""

from __future__ import annotations

import numpy as np
import pytest

from anchors import AnchorUnavailable, CompressAICoder, ConstrictionCoder
from conftest import report_batch, report_throughput, run_benchmark
from fastcodec.rangecoder import CdfTables
from fastcodec.rangecoder import STREAM_OVERHEAD_BYTES

pytestmark = pytest.mark.benchmark(group="coder")


# --------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def fastcodec_tables(coder_workload):
    w = coder_workload
    return CdfTables(w.cdfs, w.cdf_lengths, w.offsets, w.precision)


@pytest.fixture(scope="module")
def fastcodec_streams(fastcodec_tables, coder_workload):
    streams = fastcodec_tables.encode_batch(coder_workload.symbols, coder_workload.indexes, threads=1)
    assert fastcodec_tables.encode_batch(
        coder_workload.symbols, coder_workload.indexes, threads=2
    ) == streams, "fastcodec's bytes depend on the thread count"
    return streams


@pytest.fixture(scope="module")
def constriction_coder(coder_workload, note_skip):
    try:
        return ConstrictionCoder(coder_workload)
    except AnchorUnavailable as exc:
        note_skip("constriction", str(exc))


@pytest.fixture(scope="module")
def compressai_coder(coder_workload, note_skip):
    try:
        return CompressAICoder(coder_workload)
    except AnchorUnavailable as exc:
        note_skip("compressai", str(exc))


# --------------------------------------------------------------------------------------------
# anchors (first, so that fastcodec's ratios are known when its benchmarks run)


def test_constriction_encode(benchmark, constriction_coder, coder_workload, coder_results, rounds):
    coder = constriction_coder
    streams, seconds, best = run_benchmark(benchmark, coder.encode, rounds("constriction"))
    assert np.array_equal(coder.decode(streams), coder.bins)
    report_throughput(
        benchmark, coder_results, coder="constriction", op="encode", workload=coder_workload,
        seconds=seconds, best_seconds=best, stream_bytes=coder.stream_bytes(streams),
        version=coder.version, note="escaped symbols coded as the escape bin only",
    )


def test_constriction_decode(benchmark, constriction_coder, coder_workload, coder_results, rounds):
    coder = constriction_coder
    streams = coder.encode()
    decoded, seconds, best = run_benchmark(
        benchmark, lambda: coder.decode(streams), rounds("constriction")
    )
    assert np.array_equal(decoded, coder.bins)
    report_throughput(
        benchmark, coder_results, coder="constriction", op="decode", workload=coder_workload,
        seconds=seconds, best_seconds=best, stream_bytes=coder.stream_bytes(streams),
        version=coder.version, note="escaped symbols coded as the escape bin only",
    )


def test_compressai_encode(benchmark, compressai_coder, coder_workload, coder_results, rounds):
    coder = compressai_coder
    streams, seconds, best = run_benchmark(benchmark, coder.encode, rounds("compressai"))
    assert np.array_equal(coder.as_array(coder.decode(streams)), coder_workload.symbols)
    report_throughput(
        benchmark, coder_results, coder="compressai", op="encode", workload=coder_workload,
        seconds=seconds, best_seconds=best, stream_bytes=coder.stream_bytes(streams),
        version=coder.version,
    )


def test_compressai_decode(benchmark, compressai_coder, coder_workload, coder_results, rounds):
    coder = compressai_coder
    streams = coder.encode()
    decoded, seconds, best = run_benchmark(
        benchmark, lambda: coder.decode(streams), rounds("compressai")
    )
    assert np.array_equal(coder.as_array(decoded), coder_workload.symbols)
    report_throughput(
        benchmark, coder_results, coder="compressai", op="decode", workload=coder_workload,
        seconds=seconds, best_seconds=best, stream_bytes=coder.stream_bytes(streams),
        version=coder.version,
    )


# --------------------------------------------------------------------------------------------
# fastcodec


@pytest.mark.parametrize("threads", [1, 2], ids=["1thread", "2threads"])
def test_fastcodec_encode(
    benchmark, threads, fastcodec_tables, fastcodec_streams, coder_workload, coder_results, rounds
):
    w = coder_workload
    streams, seconds, best = run_benchmark(
        benchmark,
        lambda: fastcodec_tables.encode_batch(w.symbols, w.indexes, threads=threads),
        rounds("fastcodec"),
    )
    assert streams == fastcodec_streams
    assert np.array_equal(fastcodec_tables.decode_batch(streams, w.indexes, threads=threads), w.symbols)
    report_throughput(
        benchmark, coder_results, coder=f"fastcodec-{threads}t", op="encode", workload=w,
        seconds=seconds, best_seconds=best, stream_bytes=sum(map(len, streams)), threads=threads,
        state_bytes_per_stream=STREAM_OVERHEAD_BYTES,
    )


@pytest.mark.parametrize("threads", [1, 2], ids=["1thread", "2threads"])
def test_fastcodec_decode(
    benchmark, threads, fastcodec_tables, fastcodec_streams, coder_workload, coder_results, rounds
):
    w = coder_workload
    decoded, seconds, best = run_benchmark(
        benchmark,
        lambda: fastcodec_tables.decode_batch(fastcodec_streams, w.indexes, threads=threads),
        rounds("fastcodec"),
    )
    assert np.array_equal(decoded, w.symbols)
    report_throughput(
        benchmark, coder_results, coder=f"fastcodec-{threads}t", op="decode", workload=w,
        seconds=seconds, best_seconds=best, stream_bytes=sum(map(len, fastcodec_streams)),
        threads=threads, state_bytes_per_stream=STREAM_OVERHEAD_BYTES,
    )


# --------------------------------------------------------------------------------------------
# fastcodec throughput vs batch size (group "coder-batch"; `fastcodec bench --plot` draws it)

BATCH_SIZES = (1, 2, 4, 8)
BATCH_CASES = [(op, b, t) for op in ("encode", "decode") for t in (1, 2) for b in BATCH_SIZES]


@pytest.fixture(scope="module")
def batch_inputs(coder_workload, fastcodec_tables):
    """``{b: (symbols [b, C, H, W], streams)}``: the first ``b`` images of the workload (cycled
    when ``b`` exceeds its batch, as in the quick workload), and their fastcodec streams."""
    w = coder_workload
    out = {}
    for b in BATCH_SIZES:
        symbols = np.ascontiguousarray(w.symbols[np.arange(b) % w.num_streams])
        out[b] = symbols, fastcodec_tables.encode_batch(symbols, w.indexes, threads=1)
    return out


@pytest.mark.benchmark(group="coder-batch")
@pytest.mark.parametrize(
    "op,batch,threads", BATCH_CASES,
    ids=[f"{op}-batch{b}-{t}thread{'s' if t > 1 else ''}" for op, b, t in BATCH_CASES],
)
def test_fastcodec_batch(
    benchmark, op, batch, threads, fastcodec_tables, batch_inputs, coder_workload, batch_results,
    rounds,
):
    """One stream per image, ``threads`` threads over the streams: with one image the second
    thread has nothing to do, so the 2-thread curve shows where parallel streams start to pay."""
    w = coder_workload
    symbols, streams = batch_inputs[batch]
    if op == "encode":
        out, seconds, best = run_benchmark(
            benchmark, lambda: fastcodec_tables.encode_batch(symbols, w.indexes, threads=threads),
            rounds("fastcodec"),
        )
        assert out == streams
    else:
        out, seconds, best = run_benchmark(
            benchmark, lambda: fastcodec_tables.decode_batch(streams, w.indexes, threads=threads),
            rounds("fastcodec"),
        )
        assert np.array_equal(out, symbols)
    report_batch(
        benchmark, batch_results, op=op, batch=batch, threads=threads, symbols=int(symbols.size),
        image_shape=w.shape[1:], seconds=seconds, best_seconds=best,
        stream_bytes=sum(map(len, streams)),
    )
