/*
 * server_sched_state: the byte form of a schedule's state (server_sched_state_encode / _decode),
 * little-endian, versioned by a magic number: what the coordinator's checkpoint stores as
 * schedule.bin (server_sched.h).
 */
#include "server_sched.h"

#include <string.h>

#include "rt_err.h"

#define SCHED_MAGIC 0x43534245u /* "EBSC" little-endian */

/* ---- byte form ------------------------------------------------------------------------------- */

#define SCHED_HEADER_BYTES (4 + 4 + 4 + 8 + 8)
#define SCHED_CONFIG_BYTES                                                                         \
    (4 + 8 + 4 + 8 + 8 + 8 + 4 + 4 + 8 * 5 + 4 + 4 + 4 * SERVER_SCHED_MAX_DECAY + 8 * 3 + 4 + 4 + 4)
#define SCHED_DECISION_BYTES (8 + 8 + 4 + 8 + 8 * 3 + 8 + 4)

struct s_buf {
    uint8_t *p;       /* write cursor (encode) */
    const uint8_t *q; /* read cursor (decode) */
    size_t left;      /* bytes left */
};

static void s_put(struct s_buf *b, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        b->p[i] = (uint8_t)(v >> (8 * i));
    b->p += bytes;
    b->left -= (size_t)bytes;
}

static void s_put_f64(struct s_buf *b, double x)
{
    uint64_t v;
    memcpy(&v, &x, sizeof v);
    s_put(b, v, 8);
}

static uint64_t s_get(struct s_buf *b, int bytes)
{
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++)
        v |= (uint64_t)b->q[i] << (8 * i);
    b->q += bytes;
    b->left -= (size_t)bytes;
    return v;
}

static double s_get_f64(struct s_buf *b)
{
    uint64_t v = s_get(b, 8);
    double x;
    memcpy(&x, &v, sizeof x);
    return x;
}

size_t server_sched_state_encoded_size(const struct server_sched_state *st)
{
    uint32_t n =
        st->n_decisions > SERVER_SCHED_MAX_DECISIONS ? SERVER_SCHED_MAX_DECISIONS : st->n_decisions;
    return SCHED_HEADER_BYTES + SCHED_CONFIG_BYTES + (size_t)n * SCHED_DECISION_BYTES;
}

int server_sched_state_encode(const struct server_sched_state *st, uint8_t *buf, size_t cap,
                              size_t *len)
{
    int rc = server_sched_state_check(st);
    if (rc != RT_OK)
        return rc;
    size_t need = server_sched_state_encoded_size(st);
    if (cap < need)
        return rt_err_set(RT_ERR_SIZE, "schedule state: %zu bytes needed, buffer has %zu", need,
                          cap);
    struct s_buf b = {.p = buf, .left = cap};
    const struct server_sched_config *c = &st->config;
    s_put(&b, SCHED_MAGIC, 4);
    s_put(&b, st->format, 4);
    s_put(&b, st->n_decisions, 4);
    s_put(&b, st->last_seq, 8);
    s_put(&b, st->has_seq, 8);
    s_put(&b, (uint32_t)c->method, 4);
    s_put(&b, (uint64_t)c->dataset_size, 8);
    s_put(&b, (uint32_t)c->epochs, 4);
    s_put(&b, (uint64_t)c->batch, 8);
    s_put(&b, (uint64_t)c->base_batch, 8);
    s_put(&b, (uint64_t)c->batch_max, 8);
    s_put(&b, (uint32_t)c->micro_batch, 4);
    s_put(&b, (uint32_t)c->drop_last, 4);
    s_put_f64(&b, c->lr);
    s_put_f64(&b, c->lr_cap);
    s_put_f64(&b, c->momentum);
    s_put_f64(&b, c->weight_decay);
    s_put_f64(&b, c->rho);
    s_put(&b, (uint32_t)c->warmup_epochs, 4);
    s_put(&b, (uint32_t)c->n_decay, 4);
    for (int i = 0; i < SERVER_SCHED_MAX_DECAY; i++)
        s_put(&b, (uint32_t)c->decay_epochs[i], 4);
    s_put_f64(&b, c->gamma0);
    s_put_f64(&b, c->epsilon);
    s_put_f64(&b, 0.0); /* reserved */
    s_put(&b, (uint32_t)c->tau, 4);
    s_put(&b, (uint32_t)c->apply, 4);
    s_put(&b, (uint32_t)c->apply_lead, 4);
    for (uint32_t i = 0; i < st->n_decisions; i++) {
        const struct server_sched_decision *d = &st->decisions[i];
        s_put(&b, d->seq, 8);
        s_put(&b, d->snapshot_version, 8);
        s_put(&b, (uint32_t)d->epoch, 4);
        s_put(&b, (uint64_t)d->batch, 8);
        s_put_f64(&b, d->lr_base);
        s_put_f64(&b, d->gamma_base);
        s_put_f64(&b, d->lambda);
        s_put(&b, (uint64_t)d->apply_step, 8);
        s_put(&b, d->version, 4);
    }
    *len = need;
    return RT_OK;
}

