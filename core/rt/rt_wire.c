/*
 * rt_wire: encode/decode the protocol headers (protobuf-c) and validate whole multipart messages.
 * The protobuf-c types stay inside this file.
 */
#include "rt_wire.h"

#include <string.h>
#include <zlib.h>

#include "eb.pb-c.h"
#include "rt_err.h"
#include "rt_wire_int.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "payload frames are little-endian float32: this build assumes a little-endian host"
#endif

/* Largest chunk handed to zlib's crc32 at once (its length argument is a uInt). */
#define S_CRC_CHUNK (1u << 30)

static const char *const s_type_names[] = {
    "none",    "register", "welcome",   "hello",   "ack",    "heartbeat", "sched-query", "sched",
    "init",    "push",     "pull",      "weights", "bye",    "error",     "snapshot",    "decision",
    "publish", "current",  "abs-query", "reject",  "verify", "status",
};

const char *rt_wire_type_name(int type)
{
    if (type < 0 || type > RT_WIRE_TYPE_MAX)
        return "unknown";
    return s_type_names[type];
}

const char *rt_wire_verdict_str(int verdict)
{
    switch (verdict) {
    case RT_WIRE_VERDICT_ACCEPTED:
        return "accepted";
    case RT_WIRE_VERDICT_DUPLICATE:
        return "duplicate: already held";
    case RT_WIRE_VERDICT_SUPERSEDED:
        return "superseded: a newer decision was already seen";
    case RT_WIRE_VERDICT_STALE:
        return "stale: snapshot older than the last batch increase";
    case RT_WIRE_VERDICT_NOCHANGE:
        return "no change to the schedule in force";
    case RT_WIRE_VERDICT_PENDING:
        return "pending: earlier versions missing";
    default:
        return verdict < 0 ? rt_strerror(verdict) : "unknown verdict";
    }
}

void rt_wire_msg_init(struct rt_wire_msg *m, enum rt_wire_type type, int32_t sender,
                      const char *name)
{
    memset(m, 0, sizeof *m);
    m->type = type;
    m->version = RT_WIRE_VERSION;
    m->sender = sender;
    if (name)
        snprintf(m->name, sizeof m->name, "%s", name);
}

#define S_LANES 8 /* independent Fletcher lanes: the loop vectorises */

/* Fletcher-style checksum over 64-bit words in S_LANES interleaved lanes: per lane, s1 sums the
 * words and s2 the running s1 (so order within a lane matters); lanes are mixed at the end with
 * distinct odd multipliers (so swapping words between lanes matters too). A trailing partial
 * block is zero-padded. */
static uint64_t s_fletcher64(const void *data, size_t n)
{
    const uint8_t *p = data;
    uint64_t s1[S_LANES] = {0}, s2[S_LANES] = {0};
    size_t blocks = n / (8 * S_LANES);
    for (size_t b = 0; b < blocks; b++) {
        uint64_t w[S_LANES];
        memcpy(w, p + b * 8 * S_LANES, sizeof w);
        for (int l = 0; l < S_LANES; l++) {
            s1[l] += w[l];
            s2[l] += s1[l];
        }
    }
    size_t rest = n - blocks * 8 * S_LANES;
    if (rest) {
        uint64_t w[S_LANES] = {0};
        memcpy(w, p + blocks * 8 * S_LANES, rest);
        for (int l = 0; l < S_LANES; l++) {
            s1[l] += w[l];
            s2[l] += s1[l];
        }
    }
    uint64_t h = (uint64_t)n * 0x9e3779b97f4a7c15ull;
    for (int l = 0; l < S_LANES; l++) {
        h ^= s1[l] * (0xbf58476d1ce4e5b9ull + 2 * (uint64_t)l);
        h = (h << 29) | (h >> 35);
        h ^= s2[l] * (0x94d049bb133111ebull + 2 * (uint64_t)l);
        h = (h << 31) | (h >> 33);
    }
    return h;
}

