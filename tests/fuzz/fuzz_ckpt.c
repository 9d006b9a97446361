/*
 * fuzz_ckpt: libFuzzer harness of the checkpoint readers: the manifest (rt_ckpt_verify,
 * rt_ckpt_manifest_u64) and the coordinator's files (server_ckpt_coord_read: coord.json and
 * schedule.bin), as a resumed run reads them (server_ckpt_check). The input is three frames
 * (fuzz_split): MANIFEST.json, coord.json, schedule.bin, written into a directory in memory for
 * each run, so that the manifest's sizes and checksums can match the files beside it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_util.h"
#include "rt_ckpt.h"
#include "rt_err.h"
#include "server_ckpt.h"

#define S_FILES 3 /* frames of an input: the files below */

static const char *const s_names[S_FILES] = {RT_CKPT_MANIFEST, SERVER_CKPT_COORD,
                                             SERVER_CKPT_SCHED};
static char s_dir[FUZZ_PATH_MAX]; /* the checkpoint directory, made once */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Remove the directory at exit (its files first). */
static void s_cleanup(void)
{
    char path[2 * FUZZ_PATH_MAX];
    for (int i = 0; i < S_FILES; i++) {
        snprintf(path, sizeof path, "%s/%s", s_dir, s_names[i]);
        unlink(path);
    }
    rmdir(s_dir);
}

/* Write the frames as the checkpoint's files. */
static void s_write(const uint8_t *const *parts, const size_t *sizes, int n)
{
    if (!s_dir[0]) {
        snprintf(s_dir, sizeof s_dir, "/dev/shm/eb-fuzz-ckpt-XXXXXX");
        if (!mkdtemp(s_dir)) {
            snprintf(s_dir, sizeof s_dir, "/tmp/eb-fuzz-ckpt-XXXXXX");
            if (!mkdtemp(s_dir))
                abort();
        }
        atexit(s_cleanup);
    }
    for (int i = 0; i < S_FILES; i++) {
        char path[2 * FUZZ_PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", s_dir, s_names[i]);
        unlink(path);
        if (i >= n)
            continue; /* a missing file is an input too */
        FILE *f = fopen(path, "wb");
        if (!f || (sizes[i] && fwrite(parts[i], 1, sizes[i], f) != sizes[i]) || fclose(f))
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *parts[S_FILES];
    size_t sizes[S_FILES];
    int n = fuzz_split(data, size, S_FILES, parts, sizes);
    s_write(parts, sizes, n);
    json_t *m = NULL;
    if (rt_ckpt_verify(s_dir, NULL, &m) == RT_OK) {
        uint64_t v;
        (void)rt_ckpt_manifest_u64(m, s_dir, "epoch", &v);
        (void)rt_ckpt_manifest_u64(m, s_dir, "step", &v);
        json_decref(m);
    }
    struct server_ckpt_coord c;
    if (server_ckpt_coord_read(s_dir, &c) == RT_OK) {
        uint64_t epoch = 0, step = 0;
        (void)server_ckpt_check(s_dir, SERVER_CKPT_COORD, c.n_shards, c.n_params, c.n_buffers,
                                c.model, &epoch, &step);
    }
    return 0;
}
