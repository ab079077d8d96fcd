"""Memory of a benchmark run: peak and current RSS, an RSS sampler thread, and the weights made resident before the baseline is read."""

from __future__ import annotations

import os
import threading
import time


def peak_rss_bytes() -> int:
    """This process's own peak RSS (VmHWM). Not ``ru_maxrss``: Linux carries that over from the
    forked parent across exec, so a child of a big parent would report the parent's size."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class RssSampler(threading.Thread):
    """Samples this process's RSS every ``interval`` seconds as (perf_counter, bytes)."""

    def __init__(self, interval: float = 0.01) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.samples.append((time.perf_counter(), rss_bytes()))
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()
        self.samples.append((time.perf_counter(), rss_bytes()))

    def peak(self, start: float, end: float) -> int:
        inside = [rss for t, rss in self.samples if start <= t <= end]
        return max(inside) if inside else 0


def touch_weights(trainer) -> int:
    """Read every parameter and buffer of every model the trainer holds, so that weights
    memory-mapped by ``from_pretrained`` are resident before the baseline RSS is taken (a
    deep copy touches them, a second ``from_pretrained`` does not). Returns the bytes read."""
    import torch

    holders = [trainer, getattr(trainer, "teacher", None)]
    modules = {id(trainer.model): trainer.model}
    for holder in filter(None, holders):
        for value in vars(holder).values():
            if isinstance(value, torch.nn.Module):
                modules.setdefault(id(value), value)
    seen, total = set(), 0
    with torch.no_grad():
        for module in modules.values():
            for tensor in [*module.parameters(), *module.buffers()]:
                if id(tensor) not in seen and tensor.numel():
                    seen.add(id(tensor))
                    tensor.sum()
                    total += tensor.numel() * tensor.element_size()
    return total