uint64_t rt_wire_checksum(enum rt_wire_checksum kind, const void *data, size_t n)
{
    switch (kind) {
    case RT_WIRE_CK_CRC32: {
        uLong c = crc32(0L, Z_NULL, 0);
        const Bytef *p = data;
        while (n > 0) {
            uInt k = n > S_CRC_CHUNK ? S_CRC_CHUNK : (uInt)n;
            c = crc32(c, p, k);
            p += k;
            n -= k;
        }
        return (uint64_t)c;
    }
    case RT_WIRE_CK_FLETCHER64:
        return s_fletcher64(data, n);
    default:
        return 0;
    }
}

void rt_wire_seal(struct rt_wire_msg *m, const float *params, const float *buffers)
{
    if (m->has_params && params)
        m->params.checksum =
            rt_wire_checksum(m->checksum, params, (size_t)m->params.count * sizeof(float));
    if (m->has_buffers && buffers)
        m->buffers.checksum =
            rt_wire_checksum(m->checksum, buffers, (size_t)m->buffers.count * sizeof(float));
}

/* ---- header <-> EbHeader ------------------------------------------------------------------ */

void rt_wire_decision_to_pb(const struct rt_wire_decision *d, EbDecision *dc, char *reason,
                            EbAbsState *ab)
{
    eb_decision__init(dc);
    if (d->has_abs) {
        eb_abs_state__init(ab);
        ab->batch = d->abs.batch;
        ab->lr_base = d->abs.lr_base;
        ab->gamma_base = d->abs.gamma_base;
        ab->lambda_ref = d->abs.lambda_ref;
        ab->has_ref = d->abs.has_ref ? 1 : 0;
        ab->duration = d->abs.duration;
        ab->measuring = d->abs.measuring ? 1 : 0;
        ab->increases = d->abs.increases;
        ab->last_epoch = d->abs.last_epoch;
        dc->abs = ab;
    }
    dc->seq = d->seq;
    dc->snapshot_version = d->snapshot_version;
    dc->epoch = d->epoch;
    dc->batch = d->batch;
    dc->lr_base = d->lr_base;
    dc->gamma_base = d->gamma_base;
    dc->lambda = d->lambda;
    dc->lr = d->lr;
    dc->gamma = d->gamma;
    memcpy(reason, d->reason, RT_WIRE_REASON_MAX);
    reason[RT_WIRE_REASON_MAX - 1] = '\0';
    dc->reason = reason;
    dc->apply_step = d->apply_step;
    dc->sched_version = d->sched_version;
    dc->verdict = d->verdict;
    dc->iterations = d->iterations;
    dc->seconds = d->seconds;
}

EbEval *rt_wire_eval_to_pb(const struct rt_wire_eval *e, EbEval *ev)
{
    eb_eval__init(ev);
    ev->epoch = e->epoch;
    ev->samples = e->samples;
    ev->correct = e->correct;
    ev->loss = e->loss;
    return ev;
}

int rt_wire_eval_from_pb(const EbEval *ev, const char *sender, struct rt_wire_eval *e)
{
    if (!ev->samples || ev->correct > ev->samples)
        return rt_err_set(RT_ERR_FORMAT, "evaluation from '%s' scores %llu correct of %llu samples",
                          sender, (unsigned long long)ev->correct, (unsigned long long)ev->samples);
    e->present = 1;
    e->epoch = ev->epoch;
    e->samples = ev->samples;
    e->correct = ev->correct;
    e->loss = ev->loss;
    return RT_OK;
}

