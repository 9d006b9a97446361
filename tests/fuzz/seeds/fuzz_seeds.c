/*
 * fuzz_seeds: writes the seed corpora of the libFuzzer harnesses (tests/fuzz/corpus/NAME/) with
 * the project's own encoders, so that every seed is a valid input the readers accept:
 *   wire         one encoded message of every type, payload frames sealed (CRC32 or Fletcher64)
 *   status       a coordinator's STATUS reply (workers, shards, decisions)
 *   safetensors  small files from rt_st_write (F32 and I32 tensors, a scalar, metadata)
 *   datum        raw, float and JPEG-encoded Datum records (rt_datum_pack, rt_jpeg_encode;
 *                a progressive and a CMYK JPEG through TurboJPEG)
 *   config       YAML texts in the styles rt_config reads (nested, flow, dotted, lists, nulls)
 *   ckpt         a coordinator's checkpoint (coord.json, schedule.bin) and its manifest
 * Multi-frame inputs use fuzz_util.h's layout. Usage: eb_fuzz_seeds CORPUS_DIR
 */
#include <stdio.h>
#include <stdlib.h>
#include <turbojpeg.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../fuzz_util.h"
#include "rt_ckpt.h"
#include "rt_datum.h"
#include "rt_err.h"
#include "rt_jpeg.h"
#include "rt_safetensors.h"
#include "rt_wire.h"
#include "rt_wire_status.h"
#include "server_ckpt.h"
#include "server_sched.h"

#define S_PATH 512  /* bytes of a path */
#define S_FLOATS 16 /* floats in a payload frame of a seed */
#define S_SIDE 8    /* side of the seed images */
#define S_BUF 65536 /* bytes of an encoded seed */

static char s_root[S_PATH]; /* the corpus directory */

/* A fresh file corpus/<name>/<file>, or exit. */
static FILE *s_open(const char *name, const char *file)
{
    char path[2 * S_PATH];
    snprintf(path, sizeof path, "%s/%s", s_root, name);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/%s/%s", s_root, name, file);
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        exit(1);
    }
    return f;
}

static void s_check(int rc, const char *what)
{
    if (rc) {
        fprintf(stderr, "fuzz_seeds: %s: %s\n", what, rt_err_msg());
        exit(1);
    }
}

/* One message of type t with the fields its type uses; payload frames for the tensor types. */
static void s_wire_one(enum rt_wire_type t)
{
    struct rt_wire_msg m;
    rt_wire_msg_init(&m, t, 1, "worker-1");
    float p[S_FLOATS], b[S_FLOATS / 2];
    for (int i = 0; i < S_FLOATS; i++)
        p[i] = 0.25f * (float)i - 1.0f;
    for (int i = 0; i < S_FLOATS / 2; i++)
        b[i] = (float)i;
    int payload = t == RT_WIRE_PUSH || t == RT_WIRE_INIT || t == RT_WIRE_WEIGHTS;
    m.step = 7;
    m.sched_version = 2;
    m.n_params = 1024;
    m.n_buffers = 64;
    if (payload) {
        m.checksum = t == RT_WIRE_PUSH ? RT_WIRE_CK_FLETCHER64 : RT_WIRE_CK_CRC32;
        m.has_params = 1;
        m.params = (struct rt_wire_span){.offset = 32, .count = S_FLOATS};
        m.has_buffers = t != RT_WIRE_PUSH;
        m.buffers = (struct rt_wire_span){.offset = 8, .count = S_FLOATS / 2};
        m.samples = 32;
        m.loss = 2.3f;
        m.correct = 3;
        m.lr = 0.1f;
        rt_wire_seal(&m, p, m.has_buffers ? b : NULL);
    }
    if (t == RT_WIRE_REGISTER)
        m.weight = 1.5;
    if (t == RT_WIRE_WELCOME) {
        m.n_workers = 4;
        m.n_shards = 2;
        m.heartbeat_ms = 500;
    }
    if (t == RT_WIRE_ACK) {
        m.params_range = (struct rt_wire_span){.offset = 0, .count = 512};
        m.buffers_range = (struct rt_wire_span){.offset = 0, .count = 32};
    }
    if (t == RT_WIRE_SCHED) {
        m.sched = (struct rt_wire_sched){.epoch = 1,
                                         .epoch_offset = 256,
                                         .batch = 128,
                                         .samples = 128,
                                         .lr = 0.1f,
                                         .gamma = 0.2f,
                                         .share_offset = 32,
                                         .share_count = 32,
                                         .members_len = 1};
        m.sched.members[0] = 0x0f;
    }
    if (t == RT_WIRE_ERROR) {
        m.err_code = -3;
        snprintf(m.text, sizeof m.text, "stale schedule");
    }
    if (t == RT_WIRE_DECISION || t == RT_WIRE_PUBLISH) {
        struct rt_wire_decision *d = &m.decision;
        *d = (struct rt_wire_decision){.seq = 3,
                                       .snapshot_version = 40,
                                       .epoch = 2,
                                       .batch = 256,
                                       .lr_base = 0.2,
                                       .gamma_base = 0.1,
                                       .lambda = 12.5,
                                       .lr = 0.2,
                                       .gamma = 0.1,
                                       .apply_step = 50,
                                       .sched_version = 2,
                                       .iterations = 20,
                                       .seconds = 1.5,
                                       .has_abs = 1};
        snprintf(d->reason, sizeof d->reason, "lambda fell below half the reference");
        d->abs = (struct rt_wire_abs){.batch = 256,
                                      .lr_base = 0.2,
                                      .lambda_ref = 30,
                                      .has_ref = 1,
                                      .measuring = 1,
                                      .increases = 1,
                                      .last_epoch = 2};
    }
    uint8_t buf[RT_WIRE_MAX_HEADER];
    size_t len = 0;
    s_check(rt_wire_encode(&m, buf, sizeof buf, &len), "rt_wire_encode");
    char file[64];
    snprintf(file, sizeof file, "seed-%s", rt_wire_type_name(t));
    FILE *f = s_open("wire", file);
    if (payload) {
        fuzz_join(f, buf, len);
        if (m.has_buffers) {
            fuzz_join(f, p, sizeof p);
            fwrite(b, 1, sizeof b, f);
        } else {
            fwrite(p, 1, sizeof p, f);
        }
    } else {
        fwrite(buf, 1, len, f);
    }
    fclose(f);
}

