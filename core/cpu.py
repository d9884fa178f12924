"""The CPU this process runs on: its host, model and the instruction sets that decide an engine's numbers.

ONNX Runtime chooses its int8 kernels by instruction set. With VNNI (AVX-512 VNNI or
AVX-VNNI) or AMX they add every product exactly in 32 bits; on AVX2, and on AVX-512
without VNNI, the uint8 x int8 kernels first add pairs of products in 16 bits, which
saturate when weights use the full 8-bit range. The same model can then answer
differently on two executors, so a run names each one's CPU. Read from Linux's
``/proc/cpuinfo`` (what the kernel reports of CPUID); elsewhere only the model is known.
"""
from __future__ import annotations

import functools
import platform
import socket
from dataclasses import asdict, dataclass

__all__ = ["CpuInfo", "this_cpu", "isa_from_flags", "ISA_NAMES"]

#: The instruction sets named, in this order, with the ``/proc/cpuinfo`` flags that make each:
#: all of the first group, or any of the second.
_ISA_FLAGS = (
    ("AVX2", ("avx2",), ()),
    ("AVX-512", ("avx512f", "avx512bw"), ()),
    ("VNNI", (), ("avx512_vnni", "avx_vnni")),
    ("AMX", ("amx_int8",), ()),
)
ISA_NAMES = tuple(name for name, _, _ in _ISA_FLAGS)


def isa_from_flags(flags) -> tuple[str, ...]:
    """The :data:`ISA_NAMES` a set of ``/proc/cpuinfo`` flags gives.

    >>> isa_from_flags("fma avx2 avx512f avx512bw".split())
    ('AVX2', 'AVX-512')
    >>> isa_from_flags(["avx2", "avx_vnni"])
    ('AVX2', 'VNNI')
    """
    flags = set(flags)
    return tuple(name for name, every, some in _ISA_FLAGS
                 if (every and set(every) <= flags) or (some and flags & set(some)))


@dataclass(frozen=True)
class CpuInfo:
    """A host's CPU: ``model`` as the kernel names it, ``isa`` a tuple of :data:`ISA_NAMES`."""

    host: str
    model: str
    isa: tuple[str, ...]
    #: ``isa`` was read from the CPU flags (False where the platform does not report them).
    known: bool = True

    @property
    def exact_int8(self) -> bool:
        """ONNX Runtime's uint8 x int8 kernels add products exactly here (VNNI or AMX)."""
        return "VNNI" in self.isa or "AMX" in self.isa

    def isa_text(self) -> str:
        """``"AVX2, AVX-512, no VNNI"``: the sets seen, and VNNI's absence where it matters."""
        if not self.known:
            return "instruction sets unknown"
        seen = list(self.isa) or ["no AVX2"]
        if "AVX2" in self.isa and not self.exact_int8:
            seen.append("no VNNI")
        return ", ".join(seen)

    def describe(self) -> str:
        return f"{self.model}; {self.isa_text()}"

    def to_json(self) -> dict:
        return {**asdict(self), "isa": list(self.isa)}


def _proc_cpuinfo() -> tuple[str, list[str]] | None:
    """The first processor's model name and flags, or ``None`` where there is no ``/proc/cpuinfo``."""
    model, flags = None, None
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:  # one processor's block is enough: stop there (hundreds of cores repeat it)
                key, sep, value = line.partition(":")
                key = key.strip()
                if sep and key == "model name" and model is None:
                    model = value.strip()
                elif sep and key == "flags" and flags is None:
                    flags = value.split()
                if model is not None and flags is not None:
                    break
    except OSError:
        return None
    if flags is None:
        return None
    return model or platform.processor() or platform.machine(), flags


@functools.lru_cache(maxsize=1)
def this_cpu() -> CpuInfo:
    """This host's :class:`CpuInfo`, read once per process (a CPU does not change under it)."""
    host = socket.gethostname()
    found = _proc_cpuinfo()
    if found is None:
        return CpuInfo(host, platform.processor() or platform.machine() or "unknown", (), known=False)
    model, flags = found
    return CpuInfo(host, model, isa_from_flags(flags))