void rt_wire_decision_from_pb(const EbDecision *dc, struct rt_wire_decision *d)
{
    d->seq = dc->seq;
    d->snapshot_version = dc->snapshot_version;
    d->epoch = dc->epoch;
    d->batch = dc->batch;
    d->lr_base = dc->lr_base;
    d->gamma_base = dc->gamma_base;
    d->lambda = dc->lambda;
    d->lr = dc->lr;
    d->gamma = dc->gamma;
    if (dc->reason)
        snprintf(d->reason, sizeof d->reason, "%s", dc->reason);
    d->apply_step = dc->apply_step;
    d->sched_version = dc->sched_version;
    d->verdict = dc->verdict;
    d->iterations = dc->iterations;
    d->seconds = dc->seconds;
    if (dc->abs) {
        d->has_abs = 1;
        d->abs.batch = dc->abs->batch;
        d->abs.lr_base = dc->abs->lr_base;
        d->abs.gamma_base = dc->abs->gamma_base;
        d->abs.lambda_ref = dc->abs->lambda_ref;
        d->abs.has_ref = dc->abs->has_ref ? 1 : 0;
        d->abs.duration = dc->abs->duration;
        d->abs.measuring = dc->abs->measuring ? 1 : 0;
        d->abs.increases = dc->abs->increases;
        d->abs.last_epoch = dc->abs->last_epoch;
    }
}

/* Fill the protobuf image `h` (with its sub-messages in the caller's storage) from m. */
static void s_to_pb(const struct rt_wire_msg *m, EbHeader *h, EbSpan *sp, EbSched *sc,
                    EbDecision *dc, EbAbsState *ab, EbEval *ev, char *name, char *text,
                    char *reason)
{
    eb_header__init(h);
    h->version = m->version;
    h->type = (EbType)m->type;
    h->sender = m->sender;
    memcpy(name, m->name, RT_WIRE_NAME_MAX);
    name[RT_WIRE_NAME_MAX - 1] = '\0';
    h->name = name;
    h->step = m->step;
    h->sched_version = m->sched_version;
    h->checksum_kind = (EbChecksum)m->checksum;
    const struct rt_wire_span *src[4] = {&m->params, &m->buffers, &m->params_range,
                                         &m->buffers_range};
    EbSpan **dst[4] = {&h->params, &h->buffers, &h->params_range, &h->buffers_range};
    int present[4] = {m->has_params, m->has_buffers, m->type == RT_WIRE_ACK,
                      m->type == RT_WIRE_ACK};
    for (int i = 0; i < 4; i++) {
        if (!present[i])
            continue;
        eb_span__init(&sp[i]);
        sp[i].offset = src[i]->offset;
        sp[i].count = src[i]->count;
        sp[i].checksum = src[i]->checksum;
        *dst[i] = &sp[i];
    }
    h->samples = m->samples;
    h->loss = m->loss;
    h->correct = m->correct;
    h->lr = m->lr;
    if (m->type == RT_WIRE_SCHED) {
        eb_sched__init(sc);
        sc->epoch = m->sched.epoch;
        sc->epoch_offset = m->sched.epoch_offset;
        sc->batch = m->sched.batch;
        sc->samples = m->sched.samples;
        sc->lr = m->sched.lr;
        sc->gamma = m->sched.gamma;
        sc->share_offset = m->sched.share_offset;
        sc->share_count = m->sched.share_count;
        sc->done = m->sched.done ? 1 : 0;
        sc->epoch_last = m->sched.epoch_last ? 1 : 0;
        sc->checkpoint = m->sched.checkpoint ? 1 : 0;
        sc->lead = m->sched.lead;
        if (m->sched.members_len) {
            sc->members.len = m->sched.members_len <= RT_WIRE_MEMBERS_BYTES ? m->sched.members_len
                                                                            : RT_WIRE_MEMBERS_BYTES;
            sc->members.data = (uint8_t *)m->sched.members;
        }
        h->sched = sc;
    }
    h->weight = m->weight;
    h->n_workers = m->n_workers;
    h->n_shards = m->n_shards;
    h->n_params = m->n_params;
    h->n_buffers = m->n_buffers;
    h->err_code = m->err_code;
    memcpy(text, m->text, RT_WIRE_TEXT_MAX);
    text[RT_WIRE_TEXT_MAX - 1] = '\0';
    h->text = text;
    if (m->type == RT_WIRE_DECISION || m->type == RT_WIRE_ACK || m->type == RT_WIRE_PUBLISH) {
        /* a decision, the coordinator's answer to one (it echoes the decision), a publication */
        rt_wire_decision_to_pb(&m->decision, dc, reason, ab);
        h->decision = dc;
    }
    if (m->type == RT_WIRE_ACK && m->has_held) {
        rt_wire_decision_to_pb(&m->held, dc + 1, reason + RT_WIRE_REASON_MAX, ab + 1);
        h->held = dc + 1;
    }
    h->epoch = m->epoch;
    h->heartbeat_ms = m->heartbeat_ms;
    h->token = m->token;
    h->worker = m->worker;
    h->role = m->role;
    if (m->eval.present && (m->type == RT_WIRE_SCHED_QUERY || m->type == RT_WIRE_HEARTBEAT))
        h->eval = rt_wire_eval_to_pb(&m->eval, ev);
    if (m->type == RT_WIRE_SCHED_QUERY || m->type == RT_WIRE_HEARTBEAT)
        h->bad_records = m->bad_records;
    h->trailer = RT_WIRE_TRAILER;
}

