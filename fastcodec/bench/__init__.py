"""``fastcodec bench``: run the benchmark suite, store the results with the machine, compare, plot.

The suite itself is ``benches/`` of a source checkout (pytest + pytest-benchmark; see
``benches/README.md``): wheels do not ship it, so this command needs a checkout -- the one an
editable install points at, the current directory (or one above it), or ``--benches DIR``.

What a run does (:mod:`.command` drives it):

1. runs ``python -m pytest <benches files of the group> --benchmark-json <file>`` in a
   subprocess whose working directory is a temporary folder, so the *installed* fastcodec (with
   its compiled modules) is imported, not the source tree (``python -m`` puts the working
   directory first on ``sys.path``) (:func:`.command.run_suite`);
2. adds to that pytest-benchmark JSON a ``"machine"`` block (CPU model, cores, RAM, GPU name and
   driver, library versions, git commit and whether the working tree was modified, date, command;
   :mod:`.machine`) and a ``"run"`` block (group, quick, exit status, duration, load from other
   processes, peak host memory of the benchmark process), and stores it as
   ``benches/results/<group>-<host>-<date>-<commit>[-quick].json`` (``<host>``: ``cpu``, or
   ``gpu-<model>`` when a GPU is visible);
3. prints a compact table per benchmark group (median, spread, throughput in the group's units,
   speed-ups over the anchors measured in the same run; n/a with the reason for an anchor the
   run skipped, from the file's ``skipped_anchors``; :mod:`.results`);
4. with ``--compare OLD.json``: ratio columns new/old per benchmark and a flag where the change
   exceeds the measured spread (rule: :data:`.compare.COMPARE_RULE`); a warning when the machines
   differ, and rows of a different model / quality / dtype are "not comparable", never flagged
   (:mod:`.compare`);
5. with ``--plot``: PNGs in ``benches/results/plots/`` -- fastcodec's coder throughput vs batch
   size (from this run's ``coder-batch`` benchmarks) and the history of a metric across all the
   stored results files (one line per benchmark, workload, model and machine; :mod:`.plots`).

``--compare``'s file is read, and matplotlib imported for ``--plot``, before the suite runs.

No timing is ever asserted: the exit status is pytest's (a benchmark fails only when its output is
wrong), so CI can run ``fastcodec bench --quick`` as a smoke test.
"""

from .command import build_parser, configure_parser, main
from .results import BenchError

__all__ = ["BenchError", "build_parser", "configure_parser", "main"]
