"""Ray itself and the actor pool: starting or joining Ray, GPUs / CPUs per worker and the pool
size from the arguments and the cluster's resources."""

from __future__ import annotations

import math
from typing import Optional, Tuple, Union

import ray
import ray.data


def ensure_ray(address: Optional[str] = None) -> None:
    if not ray.is_initialized():
        ray.init(address=address, ignore_reinit_error=True)


def plan_resources(num_gpus_per_worker, num_cpus_per_worker, concurrency, device,
                   is_dataset: bool) -> Tuple[float, float, Union[int, Tuple[int, int]]]:
    """(GPUs per worker, CPUs per worker, actor pool size) from the arguments and the cluster:
    one worker per GPU when the cluster has GPUs (unless ``device`` is a CPU), else one per CPU
    (one CPU left for the read tasks of a Dataset source)."""
    resources = ray.cluster_resources()
    total_cpu = float(resources.get("CPU", 1.0))
    total_gpu = float(resources.get("GPU", 0.0))
    if num_gpus_per_worker is None:
        wants_cpu = device is not None and str(device).startswith("cpu")
        num_gpus_per_worker = 1.0 if total_gpu > 0 and not wants_cpu else 0.0
    num_gpus_per_worker = float(num_gpus_per_worker)
    if num_gpus_per_worker < 0 or not math.isfinite(num_gpus_per_worker):
        raise ValueError(f"num_gpus_per_worker must be >= 0, got {num_gpus_per_worker}")
    if num_cpus_per_worker is None:
        if num_gpus_per_worker > 0 and total_gpu > 0:
            per_gpu = total_cpu / total_gpu * num_gpus_per_worker
            num_cpus_per_worker = float(min(8, max(1, int(per_gpu) - 1)))
        else:
            num_cpus_per_worker = 1.0
    num_cpus_per_worker = float(num_cpus_per_worker)
    if num_cpus_per_worker <= 0:
        raise ValueError(f"num_cpus_per_worker must be > 0, got {num_cpus_per_worker}")
    if concurrency is None:
        if num_gpus_per_worker > 0:
            concurrency = max(1, int(total_gpu / num_gpus_per_worker))
        else:
            spare = 1.0 if is_dataset and total_cpu > num_cpus_per_worker else 0.0
            concurrency = max(1, int((total_cpu - spare) / num_cpus_per_worker))
    elif isinstance(concurrency, tuple):
        if len(concurrency) != 2 or not all(isinstance(c, int) and c >= 1 for c in concurrency) \
                or concurrency[0] > concurrency[1]:
            raise ValueError(f"concurrency must be an int >= 1 or (min, max), got {concurrency}")
    elif isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"concurrency must be an int >= 1 or (min, max), got {concurrency!r}")
    return num_gpus_per_worker, num_cpus_per_worker, concurrency


def actor_pool(concurrency) -> "ray.data.ActorPoolStrategy":
    if isinstance(concurrency, tuple):
        return ray.data.ActorPoolStrategy(min_size=concurrency[0], max_size=concurrency[1])
    return ray.data.ActorPoolStrategy(size=concurrency)
