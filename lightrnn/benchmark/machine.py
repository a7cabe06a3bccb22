"""What a benchmark ran on, the machine's measured matmul peak, and peak memory of one measurement.

The peak is measured, not taken from a data sheet: an fp32 (and on GPU bf16) GEMM timed in the
same process, with the same thread count and under the same load as the models, so that
utilisation = model FLOP/s / peak is a ratio of two numbers measured side by side.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import datetime
import os
import platform
import resource
import time
import warnings
from pathlib import Path
from typing import Callable, Iterator

import torch

from lightrnn.core.metrics import git_rev
from lightrnn.core.runtime import tf32_enabled


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo, else `platform.processor()`)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    """'cpu' or 'cuda:0 (NVIDIA H200)'."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return "cpu"


def machine_info(device: torch.device) -> dict[str, object]:
    """The columns every benchmark row carries: machine, software, date, code revision, load."""
    return {
        "device": device_name(device),
        "cpu_model": cpu_model(),
        "cores": os.cpu_count() or 0,
        "threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "git_rev": git_rev() or "unknown",
        # Whether float32 GEMMs/LSTMs may use TF32 on this run (off: `lightrnn.core.runtime.use_fp32_matmul`).
        "tf32": tf32_enabled(),
    }


def load_average() -> float:
    """The 1-minute load average (NaN where the OS has none): how shared the machine was."""
    try:
        return float(os.getloadavg()[0])
    except OSError:
        return float("nan")


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so that wall-clock time covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# One timing covers at least this much GEMM work: on a GPU one 1024^3 product takes microseconds,
# less than the launch and synchronize around it, so timing products one by one underestimates
# the peak several-fold (and a model's utilisation could then exceed 100%).
MIN_BATCH_SECONDS = 0.01
MAX_BATCH_PRODUCTS = 1 << 16


