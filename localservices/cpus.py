"""Other x86 CPUs, stood in for on this one: processes whose CPUID hides instruction sets.

ONNX Runtime picks its kernels by CPUID, so the int8 model's numbers and speed on an
AVX2-only CPU, or on AVX-512 without VNNI, can be measured on a newer CPU by running the
process under ``cpuid_mask.c`` (a preloaded library that makes CPUID fault and answers it
with the profile's bits cleared; /proc/cpuinfo is masked to match). The kernels run
natively: their numbers are those of the older CPU, their speed that of this CPU's cores
running the older kernels.

Needs Linux on x86-64, a C compiler and CPUID faulting (Intel CPUs since Ivy Bridge, and
hypervisors that pass it on): :func:`unavailable` says why not otherwise. Only for
measurements (``make validate-int8``, the benchmarks); no test depends on it.

    python -m localservices.cpus --unavailable        # prints why not, or nothing
    python -m localservices.cpus avx2 COMMAND...      # runs COMMAND as on an AVX2-only CPU
"""
from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys

from core.project import project_path

__all__ = ["PROFILES", "unavailable", "shim_path", "environment", "main"]

#: Profile name -> what it stands for.
PROFILES = {
    "avx512-vnni": "AVX-512 with VNNI, no AMX (Cascade Lake, Ice Lake, Zen 4)",
    "avx512": "AVX-512 without VNNI (Skylake-SP)",
    "avx2": "AVX2 only (Haswell to Zen 3)",
}
_SOURCE = project_path("localservices", "cpuid_mask.c")
_BUILT = project_path(".tools", "cpuid_mask", "libcpuidmask.so")
_REFUSED = 97  # cpuid_mask.c's exit status when CPUID faulting is refused


def shim_path() -> str:
    """The compiled shim, built again whenever its source is newer."""
    if not os.path.exists(_BUILT) or os.path.getmtime(_BUILT) < os.path.getmtime(_SOURCE):
        compiler = shutil.which("cc") or shutil.which("gcc")
        if compiler is None:
            raise RuntimeError("no C compiler (cc or gcc) to build the CPUID shim")
        os.makedirs(os.path.dirname(_BUILT), exist_ok=True)
        subprocess.run([compiler, "-O2", "-shared", "-fPIC", "-o", _BUILT, _SOURCE, "-ldl"], check=True)
    return _BUILT


def environment(profile: str, base: dict | None = None) -> dict:
    """``base`` (default: this process's environment) with the shim preloaded for ``profile``."""
    if profile not in PROFILES:
        raise ValueError(f"`profile` must be one of {', '.join(PROFILES)}, got {profile!r}")
    env = dict(os.environ if base is None else base)
    env["LD_PRELOAD"] = " ".join(filter(None, [shim_path(), env.get("LD_PRELOAD", "")]))
    env["CPUID_PROFILE"] = profile
    return env


def unavailable() -> str | None:
    """Why processes cannot run under a profile here, or ``None`` when they can."""
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        return f"needs Linux on x86-64, this is {platform.system()} on {platform.machine()}"
    try:
        env = environment("avx2")
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        return f"the CPUID shim does not build: {exc}"
    result = subprocess.run(["true"], env=env, capture_output=True, text=True)
    if result.returncode == _REFUSED:
        return "this CPU or hypervisor does not offer CPUID faulting"
    if result.returncode:
        return f"a process under the shim exits {result.returncode}: {result.stderr.strip()}"
    return None


def main(argv=None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["--unavailable"]:
        print(unavailable() or "")
        return 0
    if len(args) < 2 or args[0] not in PROFILES:
        print(f"usage: python -m localservices.cpus --unavailable | {{{','.join(PROFILES)}}} COMMAND...",
              file=sys.stderr)
        return 2
    return subprocess.run(args[1:], env=environment(args[0])).returncode


if __name__ == "__main__":
    sys.exit(main())