/* Safetensors files: written by rt_st_write, then copied into the corpus. */
static void s_safetensors(void)
{
    float w[2 * 3] = {1, 2, 3, 4, 5, 6}, s = 0.5f;
    int32_t ids[4] = {7, -1, 0, 42};
    struct rt_st_tensor t[3] = {
        {.name = "fc.weight", .ndim = 2, .shape = {2, 3}, .data = w},
        {.name = "steps", .dtype = RT_ST_I32, .ndim = 1, .shape = {4}, .data = ids},
        {.name = "scale", .ndim = 0, .data = &s},
    };
    const char *meta[] = {"format", "pt", "epoch", "3", NULL};
    char tmp[] = "/tmp/eb-fuzz-seed-XXXXXX";
    int fd = mkstemp(tmp);
    if (fd < 0)
        exit(1);
    close(fd);
    for (int k = 1; k <= 3; k++) {
        s_check(rt_st_write(tmp, t, k, k == 3 ? meta : NULL), "rt_st_write");
        uint8_t *data = NULL;
        size_t len = 0;
        s_check(rt_ckpt_read_file(tmp, S_BUF, &data, &len), "read back");
        char file[64];
        snprintf(file, sizeof file, "seed-%d-tensors.safetensors", k);
        FILE *f = s_open("safetensors", file);
        fwrite(data, 1, len, f);
        fclose(f);
        free(data);
    }
    unlink(tmp);
}

static void s_datum_write(const struct rt_datum *d, const char *file)
{
    uint8_t buf[S_BUF];
    size_t len = 0;
    s_check(rt_datum_pack(d, buf, sizeof buf, &len), "rt_datum_pack");
    FILE *f = s_open("datum", file);
    fwrite(buf, 1, len, f);
    fclose(f);
}

