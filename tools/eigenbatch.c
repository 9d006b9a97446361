/*
 * eigenbatch: the single binary; dispatches to a sub-command (see eb_cli.c).
 *
 * Before anything else it tunes the math libraries' process-wide settings, which they read only
 * when they load, so it sets them in the environment and re-executes itself once:
 *  - OpenBLAS 0.3.21 (Debian 12) does not know recent AMD cores with AVX-512 and falls back to its
 *    AVX2 kernels; its SkylakeX kernels run there and are about 1.7x faster for our GEMM shapes.
 *  - OpenMP threads that spin while OpenBLAS's own threads run steal their cores; PASSIVE waits.
 * Either variable already set in the environment is left alone (this is the user's choice);
 * EB_NO_REEXEC=1 disables the whole step.
 */
#include <cblas.h>
#include <cpuid.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "eb_cli.h"

#define EB_REEXEC_MARK "EB_REEXECED"

/* 1 when the CPU and the OS support AVX-512 F, DQ, BW and VL (cpuid leaf 7; XCR0 opmask and
 * ZMM state enabled). */
static int s_cpu_has_avx512(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_OSXSAVE))
        return 0;
    unsigned xcr0_lo, xcr0_hi;
    __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    const unsigned zmm_state = 0xe6; /* SSE, AVX, opmask, ZMM hi256, hi16 ZMM */
    if ((xcr0_lo & zmm_state) != zmm_state)
        return 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
        return 0;
    const unsigned need = bit_AVX512F | bit_AVX512DQ | bit_AVX512BW | bit_AVX512VL;
    return (b & need) == need;
}

/* 1 when OpenBLAS picked a generic AVX2 kernel set on a CPU that has AVX-512. */
static int s_blas_underuses_cpu(void)
{
    if (getenv("OPENBLAS_CORETYPE") || !s_cpu_has_avx512())
        return 0;
    const char *core = openblas_get_corename();
    return core && (!strcasecmp(core, "haswell") || !strcasecmp(core, "zen"));
}

static void s_tune_and_reexec(char **argv)
{
    if (getenv("EB_NO_REEXEC") || getenv(EB_REEXEC_MARK))
        return;
    int change = 0;
    if (s_blas_underuses_cpu()) {
        setenv("OPENBLAS_CORETYPE", "SKYLAKEX", 1);
        change = 1;
    }
    if (!getenv("OMP_WAIT_POLICY")) {
        setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
        change = 1;
    }
    if (!change)
        return;
    setenv(EB_REEXEC_MARK, "1", 1);
    execv("/proc/self/exe", argv);
    /* exec failed: carry on with the libraries as loaded. */
}

int main(int argc, char **argv)
{
    s_tune_and_reexec(argv);
    return eb_cli_main(argc - 1, argv + 1);
}