size_t rt_wire_header_size(const struct rt_wire_msg *m)
{
    EbHeader h;
    EbSpan sp[4];
    EbSched sc;
    EbDecision dc[2];
    EbAbsState ab[2];
    EbEval ev;
    char name[RT_WIRE_NAME_MAX], text[RT_WIRE_TEXT_MAX], reason[2 * RT_WIRE_REASON_MAX];
    s_to_pb(m, &h, sp, &sc, dc, ab, &ev, name, text, reason);
    return eb_header__get_packed_size(&h);
}

int rt_wire_encode(const struct rt_wire_msg *m, uint8_t *buf, size_t cap, size_t *len)
{
    EbHeader h;
    EbSpan sp[4];
    EbSched sc;
    EbDecision dc[2];
    EbAbsState ab[2];
    EbEval ev;
    char name[RT_WIRE_NAME_MAX], text[RT_WIRE_TEXT_MAX], reason[2 * RT_WIRE_REASON_MAX];
    s_to_pb(m, &h, sp, &sc, dc, ab, &ev, name, text, reason);
    size_t need = eb_header__get_packed_size(&h);
    if (need > cap || need > RT_WIRE_MAX_HEADER)
        return rt_err_set(RT_ERR_TOOBIG, "%s header needs %zu bytes, room for %zu",
                          rt_wire_type_name(m->type), need, cap);
    *len = eb_header__pack(&h, buf);
    return RT_OK;
}

static void s_span_from(struct rt_wire_span *d, const EbSpan *s)
{
    d->offset = s->offset;
    d->count = s->count;
    d->checksum = s->checksum;
}

/* Does [off, off+count) lie inside a vector of n floats? (overflow-safe) */
static int s_inside(uint64_t off, uint64_t count, uint64_t n)
{
    return off <= n && count <= n - off;
}

/* Validate one payload frame against its span. */
static int s_check_frame(const char *what, const struct rt_wire_span *sp, uint64_t n,
                         const struct rt_wire_limits *lim, enum rt_wire_checksum kind,
                         const void *data, size_t bytes)
{
    if (sp->count == 0)
        return rt_err_set(RT_ERR_SIZE, "%s frame: empty slice", what);
    if (sp->count > lim->max_floats)
        return rt_err_set(RT_ERR_TOOBIG, "%s frame: %llu floats exceed the limit of %llu", what,
                          (unsigned long long)sp->count, (unsigned long long)lim->max_floats);
    if (!s_inside(sp->offset, sp->count, n))
        return rt_err_set(
            RT_ERR_SIZE, "%s frame: slice [%llu, +%llu) outside the %llu-float vector", what,
            (unsigned long long)sp->offset, (unsigned long long)sp->count, (unsigned long long)n);
    if (bytes != sp->count * sizeof(float))
        return rt_err_set(RT_ERR_SIZE, "%s frame: %zu bytes, header says %llu floats", what, bytes,
                          (unsigned long long)sp->count);
    if (kind != RT_WIRE_CK_NONE) {
        uint64_t c = rt_wire_checksum(kind, data, bytes);
        if (c != sp->checksum)
            return rt_err_set(RT_ERR_CHECKSUM, "%s frame: checksum %llx, header says %llx", what,
                              (unsigned long long)c, (unsigned long long)sp->checksum);
    }
    return RT_OK;
}