/* Raw, float and encoded records. */
static void s_datum(void)
{
    uint8_t px[3 * S_SIDE * S_SIDE];
    for (size_t i = 0; i < sizeof px; i++)
        px[i] = (uint8_t)(i * 37);
    float fl[S_SIDE * S_SIDE];
    for (int i = 0; i < S_SIDE * S_SIDE; i++)
        fl[i] = (float)i / 64.0f;
    struct rt_datum raw = {.kind = RT_DATUM_RAW,
                           .channels = 3,
                           .height = S_SIDE,
                           .width = S_SIDE,
                           .label = 4,
                           .data = px,
                           .data_len = sizeof px};
    s_datum_write(&raw, "seed-raw");
    struct rt_datum fd = {.kind = RT_DATUM_FLOAT,
                          .channels = 1,
                          .height = S_SIDE,
                          .width = S_SIDE,
                          .label = 1,
                          .float_data = fl,
                          .float_len = S_SIDE * S_SIDE};
    s_datum_write(&fd, "seed-float");
    rt_jpeg_t *j = rt_jpeg_new();
    const uint8_t *jpg = NULL;
    size_t jl = 0;
    for (int c = 1; c <= 3; c += 2) {
        s_check(!j || rt_jpeg_encode(j, px, S_SIDE, S_SIDE, c, RT_JPEG_QUALITY, &jpg, &jl),
                "rt_jpeg_encode");
        struct rt_datum enc = {.kind = RT_DATUM_ENCODED, .label = 9, .data = jpg, .data_len = jl};
        if (c == 3) { /* shape set, as our converter writes it */
            enc.channels = 3;
            enc.height = S_SIDE;
            enc.width = S_SIDE;
        }
        s_datum_write(&enc, c == 1 ? "seed-jpeg-grey" : "seed-jpeg-rgb");
    }
    rt_jpeg_destroy(&j);
    /* a progressive JPEG and a CMYK (YCCK) one: the decoder's other paths */
    static uint8_t cmyk[S_SIDE * S_SIDE * 4];
    for (size_t i = 0; i < sizeof cmyk; i++)
        cmyk[i] = (uint8_t)(i * 7 + i / 5);
    const struct {
        const uint8_t *px;
        int pf, sub, flags;
        const char *name;
    } kinds[] = {{px, TJPF_RGB, TJSAMP_420, TJFLAG_PROGRESSIVE, "seed-jpeg-progressive"},
                 {cmyk, TJPF_CMYK, TJSAMP_444, 0, "seed-jpeg-cmyk"}};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        tjhandle enc = tjInitCompress(); /* one per image: TurboJPEG 2.1 keeps a progressive
                                            scan script for the next call */
        unsigned char *buf = NULL;
        unsigned long len = 0;
        s_check(!enc || tjCompress2(enc, kinds[k].px, S_SIDE, 0, S_SIDE, kinds[k].pf, &buf, &len,
                                    kinds[k].sub, RT_JPEG_QUALITY, kinds[k].flags),
                "tjCompress2");
        struct rt_datum e = {.kind = RT_DATUM_ENCODED,
                             .label = 4,
                             .channels = 3,
                             .height = S_SIDE,
                             .width = S_SIDE,
                             .data = buf,
                             .data_len = len};
        s_datum_write(&e, kinds[k].name);
        tjFree(buf);
        tjDestroy(enc);
    }
}

/* YAML in the styles a config file uses. */
static void s_config(void)
{
    static const char *const texts[] = {
        "model:\n  name: cnn\ntrain: {epochs: 30, batch: 128}\n"
        "schedule.decay_epochs: [15, 25]\nschedule:\n  method: ABS\n  lr: 0.1\n",
        "# comment\ndata:\n  train: /data/train.lmdb\n  bgr: yes\nworkers: 4\n"
        "security:\n  key: ~\n  allowed: null\n",
        "train:\n  epochs: 2\n  lr: 1e-3\n  gamma: .inf\nlist:\n  - 1\n  - 2.5\n  - three\n"
        "quoted: \"a: b\"\nblock: |\n  two\n  lines\n",
        "a.b.c: 1\na:\n  b:\n    d: 2\n---\n",
        "",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        char file[32];
        snprintf(file, sizeof file, "seed-%zu.yaml", i);
        FILE *f = s_open("config", file);
        fputs(texts[i], f);
        fclose(f);
    }
}

/* A coordinator's checkpoint: coord.json and schedule.bin written by server_ckpt_coord_write,
 * the manifest by rt_ckpt_manifest_write; the three files joined (manifest first). */