def products_per_timing(seconds_per_product: float, min_batch_seconds: float = MIN_BATCH_SECONDS) -> int:
    """How many back-to-back products one timing runs so that it lasts >= `min_batch_seconds`.

    `seconds_per_product` is an estimate (upper bound: it includes launch and sync overhead),
    so the batch may come out longer than asked, never shorter by more than that overhead.
    """
    if seconds_per_product <= 0:
        return MAX_BATCH_PRODUCTS
    return int(min(MAX_BATCH_PRODUCTS, max(1, -(-min_batch_seconds // seconds_per_product))))


def matmul_flops_per_s(
    size: int, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu", min_seconds: float = 0.2,
    min_batch_seconds: float = MIN_BATCH_SECONDS,
) -> float:
    """FLOP/s of a [size, size] x [size, size] GEMM: 2 * size**3 per product, best of >= 3 timings.

    Each timing runs n products back to back and synchronizes once, with n chosen so that one
    timing lasts >= `min_batch_seconds` (`products_per_timing`, calibrated on a first batch);
    n is 1 for a CPU GEMM of this size that already takes that long. On CUDA the n products are
    replayed as one CUDA graph (`_as_cuda_graph`); `min_batch_seconds=0` times one eager product
    per synchronize (the naive method, for comparison).
    Best rather than median: the peak is what the hardware can do on this thread count; the
    models' medians are then compared against it (the stricter choice for utilisation).
    """
    if size < 1:
        raise ValueError(f"matmul_flops_per_s: size must be >= 1, got {size}")
    device = torch.device(device)
    generator = torch.Generator(device="cpu").manual_seed(0)
    left = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)
    right = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)
    out = torch.empty(size, size, device=device, dtype=dtype)

    def batch(products: int) -> Callable[[], None]:
        def eager() -> None:
            for _ in range(products):
                torch.mm(left, right, out=out)

        return _as_cuda_graph(eager, device) if device.type == "cuda" and products > 1 else eager

    def timed(run: Callable[[], None]) -> float:
        synchronize(device)
        start = time.perf_counter()
        run()
        synchronize(device)
        return time.perf_counter() - start

    timed(batch(1))  # warm-up: library initialisation, page faults
    products = 1
    while True:  # calibrate: grow the batch until one timing holds >= min_batch_seconds of work
        run = batch(products)
        elapsed = timed(run)
        if elapsed >= min_batch_seconds or products >= MAX_BATCH_PRODUCTS:
            break
        products = max(products * 2, products_per_timing(elapsed / products, min_batch_seconds))
    best = elapsed / products
    spent, timings = elapsed, 1
    while timings < 3 or spent < min_seconds:
        elapsed = timed(run)
        best, spent, timings = min(best, elapsed / products), spent + elapsed, timings + 1
    return 2.0 * size**3 / best


def _as_cuda_graph(run: Callable[[], None], device: torch.device) -> Callable[[], None]:
    """`run` captured once as a CUDA graph, whose replay launches its kernels back to back.

    Python launches a GEMM in a few microseconds, longer than a 1024^3 bf16 product takes on a
    recent GPU: timed eagerly, the batch would measure the launch rate, not the GPU. Falls back
    to `run` itself (with a warning) where capture fails.
    """
    try:
        side = torch.cuda.Stream(device=device)  # warm-up off the capture stream, as PyTorch advises
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            torch.mm(torch.zeros(8, 8, device=device), torch.zeros(8, 8, device=device))
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            run()
    except RuntimeError as error:
        warnings.warn(f"matmul peak: CUDA graph capture failed ({error}); timing eager launches", stacklevel=2)
        return run
    return graph.replay


def gemm_size(hidden_dim: int) -> int:
    """The square GEMM the peak is measured with: 4H (the LSTM's gate width), within [512, 4096]."""
    return int(min(4096, max(512, 4 * hidden_dim)))


# ----- peak memory ---------------------------------------------------------------------------------

_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")


def _status_kib(field: str) -> int:
    for line in _STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _release_free_heap() -> None:
    """Give freed heap pages back to the OS (glibc), so the baseline RSS holds no reusable garbage."""
    name = ctypes.util.find_library("c")
    if name:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(name).malloc_trim(0)


def _can_reset_rss_peak() -> bool:
    try:
        with open(_CLEAR_REFS, "w") as stream:
            stream.write("5")  # Linux >= 4.0: reset the peak RSS (VmHWM) to the current RSS
        _status_kib("VmHWM")
        return True
    except (OSError, KeyError, ValueError):
        return False


def reset_peak_rss() -> bool:
    """Return freed heap to the OS and reset this process's peak RSS to its current RSS (Linux).

    Also resets what `resource.getrusage(...).ru_maxrss` reports from then on, so code that
    measures its own peak RSS that way (lightrnn.benchmark.scaling) sees only what follows.
    False where the OS cannot (the peak then stays the process's lifetime peak).
    """
    _release_free_heap()
    return _can_reset_rss_peak()


class PeakMemory:
    """Peak memory, in bytes, of what runs inside `with PeakMemory(device) as peak:` -> `peak.bytes`.

    CUDA: max_memory_allocated over the block minus what was allocated at its start.
    CPU on Linux: peak RSS (VmHWM, reset at the start through /proc/self/clear_refs) minus the
    RSS at the start, after returning freed heap pages to the OS: the memory the block added
    (model, gradients, optimizer state, activations). Elsewhere: the process's lifetime peak RSS
    (`method` says which, so nobody compares the two kinds).
    """

    def __init__(self, device: torch.device) -> None:
        self.device = torch.device(device)
        self.bytes = 0
        if self.device.type == "cuda":
            self.method = "cuda_max_allocated"
        elif _can_reset_rss_peak():
            self.method = "rss_peak_delta"
        else:
            self.method = "process_peak_rss"
        self._start = 0

    def __enter__(self) -> "PeakMemory":
        if self.method == "cuda_max_allocated":
            synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
        elif self.method == "rss_peak_delta":
            _release_free_heap()
            _can_reset_rss_peak()
            self._start = _status_kib("VmRSS") * 1024
        return self

    def sample(self) -> int:
        """The peak so far, in bytes (also stored in `self.bytes`)."""
        if self.method == "cuda_max_allocated":
            synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device) - self._start
        elif self.method == "rss_peak_delta":
            peak = _status_kib("VmHWM") * 1024 - self._start
        else:
            usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            peak = usage if platform.system() == "Darwin" else usage * 1024  # bytes on macOS, KiB on Linux
        self.bytes = max(self.bytes, int(peak))
        return self.bytes

    def __exit__(self, *exc_info: object) -> None:
        self.sample()


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[int]:
    """Run with `threads` intra-op threads (None: leave as is); yields the number in use."""
    previous = torch.get_num_threads()
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)