/* Frame count and header size, before the header is unpacked. */
static int s_check_frames(const void *const *parts, const size_t *sizes, int nparts)
{
    if (nparts < 1 || !parts || !sizes)
        return rt_err_set(RT_ERR_TRUNCATED, "message without a header frame");
    if (nparts > 1 + RT_WIRE_MAX_PAYLOADS)
        return rt_err_set(RT_ERR_FORMAT, "message has %d frames, at most %d expected", nparts,
                          1 + RT_WIRE_MAX_PAYLOADS);
    if (sizes[0] == 0)
        return rt_err_set(RT_ERR_TRUNCATED, "empty header frame");
    if (sizes[0] > RT_WIRE_MAX_HEADER)
        return rt_err_set(RT_ERR_TOOBIG, "header frame of %zu bytes exceeds %d", sizes[0],
                          RT_WIRE_MAX_HEADER);
    return RT_OK;
}

/*
 * The header's identity (version, type, sender, name) copied into m, then checked: the trailer
 * (a header cut short), the protocol version, the message type and the checksum kind. `bytes` is
 * the header frame's size, for messages.
 */
static int s_ident_from_pb(const EbHeader *h, size_t bytes, struct rt_wire_msg *m)
{
    m->version = h->version;
    m->type = (enum rt_wire_type)h->type;
    m->sender = h->sender;
    if (h->name)
        snprintf(m->name, sizeof m->name, "%s", h->name);
    if (h->trailer != RT_WIRE_TRAILER)
        return rt_err_set(RT_ERR_TRUNCATED, "header frame (%zu bytes) from '%s' is cut short",
                          bytes, m->name);
    if (h->version != RT_WIRE_VERSION)
        return rt_err_set(RT_ERR_VERSION, "protocol version %u from '%s', this build speaks %d",
                          h->version, m->name, RT_WIRE_VERSION);
    if ((int)h->type < RT_WIRE_REGISTER || (int)h->type > RT_WIRE_TYPE_MAX)
        return rt_err_set(RT_ERR_FORMAT, "unknown message type %d", (int)h->type);
    m->step = h->step;
    m->sched_version = h->sched_version;
    if ((int)h->checksum_kind < RT_WIRE_CK_NONE || (int)h->checksum_kind > RT_WIRE_CK_FLETCHER64)
        return rt_err_set(RT_ERR_FORMAT, "unknown checksum kind %d", (int)h->checksum_kind);
    m->checksum = (enum rt_wire_checksum)h->checksum_kind;
    return RT_OK;
}