static void s_ckpt(void)
{
    char dir[] = "/tmp/eb-fuzz-ckpt-seed-XXXXXX";
    if (!mkdtemp(dir))
        exit(1);
    struct server_sched_config sc;
    server_sched_config_default(&sc, SERVER_SCHED_ABS, 100, 6);
    server_sched_t *sched = server_sched_new(&sc);
    struct server_ckpt_coord *c = calloc(1, sizeof *c);
    if (!sched || !c)
        exit(1);
    *c = (struct server_ckpt_coord){.epoch = 3,
                                    .step = 120,
                                    .n_shards = 2,
                                    .n_params = 1024,
                                    .n_buffers = 64,
                                    .batch = 128,
                                    .lr = 0.1f,
                                    .sched_version = 1,
                                    .has_abs = 1};
    snprintf(c->model, sizeof c->model, "cnn");
    c->abs = (struct rt_wire_abs){.batch = 128,
                                  .lr_base = 0.1,
                                  .gamma_base = 0.2,
                                  .lambda_ref = 30.5,
                                  .has_ref = 1,
                                  .duration = 2,
                                  .measuring = 1,
                                  .last_epoch = 2};
    server_sched_get_state(sched, &c->sched);
    s_check(server_ckpt_coord_write(dir, c), "server_ckpt_coord_write");
    const char *files[] = {SERVER_CKPT_COORD, SERVER_CKPT_SCHED};
    json_t *meta = json_pack("{s:i, s:i, s:i, s:i, s:i, s:s}", "epoch", 3, "step", 120, "n_shards",
                             2, "n_params", 1024, "n_buffers", 64, "model", "cnn");
    s_check(rt_ckpt_manifest_write(dir, files, 2, meta), "rt_ckpt_manifest_write");
    json_decref(meta);
    FILE *f = s_open("ckpt", "seed-coord");
    const char *names[] = {RT_CKPT_MANIFEST, SERVER_CKPT_COORD, SERVER_CKPT_SCHED};
    for (int i = 0; i < 3; i++) {
        char path[S_PATH];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        uint8_t *data = NULL;
        size_t len = 0;
        s_check(rt_ckpt_read_file(path, S_BUF, &data, &len), "read back");
        if (i < 2)
            fuzz_join(f, data, len);
        else
            fwrite(data, 1, len, f);
        free(data);
        unlink(path);
    }
    fclose(f);
    rmdir(dir);
    free(c);
    server_sched_destroy(&sched);
}

/* A STATUS reply of a run with three workers (one evicted), two shards and two decisions. */
static void s_status(void)
{
    static struct rt_wire_status st;
    static uint8_t buf[RT_WIRE_STATUS_MAX];
    st = (struct rt_wire_status){.version = 42,
                                 .epoch = 3,
                                 .step = 42,
                                 .batch = 256,
                                 .lr = 0.2f,
                                 .sched_version = 2,
                                 .n_workers = 3,
                                 .n_shards = 2,
                                 .uptime_s = 61.5,
                                 .images_per_s = 900,
                                 .loss = 0.5f,
                                 .train_accuracy = 0.8f,
                                 .n_listed_workers = 3,
                                 .n_listed_shards = 2,
                                 .n_decisions = 2};
    for (int i = 0; i < 3; i++)
        st.workers[i] = (struct rt_wire_worker_status){
            .id = i, .share = i == 2 ? 0 : 0.5, .speed = 400.0 + i, .evicted = i == 2};
    snprintf(st.workers[0].name, sizeof st.workers[0].name, "gpu-host:1234");
    st.shards[1] = (struct rt_wire_shard_status){.shard = 1, .heard_age_s = 0.3};
    st.decisions[0] = (struct rt_wire_decision){
        .seq = 1, .epoch = 0, .batch = 256, .lambda = 3, .apply_step = 20, .sched_version = 1};
    st.decisions[1] = (struct rt_wire_decision){
        .seq = 2, .epoch = 1, .batch = 256, .verdict = RT_WIRE_VERDICT_NOCHANGE};
    snprintf(st.decisions[0].reason, sizeof st.decisions[0].reason, "first measurement");
    size_t len = 0;
    s_check(rt_wire_status_encode(&st, 0, "shard-0", buf, sizeof buf, &len),
            "rt_wire_status_encode");
    FILE *f = s_open("status", "seed-status");
    fwrite(buf, 1, len, f);
    fclose(f);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
        return 2;
    }
    snprintf(s_root, sizeof s_root, "%s", argv[1]);
    mkdir(s_root, 0755);
    for (int t = RT_WIRE_REGISTER; t <= RT_WIRE_TYPE_MAX; t++)
        s_wire_one((enum rt_wire_type)t);
    s_status();
    s_safetensors();
    s_datum();
    s_config();
    s_ckpt();
    return 0;
}
