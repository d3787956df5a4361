"""Numba threads for simulations run as Dask tasks: the host's CPUs shared among its task slots.

A simulation uses every CPU of its machine by default. Several Dask workers
on one machine (a LocalCluster of 2 workers on 2 cores, or several worker
processes per node of an HPC job) would then each run that many OpenMP
threads, and OpenMP threads spin between parallel regions: on 2 cores, 2
workers of 2 threads each ran an experiment 15x slower than 2 workers of 1
thread (the benchmark's experiments section: 145 against 2,153 replicates
of the default scenario per hour). So the client counts the task slots of each host
(:func:`host_slots`) and each task sets its threads to the CPUs it may use
(:func:`fit_threads`) before simulating. Threads change speed only, never
results.
"""

from __future__ import annotations

import os


def host_slots(client) -> dict[str, int]:
    """Task slots (worker threads, summed over workers) per host of ``client``'s cluster."""
    from distributed.comm import get_address_host

    try:  # (some releases list only 5 workers unless asked for all; 2024 ones take no n_workers)
        workers = client.scheduler_info(n_workers=-1)["workers"]
    except TypeError:
        workers = client.scheduler_info()["workers"]
    slots: dict[str, int] = {}
    for address, info in workers.items():
        host = get_address_host(address)
        slots[host] = slots.get(host, 0) + int(info.get("nthreads", 1) or 1)
    return slots


def host_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the system has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # (not on every system)
        return os.cpu_count() or 1


def task_threads(slots: dict[str, int]) -> int | None:
    """Threads for one task on the current Dask worker, or None outside a worker.

    The worker's host CPUs divided by the host's task slots in ``slots``; a
    worker whose host is not listed (it joined after the count) counts its
    own threads as the host's slots.
    """
    from distributed import get_worker
    from distributed.comm import get_address_host

    try:
        worker = get_worker()
    except ValueError:
        return None
    shared = slots.get(get_address_host(worker.address)) or worker.state.nthreads
    return max(1, host_cpus() // max(1, shared))


def fit_threads(slots: dict[str, int] | None) -> None:
    """Set numba's threads for a task on a Dask worker (see the module); nothing outside one."""
    from metacoop.kernels.dispatch import set_threads

    threads = task_threads(slots) if slots is not None else None
    if threads is not None:
        set_threads(threads)
