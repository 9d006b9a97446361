/*
 * eigenbatch: the single binary; dispatches to a sub-command (see eb_cli.c).
 *
 * Before anything else it tunes the math libraries' process-wide settings, which they read only
 * when they load, so it sets them in the environment and re-executes itself once:
 *  - OpenBLAS 0.3.21 (Debian 12) does not know recent AMD cores with AVX-512 and falls back to its
 *    AVX2 kernels; its SkylakeX kernels run there and are about 1.7x faster for our GEMM shapes.
 *  - OpenMP threads that spin while OpenBLAS's own threads run steal their cores; PASSIVE waits.
 * Either variable set by the user is left alone; EB_NO_REEXEC=1 disables the whole step.
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "eb_cli.h"

#define EB_REEXEC_MARK "EB_REEXECED"

/* 1 when OpenBLAS picked a generic AVX2 kernel set on a CPU that has AVX-512. */
static int s_blas_underuses_cpu(void)
{
    if (getenv("OPENBLAS_CORETYPE"))
        return 0;
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw") ||
        !__builtin_cpu_supports("avx512vl") || !__builtin_cpu_supports("avx512dq"))
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
