/*
 * cpuid_mask: run a process as if its x86 CPU lacked some instruction sets.
 *
 * Loaded with LD_PRELOAD and CPUID_PROFILE set to avx2, avx512 or avx512-vnni, it asks the
 * kernel to make the CPUID instruction fault in this process (arch_prctl ARCH_SET_CPUID,
 * where the CPU and hypervisor offer CPUID faulting) and answers each CPUID itself: the
 * real answer with the profile's feature bits cleared. Libraries that choose kernels by
 * CPUID (ONNX Runtime's MLAS, numpy) then run the kernels of that older CPU, natively, on
 * this one. Reads of /proc/cpuinfo get the same flags removed and the model name marked,
 * so that what the process reports about its CPU matches what its libraries saw.
 *
 * Used by the benchmarks and `make validate-int8` (localservices/cpus.py), never by tilescan
 * itself. If CPUID faulting is refused, the process exits with status 97 rather than run
 * unmasked under a profile's name. Node (the tests' Azurite emulator) is left unmasked: it
 * installs its own SIGSEGV handler, under which a faulting CPUID would kill it, and its
 * instruction sets have no bearing on a model's numbers.
 */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <cpuid.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#define FAULTING_REFUSED 97

/* Bits cleared: leaf 1 ECX; leaf 7.0 EBX, ECX, EDX; leaf 7.1 EAX, EDX. */
enum { L1_ECX, L7_EBX, L7_ECX, L7_EDX, L71_EAX, L71_EDX, MASKS };
static uint32_t mask[MASKS];
static const char *profile;
/* /proc/cpuinfo flags removed: exact names, or every name starting with a prefix ending in '*'. */
static const char *const *hidden_flags;

#define BIT(n) (1u << (n))
static const uint32_t AVX512_CORE = BIT(16) | BIT(17) | BIT(28) | BIT(30) | BIT(31); /* F DQ CD BW VL */
static const uint32_t AVX512_OTHER_EBX = BIT(21) | BIT(26) | BIT(27);                /* IFMA PF ER */
static const uint32_t AVX512_OTHER_ECX = BIT(1) | BIT(6) | BIT(12) | BIT(14);        /* VBMI VBMI2 BITALG VPOPCNTDQ */
static const uint32_t AVX512_VNNI = BIT(11);
static const uint32_t AVX512_OTHER_EDX = BIT(2) | BIT(3) | BIT(8) | BIT(23);         /* 4VNNIW 4FMAPS VP2INTERSECT FP16 */
static const uint32_t AMX = BIT(22) | BIT(24) | BIT(25);                              /* BF16 TILE INT8 */
static const uint32_t AVX_VNNI = BIT(4), AVX512_BF16 = BIT(5), AVX_IFMA = BIT(23);    /* leaf 7.1 EAX */
static const uint32_t AVX_VNNI_INT8 = BIT(4), AVX_NE_CONVERT = BIT(5), AVX_VNNI_INT16 = BIT(10); /* 7.1 EDX */

static const char *const HIDE_AVX2[] = {"avx512*", "avx_vnni*", "avx_ifma", "avx_ne_convert", "amx_*", NULL};
static const char *const HIDE_AVX512[] = {"avx512ifma", "avx512vbmi", "avx512_vbmi2", "avx512_bitalg",
                                          "avx512_vpopcntdq", "avx512_vnni", "avx512_bf16", "avx512_fp16",
                                          "avx512_vp2intersect", "avx512pf", "avx512er", "avx512_4*",
                                          "avx_vnni*", "avx_ifma", "avx_ne_convert", "amx_*", NULL};
static const char *const HIDE_AVX512_VNNI[] = {"avx_vnni*", "amx_*", NULL};

static void real_cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4]) {
    syscall(SYS_arch_prctl, ARCH_SET_CPUID, 1);
    __cpuid_count(leaf, sub, r[0], r[1], r[2], r[3]);
    syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0);
}

static void on_fault(int sig, siginfo_t *info, void *context) {
    (void)info;
    greg_t *reg = ((ucontext_t *)context)->uc_mcontext.gregs;
    const unsigned char *ip = (const unsigned char *)reg[REG_RIP];
    if (ip[0] != 0x0f || ip[1] != 0xa2) { /* not CPUID: a real fault, which must kill as it would have */
        signal(sig, SIG_DFL);
        return;
    }
    uint32_t leaf = (uint32_t)reg[REG_RAX], sub = (uint32_t)reg[REG_RCX], r[4];
    real_cpuid(leaf, sub, r);
    if (leaf == 1) r[2] &= ~mask[L1_ECX];
    if (leaf == 7 && sub == 0) { r[1] &= ~mask[L7_EBX]; r[2] &= ~mask[L7_ECX]; r[3] &= ~mask[L7_EDX]; }
    if (leaf == 7 && sub == 1) { r[0] &= ~mask[L71_EAX]; r[3] &= ~mask[L71_EDX]; }
    reg[REG_RAX] = r[0]; reg[REG_RBX] = r[1]; reg[REG_RCX] = r[2]; reg[REG_RDX] = r[3];
    reg[REG_RIP] += 2;
}

static int hidden(const char *flag, size_t length) {
    for (const char *const *h = hidden_flags; h && *h; h++) {
        size_t n = strlen(*h);
        if ((*h)[n - 1] == '*' ? (length >= n - 1 && !strncmp(flag, *h, n - 1))
                               : (length == n && !strncmp(flag, *h, n)))
            return 1;
    }
    return 0;
}

