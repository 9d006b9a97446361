/*
 * nn_cuda_blas: cuBLAS, opened when the CUDA backend first starts (dlopen), not when the program
 * does. Loading libcublas and the libcublasLt it needs costs about 210 MiB of resident memory and
 * 0.1 s in any process that links them (a program that only links libcublasLt: 211 MiB maxrss),
 * which every process of a CUDA build would otherwise pay whether it uses a GPU or not: the
 * shards, the eigen service on a CPU, `eigenbatch status` as a healthcheck. cuDNN and NCCL stay
 * linked (a few MiB each).
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>

#include "nn_cuda.h"

#define S_STR_(x) #x
#define S_STR(x) S_STR_(x)

static struct nn_cublas s_api;                             /* the entry points, once opened */
static int s_state;                                        /* 0 not tried, 1 open, -1 failed */
static char s_why[NN_CUDA_WHY_MAX];                        /* why it failed */
static pthread_mutex_t s_lock = PTHREAD_MUTEX_INITIALIZER; /* the first open */

/* Resolve `name` in lib into *slot; 0, or -1 with s_why filled. */
static int s_sym(void *lib, const char *file, const char *name, void **slot)
{
    dlerror();
    *slot = dlsym(lib, name);
    if (*slot)
        return 0;
    const char *e = dlerror();
    snprintf(s_why, sizeof s_why, "%s has no %s (%s)", file, name, e ? e : "null symbol");
    return -1;
}

/* Open the library of this build's major version (the unversioned name as a fallback) and
 * resolve every entry point; 0, or -1 with s_why filled. */
static int s_open(void)
{
    static const char *const files[] = {"libcublas.so." S_STR(CUBLAS_VER_MAJOR), "libcublas.so"};
    void *lib = NULL;
    const char *file = files[0];
    for (size_t i = 0; i < sizeof files / sizeof files[0] && !lib; i++)
        if ((lib = dlopen(files[i], RTLD_NOW | RTLD_LOCAL)))
            file = files[i];
    if (!lib) {
        const char *e = dlerror();
        snprintf(s_why, sizeof s_why,
                 "CUDA was asked for but cuBLAS cannot be loaded (%s): install the CUDA %d "
                 "libraries or put them on LD_LIBRARY_PATH",
                 e ? e : files[0], CUBLAS_VER_MAJOR);
        return -1;
    }
    /* the _v2 names are what cublas_v2.h maps cublasCreate and the others to */
    if (s_sym(lib, file, "cublasCreate_v2", (void **)&s_api.create) ||
        s_sym(lib, file, "cublasDestroy_v2", (void **)&s_api.destroy) ||
        s_sym(lib, file, "cublasSetStream_v2", (void **)&s_api.set_stream) ||
        s_sym(lib, file, "cublasSgemm_v2", (void **)&s_api.sgemm) ||
        s_sym(lib, file, "cublasGetStatusString", (void **)&s_api.status_string)) {
        dlclose(lib);
        return -1;
    }
    return 0; /* the library stays open for the life of the process */
}

const struct nn_cublas *nn_cublas_open(char *why, size_t why_len)
{
    pthread_mutex_lock(&s_lock);
    if (!s_state)
        s_state = s_open() ? -1 : 1;
    int state = s_state;
    pthread_mutex_unlock(&s_lock);
    if (state < 0) {
        if (why && why_len)
            snprintf(why, why_len, "%s", s_why);
        return NULL;
    }
    return &s_api;
}

const char *nn_cublas_status(cublasStatus_t s)
{
    static __thread char buf[32];
    const struct nn_cublas *b = nn_cublas_open(NULL, 0);
    if (b)
        return b->status_string(s);
    snprintf(buf, sizeof buf, "cuBLAS status %d", (int)s);
    return buf;
}

extern "C" int nn_cuda_libs_open(char *why, size_t why_len)
{
    return nn_cublas_open(why, why_len) ? 0 : -1;
}