int server_sched_state_decode(const uint8_t *buf, size_t len, struct server_sched_state *out)
{
    if (!buf || len < SCHED_HEADER_BYTES)
        return rt_err_set(RT_ERR_TRUNCATED, "schedule state: %zu bytes, header needs %d", len,
                          SCHED_HEADER_BYTES);
    struct s_buf b = {.q = buf, .left = len};
    struct server_sched_state st;
    memset(&st, 0, sizeof st);
    uint32_t magic = (uint32_t)s_get(&b, 4);
    if (magic != SCHED_MAGIC)
        return rt_err_set(RT_ERR_FORMAT, "schedule state: bad magic 0x%08x", magic);
    st.format = (uint32_t)s_get(&b, 4);
    if (st.format != SERVER_SCHED_STATE_FORMAT)
        return rt_err_set(RT_ERR_VERSION, "schedule state: format %u, expected %u", st.format,
                          SERVER_SCHED_STATE_FORMAT);
    st.n_decisions = (uint32_t)s_get(&b, 4);
    st.last_seq = s_get(&b, 8);
    st.has_seq = s_get(&b, 8);
    if (st.n_decisions > SERVER_SCHED_MAX_DECISIONS)
        return rt_err_set(RT_ERR_FORMAT, "schedule state: %u decisions (at most %d)",
                          st.n_decisions, SERVER_SCHED_MAX_DECISIONS);
    size_t need = server_sched_state_encoded_size(&st);
    if (len < need)
        return rt_err_set(RT_ERR_TRUNCATED, "schedule state: %zu bytes, %zu expected", len, need);
    if (len > need)
        return rt_err_set(RT_ERR_SIZE, "schedule state: %zu bytes, %zu expected", len, need);
    struct server_sched_config *c = &st.config;
    c->method = (enum server_sched_method)(int32_t)s_get(&b, 4);
    c->dataset_size = (int64_t)s_get(&b, 8);
    c->epochs = (int32_t)s_get(&b, 4);
    c->batch = (int64_t)s_get(&b, 8);
    c->base_batch = (int64_t)s_get(&b, 8);
    c->batch_max = (int64_t)s_get(&b, 8);
    c->micro_batch = (int32_t)s_get(&b, 4);
    c->drop_last = (int32_t)s_get(&b, 4);
    c->lr = s_get_f64(&b);
    c->lr_cap = s_get_f64(&b);
    c->momentum = s_get_f64(&b);
    c->weight_decay = s_get_f64(&b);
    c->rho = s_get_f64(&b);
    c->warmup_epochs = (int32_t)s_get(&b, 4);
    c->n_decay = (int32_t)s_get(&b, 4);
    for (int i = 0; i < SERVER_SCHED_MAX_DECAY; i++)
        c->decay_epochs[i] = (int32_t)s_get(&b, 4);
    c->gamma0 = s_get_f64(&b);
    c->epsilon = s_get_f64(&b);
    (void)s_get_f64(&b); /* reserved */
    c->tau = (int32_t)s_get(&b, 4);
    c->apply = (enum server_sched_apply)(int32_t)s_get(&b, 4);
    c->apply_lead = (int32_t)s_get(&b, 4);
    for (uint32_t i = 0; i < st.n_decisions; i++) {
        struct server_sched_decision *d = &st.decisions[i];
        d->seq = s_get(&b, 8);
        d->snapshot_version = s_get(&b, 8);
        d->epoch = (int32_t)s_get(&b, 4);
        d->batch = (int64_t)s_get(&b, 8);
        d->lr_base = s_get_f64(&b);
        d->gamma_base = s_get_f64(&b);
        d->lambda = s_get_f64(&b);
        d->apply_step = (int64_t)s_get(&b, 8);
        d->version = (uint32_t)s_get(&b, 4);
    }
    int rc = server_sched_state_check(&st);
    if (rc != RT_OK)
        return rc;
    *out = st;
    return RT_OK;
}