/* /proc/cpuinfo with the profile's flags removed, in a memory file; -1 if it cannot be made. */
static int masked_cpuinfo(int real) {
    char *text = NULL;
    size_t size = 0, used = 0;
    for (;;) {
        if (used + 65536 > size && !(text = realloc(text, size = 2 * size + 65536))) return -1;
        ssize_t got = read(real, text + used, size - used);
        if (got < 0) { free(text); return -1; }
        if (got == 0) break;
        used += (size_t)got;
    }
    int out = memfd_create("cpuinfo", 0);
    if (out < 0) { free(text); return -1; }
    FILE *sink = fdopen(dup(out), "w");
    for (size_t start = 0; start < used;) {
        size_t end = start;
        while (end < used && text[end] != '\n') end++;
        const char *line = text + start;
        size_t length = end - start;
        if (!strncmp(line, "flags", 5) && memchr(line, ':', length)) {
            const char *colon = memchr(line, ':', length);
            fwrite(line, 1, (size_t)(colon - line) + 1, sink);
            for (const char *p = colon + 1; p < line + length;) {
                while (p < line + length && *p == ' ') p++;
                const char *q = p;
                while (q < line + length && *q != ' ') q++;
                if (q > p && !hidden(p, (size_t)(q - p))) fprintf(sink, " %.*s", (int)(q - p), p);
                p = q;
            }
        } else if (!strncmp(line, "model name", 10)) {
            fprintf(sink, "%.*s [CPUID masked: %s]", (int)length, line, profile);
        } else {
            fwrite(line, 1, length, sink);
        }
        if (end < used) fputc('\n', sink);
        start = end + 1;
    }
    fclose(sink);
    free(text);
    lseek(out, 0, SEEK_SET);
    return out;
}

static int redirected(const char *path, int fd) {
    if (fd < 0 || !profile || !path || strcmp(path, "/proc/cpuinfo")) return fd;
    int masked = masked_cpuinfo(fd);
    if (masked < 0) return fd;
    close(fd);
    return masked;
}

#define OPEN_WRAPPER(name, ...)                                                           \
    int name(__VA_ARGS__, int flags, ...) {                                               \
        static int (*real)();                                                             \
        if (!real) real = (int (*)())dlsym(RTLD_NEXT, #name);                             \
        mode_t mode = 0;                                                                  \
        if (flags & (O_CREAT | __O_TMPFILE)) {                                            \
            va_list args;                                                                 \
            va_start(args, flags);                                                        \
            mode = va_arg(args, mode_t);                                                  \
            va_end(args);                                                                 \
        }
OPEN_WRAPPER(open, const char *path)
    return redirected(path, real(path, flags, mode));
}
OPEN_WRAPPER(open64, const char *path)
    return redirected(path, real(path, flags, mode));
}
OPEN_WRAPPER(openat, int dir, const char *path)
    return redirected(path, real(dir, path, flags, mode));
}
OPEN_WRAPPER(openat64, int dir, const char *path)
    return redirected(path, real(dir, path, flags, mode));
}

static int is_node(void) {
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return 0;
    exe[n] = 0;
    const char *name = strrchr(exe, '/');
    return !strcmp(name ? name + 1 : exe, "node");
}

__attribute__((constructor)) static void start(void) {
    profile = getenv("CPUID_PROFILE");
    if (!profile || !*profile || is_node()) {
        profile = NULL;
        return;
    }
    const uint32_t vnni_like_71_eax = AVX_VNNI | AVX512_BF16 | AVX_IFMA;
    const uint32_t vnni_like_71_edx = AVX_VNNI_INT8 | AVX_NE_CONVERT | AVX_VNNI_INT16;
    if (!strcmp(profile, "avx2")) {
        mask[L7_EBX] = AVX512_CORE | AVX512_OTHER_EBX;
        mask[L7_ECX] = AVX512_OTHER_ECX | AVX512_VNNI;
        mask[L7_EDX] = AVX512_OTHER_EDX | AMX;
        mask[L71_EAX] = vnni_like_71_eax;
        mask[L71_EDX] = vnni_like_71_edx;
        hidden_flags = HIDE_AVX2;
    } else if (!strcmp(profile, "avx512")) {
        mask[L7_EBX] = AVX512_OTHER_EBX;
        mask[L7_ECX] = AVX512_OTHER_ECX | AVX512_VNNI;
        mask[L7_EDX] = AVX512_OTHER_EDX | AMX;
        mask[L71_EAX] = vnni_like_71_eax;
        mask[L71_EDX] = vnni_like_71_edx;
        hidden_flags = HIDE_AVX512;
    } else if (!strcmp(profile, "avx512-vnni")) {
        mask[L7_EDX] = AMX;
        mask[L71_EAX] = AVX_VNNI;
        mask[L71_EDX] = vnni_like_71_edx;
        hidden_flags = HIDE_AVX512_VNNI;
    } else {
        fprintf(stderr, "cpuid_mask: unknown CPUID_PROFILE %s (avx2, avx512, avx512-vnni)\n", profile);
        _exit(FAULTING_REFUSED);
    }
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = on_fault;
    action.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigaction(SIGSEGV, &action, NULL);
    if (syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0) != 0) {
        fprintf(stderr, "cpuid_mask: this CPU or hypervisor does not offer CPUID faulting\n");
        _exit(FAULTING_REFUSED);
    }
}
