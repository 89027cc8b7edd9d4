"""Torch's intra-op threads around a component's own work, and nowhere else.

The heads' operations are small: on CPU, thread synchronisation costs more
than it brings, so a component runs torch on few threads (its `cpu_threads`
setting) inside its `predict` and gives the process its setting back after.

`nlp.pipe(n_process=N)` forks its workers (on Linux), and torch's OpenMP
threads do not survive a fork: the child's first multi-threaded operation
waits for them forever. The N processes are the parallelism, so in a process
forked from the one that created the component, torch runs on one thread.
Nothing is registered at import: only the component's own calls are affected.
"""

import os
from contextlib import contextmanager
from typing import Iterator

import torch


@contextmanager
def torch_threads(n: int, owner_pid: int) -> Iterator[None]:
    """Run torch with `n` intra-op threads inside the block (0: leave the
    setting as it is).

    n (int): The number of threads; 0 keeps torch's setting.
    owner_pid (int): The process that created the component: in any other
        (a forked worker), torch is set to one thread and left there, since
        its thread pool cannot be used in that process.
    """
    if os.getpid() != owner_pid:
        if torch.get_num_threads() != 1:
            torch.set_num_threads(1)
        yield
        return
    previous = torch.get_num_threads()
    if n <= 0 or n == previous:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
