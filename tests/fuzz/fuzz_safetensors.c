/*
 * fuzz_safetensors: libFuzzer harness of the safetensors reader (rt_st_open and the accessors).
 * The input is the whole file, put in an in-memory file (memfd) that rt_st_open maps by path.
 * Every listed tensor is looked up by name and its bytes read (touching all of them, so a
 * descriptor pointing outside the mapping is caught); F32 and I32 tensors are copied out with
 * rt_st_read as the loaders do.
 */
#include <stdint.h>
#include <stdlib.h>

#include "fuzz_util.h"
#include "rt_err.h"
#include "rt_safetensors.h"

#define S_COPY_MAX (1u << 20) /* largest tensor copied out, bytes */

static volatile unsigned s_sink; /* keeps the byte reads from being optimised away */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t out[S_COPY_MAX];
    char path[FUZZ_PATH_MAX];
    int fd = fuzz_memfd(path);
    if (fuzz_fill(fd, data, size))
        abort();
    rt_st_t *st = NULL;
    if (rt_st_open(path, &st))
        return 0;
    unsigned sum = 0;
    for (int i = 0; i < rt_st_count(st); i++) {
        const struct rt_st_info *t = rt_st_at(st, i);
        if (rt_st_find(st, t->name) != t)
            abort();
        const uint8_t *p = t->data;
        for (size_t k = 0; k < t->nbytes; k++)
            sum += p[k];
        if ((t->dtype == RT_ST_F32 || t->dtype == RT_ST_I32) && t->nbytes <= S_COPY_MAX)
            if (rt_st_read(st, t->name, t->dtype, t->ndim, t->shape, 0, out))
                abort(); /* a listed tensor with its own dtype and shape must read */
    }
    (void)rt_st_meta(st, "format");
    (void)rt_st_path(st);
    rt_st_close(&st);
    rt_st_close(&st);
    s_sink = sum;
    return 0;
}
