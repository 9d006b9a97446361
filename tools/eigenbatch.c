/*
 * eigenbatch: the single binary; dispatches to a sub-command (see eb_cli.c).
 *
 * Before anything else it sets OMP_WAIT_POLICY=PASSIVE, when the environment does not choose a
 * policy, and re-executes itself once (libgomp reads the variable only when it loads): OpenMP
 * threads that spin between our parallel loops would otherwise steal the cores of OpenBLAS's own
 * threads, which made a 2-thread convolution step 25x slower on a busy 2-core machine. Likewise
 * it sets OPENBLAS_CORETYPE, when unset, on a processor OpenBLAS does not know and would run with
 * its generic SSE3 kernels (nn_gemm_better_core: AVX-512 or AVX2 kernels instead, 2-5x the GEMM
 * speed). EB_NO_REEXEC=1 disables the step.
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "eb_cli.h"
#include "nn_gemm.h"

#define EB_REEXEC_MARK "EB_REEXECED"

static void s_tune_and_reexec(char **argv)
{
    if (getenv("EB_NO_REEXEC") || getenv(EB_REEXEC_MARK))
        return;
    int changed = 0;
    if (!getenv("OMP_WAIT_POLICY")) {
        setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
        changed = 1;
    }
    const char *core = getenv("OPENBLAS_CORETYPE") ? NULL : nn_gemm_better_core();
    if (core) {
        setenv("OPENBLAS_CORETYPE", core, 1);
        changed = 1;
    }
    if (!changed)
        return;
    setenv(EB_REEXEC_MARK, "1", 1);
    execv("/proc/self/exe", argv);
    /* exec failed: carry on as loaded. */
}

int main(int argc, char **argv)
{
    s_tune_and_reexec(argv);
    return eb_cli_main(argc - 1, argv + 1);
}
