"""core.cpu: the instruction sets named, and VNNI's absence said where it changes int8 answers."""
from __future__ import annotations

import pickle
import platform
import socket

import pytest

from core.cpu import ISA_NAMES, CpuInfo, isa_from_flags, this_cpu


@pytest.mark.parametrize("flags, isa", [
    ("sse4_2 avx fma", ()),
    ("avx2 fma", ("AVX2",)),
    ("avx2 avx512f", ("AVX2",)),  # AVX-512 means the BW core here, as ONNX Runtime's int8 kernels need it
    ("avx2 avx512f avx512bw avx512dq", ("AVX2", "AVX-512")),
    ("avx2 avx512f avx512bw avx512_vnni", ("AVX2", "AVX-512", "VNNI")),
    ("avx2 avx_vnni", ("AVX2", "VNNI")),  # Alder Lake and later: VNNI without AVX-512
    ("avx2 avx512f avx512bw avx512_vnni amx_tile amx_int8", ("AVX2", "AVX-512", "VNNI", "AMX")),
])
def test_instruction_sets_from_flags(flags, isa):
    assert isa_from_flags(flags.split()) == isa


@pytest.mark.parametrize("isa, known, text, exact", [
    (("AVX2",), True, "AVX2, no VNNI", False),
    (("AVX2", "AVX-512"), True, "AVX2, AVX-512, no VNNI", False),
    (("AVX2", "AVX-512", "VNNI"), True, "AVX2, AVX-512, VNNI", True),
    (("AVX2", "AVX-512", "VNNI", "AMX"), True, "AVX2, AVX-512, VNNI, AMX", True),
    ((), True, "no AVX2", False),
    ((), False, "instruction sets unknown", False),
])
def test_the_text_says_when_vnni_is_missing(isa, known, text, exact):
    cpu = CpuInfo("h", "Some CPU", isa, known)
    assert cpu.isa_text() == text and cpu.describe() == f"Some CPU; {text}"
    assert cpu.exact_int8 is exact


def test_this_cpu_is_read_once_and_travels():
    cpu = this_cpu()
    assert cpu is this_cpu()
    assert cpu.host == socket.gethostname() and cpu.model
    assert set(cpu.isa) <= set(ISA_NAMES)
    if platform.system() == "Linux" and platform.machine() == "x86_64":
        assert cpu.known  # the flags were read
    assert pickle.loads(pickle.dumps(cpu)) == cpu
    assert cpu.to_json()["isa"] == list(cpu.isa)
