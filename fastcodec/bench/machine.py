"""What ``fastcodec bench`` records about the machine (CPU, RAM, GPU and driver, library
versions, git state, native module), waiting for an idle CPU and measuring the load."""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib.metadata
import importlib.util
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

# --------------------------------------------------------------------------------------------
# machine


def _read(path: str) -> Optional[str]:
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return None


def _cmd(args: list, cwd=None, timeout: float = 20) -> Optional[str]:
    try:
        run = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None
    return run.stdout.rstrip() if run.returncode == 0 else None  # (porcelain lines start with " ")


def cpu_model() -> str:
    text = _read("/proc/cpuinfo") or ""
    for line in text.splitlines():
        if line.lower().startswith(("model name", "hardware", "cpu model")):
            return line.split(":", 1)[1].strip()
    if sys.platform == "darwin":
        name = _cmd(["sysctl", "-n", "machdep.cpu.brand_string"])
        if name:
            return name
    return platform.processor() or platform.machine()


def ram_gib() -> Optional[float]:
    text = _read("/proc/meminfo") or ""
    m = re.search(r"^MemTotal:\s+(\d+) kB", text, re.M)
    if m:
        return round(int(m.group(1)) / 2**20, 1)
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def package_version(dist: str) -> Optional[str]:
    """The installed version of distribution ``dist``, None when it is not installed."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def gpus() -> tuple:
    """``([{"name", "driver", "memory"}], cuda_seen_by_torch)``: nvidia-smi when present, else
    what torch sees (no driver version then)."""
    out = _cmd(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                "--format=csv,noheader"])
    found = []
    if out:
        for line in out.splitlines():
            parts = [p.strip() for p in line.split(",")]
            if len(parts) >= 3:
                found.append({"name": parts[0], "driver": parts[1], "memory": parts[2]})
    torch_cuda = None
    if package_version("torch"):
        try:
            import torch

            torch_cuda = {"available": bool(torch.cuda.is_available()),
                          "cuda": torch.version.cuda}
            if torch_cuda["available"]:
                torch_cuda["devices"] = [torch.cuda.get_device_name(i)
                                         for i in range(torch.cuda.device_count())]
                if not found:
                    found = [{"name": n, "driver": "unknown (no nvidia-smi)", "memory": None}
                             for n in torch_cuda["devices"]]
        except Exception as exc:  # noqa: BLE001 - a broken torch must not stop the report
            torch_cuda = {"error": repr(exc)}
    return found, torch_cuda


def host_kind(gpu_list: list) -> str:
    """``cpu``, or ``gpu-<model>`` (``NVIDIA H100 80GB HBM3`` -> ``gpu-h100-80gb``)."""
    if not gpu_list:
        return "cpu"
    name = re.sub(r"\b(nvidia|geforce|tesla|amd|radeon)\b", " ", gpu_list[0]["name"].lower())
    tokens = re.findall(r"[a-z0-9]+", name)[:2]
    return "gpu-" + ("-".join(tokens) or "unknown")


def git_info(repo: Path) -> dict:
    head = _cmd(["git", "-C", str(repo), "rev-parse", "HEAD"])
    if not head:
        return {"commit": None, "short": "nogit", "dirty": None}
    status = _cmd(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=normal",
                   "--", ".", ":(exclude)benches/results"]) or ""
    changed = [line[3:] for line in status.splitlines() if line.strip()]
    info = {"commit": head, "short": head[:7], "dirty": bool(changed)}
    if changed:
        info["modified"] = changed[:30] + ([f"... {len(changed) - 30} more"]
                                           if len(changed) > 30 else [])
    branch = _cmd(["git", "-C", str(repo), "rev-parse", "--abbrev-ref", "HEAD"])
    if branch:
        info["branch"] = branch
    return info


def native_module() -> Optional[dict]:
    """Where the compiled range coder that the benchmarks import lives, and a hash of it."""
    try:
        spec = importlib.util.find_spec("fastcodec._rangecoder")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.origin or not os.path.isfile(spec.origin):
        return None
    digest = hashlib.sha256(Path(spec.origin).read_bytes()).hexdigest()[:16]
    mtime = _dt.datetime.fromtimestamp(os.path.getmtime(spec.origin)).astimezone()
    return {"path": spec.origin, "sha256_16": digest, "built": mtime.isoformat(timespec="seconds")}


def describe_machine(repo: Path, command: str, pytest_command: str, now: _dt.datetime) -> dict:
    gpu_list, torch_cuda = gpus()
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    versions = {"python": platform.python_version()}
    for dist in ("fastcodec", "numpy", "torch", "triton", "pytest", "pytest-benchmark",
                 "constriction", "compressai", "Pillow"):
        versions[dist] = package_version(dist)
    return {
        "date": now.isoformat(timespec="seconds"),
        "host": platform.node(),
        "kind": host_kind(gpu_list),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": usable,
        "ram_gib": ram_gib(),
        "os": f"{platform.system()} {platform.release()} {platform.machine()}",
        "gpus": gpu_list,
        "gpu": gpu_list[0]["name"] if gpu_list else None,
        "gpu_driver": gpu_list[0]["driver"] if gpu_list else None,
        "torch_cuda": torch_cuda,
        "versions": versions,
        "native_module": native_module(),
        "git": git_info(repo),
        "command": command,
        "pytest_command": pytest_command,
    }


# --------------------------------------------------------------------------------------------
# load


def cpu_busy_seconds() -> Optional[float]:
    """Busy CPU seconds of the whole machine so far (all but idle and iowait)."""
    text = _read("/proc/stat")
    if not text:
        return None
    try:
        fields = [int(v) for v in text.splitlines()[0].split()[1:9]]
        return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")
    except (ValueError, IndexError, OSError):
        return None


def loadavg() -> Optional[list]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def wait_idle(limit_s: float, max_busy: float = 0.10) -> Optional[float]:
    """Waits up to ``limit_s`` for the machine to be < ``max_busy`` busy over 3 s; returns the
    last busy fraction measured (None where /proc/stat is missing)."""
    deadline = time.monotonic() + limit_s
    cores = os.cpu_count() or 1
    while True:
        a, t0 = cpu_busy_seconds(), time.monotonic()
        if a is None:
            return None
        time.sleep(3)
        busy = (cpu_busy_seconds() - a) / (time.monotonic() - t0) / cores
        if busy < max_busy:
            return busy
        if time.monotonic() > deadline:
            print(f"[bench] CPU still {busy:.0%} busy after {limit_s:.0f} s; running anyway",
                  flush=True)
            return busy
        print(f"[bench] waiting for an idle CPU ({busy:.0%} busy)", flush=True)