/* The schedule block into m->sched; a member bitmap longer than RT_WIRE_MEMBERS_BYTES fails. */
static int s_sched_from_pb(const EbSched *s, struct rt_wire_msg *m)
{
    m->sched.epoch = s->epoch;
    m->sched.epoch_offset = s->epoch_offset;
    m->sched.batch = s->batch;
    m->sched.samples = s->samples;
    m->sched.lr = s->lr;
    m->sched.gamma = s->gamma;
    m->sched.share_offset = s->share_offset;
    m->sched.share_count = s->share_count;
    m->sched.done = s->done ? 1 : 0;
    m->sched.epoch_last = s->epoch_last ? 1 : 0;
    m->sched.checkpoint = s->checkpoint ? 1 : 0;
    m->sched.lead = s->lead;
    if (s->members.len > RT_WIRE_MEMBERS_BYTES)
        return rt_err_set(RT_ERR_FORMAT, "member bitmap of %zu bytes from '%s' exceeds %d",
                          s->members.len, m->name, RT_WIRE_MEMBERS_BYTES);
    m->sched.members_len = (uint32_t)s->members.len;
    if (s->members.len)
        memcpy(m->sched.members, s->members.data, s->members.len);
    return RT_OK;
}

/* The per-type fields after the identity: spans, step results, schedule, counts, decisions. */
static int s_fields_from_pb(const EbHeader *h, struct rt_wire_msg *m)
{
    if (h->params) {
        m->has_params = 1;
        s_span_from(&m->params, h->params);
    }
    if (h->buffers) {
        m->has_buffers = 1;
        s_span_from(&m->buffers, h->buffers);
    }
    if (h->params_range)
        s_span_from(&m->params_range, h->params_range);
    if (h->buffers_range)
        s_span_from(&m->buffers_range, h->buffers_range);
    m->samples = h->samples;
    m->loss = h->loss;
    m->correct = h->correct;
    m->lr = h->lr;
    if (h->sched) {
        int rc = s_sched_from_pb(h->sched, m);
        if (rc)
            return rc;
    }
    m->weight = h->weight;
    m->n_workers = h->n_workers;
    m->n_shards = h->n_shards;
    m->n_params = h->n_params;
    m->n_buffers = h->n_buffers;
    m->err_code = h->err_code;
    if (h->decision)
        rt_wire_decision_from_pb(h->decision, &m->decision);
    if (h->held && m->type == RT_WIRE_ACK) {
        m->has_held = 1;
        rt_wire_decision_from_pb(h->held, &m->held);
    }
    m->epoch = h->epoch;
    m->heartbeat_ms = h->heartbeat_ms;
    m->token = h->token;
    m->worker = h->worker;
    m->role = h->role;
    if (h->eval) {
        int rc = rt_wire_eval_from_pb(h->eval, m->name, &m->eval);
        if (rc)
            return rc;
    }
    if (m->type == RT_WIRE_SCHED_QUERY || m->type == RT_WIRE_HEARTBEAT)
        m->bad_records = h->bad_records;
    if (h->text)
        snprintf(m->text, sizeof m->text, "%s", h->text);
    return RT_OK;
}

/*
 * Payload frames: only the tensor-carrying types have them, in the order params, buffers, one per
 * span the header declares; each is checked against its span (s_check_frame) and handed out
 * through params / buffers (either may be NULL).
 */
static int s_payloads(const void *const *parts, const size_t *sizes, int nparts,
                      const struct rt_wire_limits *lim, const struct rt_wire_msg *m,
                      const void **params, const void **buffers)
{
    int carries = m->type == RT_WIRE_PUSH || m->type == RT_WIRE_INIT || m->type == RT_WIRE_WEIGHTS;
    int want = m->has_params + m->has_buffers;
    if (!carries && want > 0)
        return rt_err_set(RT_ERR_FORMAT, "%s message declares payload slices",
                          rt_wire_type_name(m->type));
    if (carries && want == 0)
        return rt_err_set(RT_ERR_FORMAT, "%s message without a payload slice",
                          rt_wire_type_name(m->type));
    if (nparts - 1 < want)
        return rt_err_set(RT_ERR_TRUNCATED, "%s message has %d payload frames, header declares %d",
                          rt_wire_type_name(m->type), nparts - 1, want);
    if (nparts - 1 > want)
        return rt_err_set(RT_ERR_FORMAT, "%s message has %d payload frames, header declares %d",
                          rt_wire_type_name(m->type), nparts - 1, want);
    int k = 1;
    if (m->has_params) {
        int rc = s_check_frame("parameter", &m->params, lim->n_params, lim, m->checksum, parts[k],
                               sizes[k]);
        if (rc)
            return rc;
        if (params)
            *params = parts[k];
        k++;
    }
    if (m->has_buffers) {
        int rc = s_check_frame("buffer", &m->buffers, lim->n_buffers, lim, m->checksum, parts[k],
                               sizes[k]);
        if (rc)
            return rc;
        if (buffers)
            *buffers = parts[k];
    }
    return RT_OK;
}

