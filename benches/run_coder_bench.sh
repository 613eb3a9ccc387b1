#!/usr/bin/env bash
# Runs the full range-coder benchmark and saves benches/results/coder-cpu-<date>[-<tag>].{txt,json}.
#
#   benches/run_coder_bench.sh            # full workload
#   benches/run_coder_bench.sh run2       # same, files tagged "-run2"
#   QUICK=1 benches/run_coder_bench.sh    # CI-sized workload (files tagged "-quick")
#
# Waits (up to WAIT_S seconds, default 300) for the CPU to be nearly idle (other processes using
# < MAX_BUSY_PCT percent, default 10, over 3 s) before it starts, and records the load before and
# after in the .txt file, so numbers taken on a busy machine are recognisable.
set -euo pipefail
cd "$(dirname "$0")/.."

tag="${1:-}"
[[ -n "${QUICK:-}" ]] && tag="${tag:+$tag-}quick"
stamp="$(date +%Y-%m-%d)"
base="benches/results/coder-cpu-${stamp}${tag:+-$tag}"
mkdir -p benches/results

busy_pct() {  # percent of CPU time not idle over $1 seconds
    local a b
    read -r _ a1 a2 a3 a4 a5 a6 a7 a8 _ < /proc/stat
    sleep "$1"
    read -r _ b1 b2 b3 b4 b5 b6 b7 b8 _ < /proc/stat
    local total=$(((b1 + b2 + b3 + b4 + b5 + b6 + b7 + b8) - (a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8)))
    local idle=$(((b4 + b5) - (a4 + a5)))
    echo $((100 * (total - idle) / (total > 0 ? total : 1)))
}

deadline=$((SECONDS + ${WAIT_S:-300}))
while :; do
    busy="$(busy_pct 3)"
    [[ "$busy" -lt "${MAX_BUSY_PCT:-10}" ]] && break
    if ((SECONDS > deadline)); then
        echo "warning: CPU still ${busy}% busy after ${WAIT_S:-300}s; running anyway" >&2
        break
    fi
    echo "waiting for an idle CPU (${busy}% busy)" >&2
done

cmd=(pytest benches -q -p no:cacheprovider
     --benchmark-json "${base}.json" --bench-summary "${base}.summary.tmp")
[[ -n "${QUICK:-}" ]] && cmd+=(--quick)
load_before="$(uptime)"
"${cmd[@]}" | tee "${base}.log"
status=${PIPESTATUS[0]}
load_after="$(uptime)"

so="$(python -c 'import fastcodec._rangecoder as m; print(m.__file__)')"
{
    echo "fastcodec range-coder benchmark, $(date -Iseconds)"
    echo "machine: $(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1), $(nproc) cores" \
         "($(lscpu | sed -n 's/^Thread(s) per core:[[:space:]]*//p') thread(s)/core), $(uname -sr)"
    echo "command: ${cmd[*]}"
    echo "git: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- csrc fastcodec 2>/dev/null || echo ' (csrc/fastcodec modified in the working tree)')"
    echo "native module: ${so} (sha256 $(sha256sum "$so" | cut -c1-16), $(date -r "$so" -Iseconds))"
    echo "load before: ${load_before}"
    echo "load after:  ${load_after}"
    echo "busy before start: ${busy}% over 3 s"
    echo "pytest exit status: ${status}"
    echo
    cat "${base}.summary.tmp"
} > "${base}.txt"
rm -f "${base}.summary.tmp" "${base}.log"
echo "wrote ${base}.txt and ${base}.json"
exit "$status"