int rt_wire_decode(const void *const *parts, const size_t *sizes, int nparts,
                   const struct rt_wire_limits *lim, struct rt_wire_msg *m, const void **params,
                   const void **buffers)
{
    if (params)
        *params = NULL;
    if (buffers)
        *buffers = NULL;
    int rc = s_check_frames(parts, sizes, nparts);
    if (rc)
        return rc;
    EbHeader *h = eb_header__unpack(NULL, sizes[0], parts[0]);
    if (!h)
        return rt_err_set(RT_ERR_FORMAT, "header frame (%zu bytes) is not a valid EbHeader",
                          sizes[0]);
    memset(m, 0, sizeof *m);
    rc = s_ident_from_pb(h, sizes[0], m);
    if (!rc)
        rc = s_fields_from_pb(h, m);
    if (!rc)
        rc = s_payloads(parts, sizes, nparts, lim, m, params, buffers);
    eb_header__free_unpacked(h, NULL);
    return rc;
}

void rt_wire_partition(uint64_t n, int parts, int i, uint64_t *off, uint64_t *cnt)
{
    RT_ASSERT(parts > 0 && i >= 0 && i < parts);
    uint64_t base = n / (uint64_t)parts, extra = n % (uint64_t)parts;
    uint64_t ui = (uint64_t)i;
    *off = ui * base + (ui < extra ? ui : extra);
    *cnt = base + (ui < extra ? 1 : 0);
}

/* Staging block for unaligned payloads, floats. */
#define S_AXPY_BLOCK 1024

void rt_wire_axpy(float *y, float a, const void *x, size_t n, int accumulate)
{
    if (((uintptr_t)x % _Alignof(float)) == 0) {
        const float *xf = x;
        if (accumulate)
            for (size_t i = 0; i < n; i++)
                y[i] += a * xf[i];
        else
            for (size_t i = 0; i < n; i++)
                y[i] = a * xf[i];
        return;
    }
    float tmp[S_AXPY_BLOCK];
    const uint8_t *p = x;
    for (size_t i = 0; i < n; i += S_AXPY_BLOCK) {
        size_t k = n - i < S_AXPY_BLOCK ? n - i : S_AXPY_BLOCK;
        memcpy(tmp, p + i * sizeof(float), k * sizeof(float));
        if (accumulate)
            for (size_t j = 0; j < k; j++)
                y[i + j] += a * tmp[j];
        else
            for (size_t j = 0; j < k; j++)
                y[i + j] = a * tmp[j];
    }
}

double rt_wire_sumsq(const void *x, size_t n)
{
    /* eight independent double sums (vectorised; a float sum could overflow for finite values),
     * over an aligned copy of each block */
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    float tmp[S_AXPY_BLOCK];
    const uint8_t *p = x;
    for (size_t i = 0; i < n; i += S_AXPY_BLOCK) {
        size_t k = n - i < S_AXPY_BLOCK ? n - i : S_AXPY_BLOCK;
        memcpy(tmp, p + i * sizeof(float), k * sizeof(float));
        size_t j = 0;
        for (; j + 8 <= k; j += 8)
            for (int l = 0; l < 8; l++)
                acc[l] += (double)tmp[j + l] * (double)tmp[j + l];
        for (; j < k; j++)
            acc[0] += (double)tmp[j] * (double)tmp[j];
    }
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}
