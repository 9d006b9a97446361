/*
 * rt_wire: the codec of the parameter-server protocol, and with rt_wire_status (the STATUS reply)
 * the only module that sees protobuf-c generated types (proto/eb.proto).
 *
 * A message is a multipart ZeroMQ message: one header frame (a protobuf EbHeader) and 0..2 payload
 * frames of raw little-endian float32 (frame 1: a slice of the flat parameter vector, frame 2: a
 * slice of the flat BatchNorm buffer vector). The header says where each slice belongs (offset,
 * count) and carries a checksum of each payload frame. rt_wire_decode validates everything a peer
 * can get wrong (version, type, frame count, sizes against the header and the limits, checksums)
 * and fails with a negative rt_err code and a detail; it never asserts on input.
 */
#ifndef RT_WIRE_H
#define RT_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define RT_WIRE_CHUNK_FLOATS_DEFAULT (1u << 17) /* floats per payload frame (512 KiB) */
#define RT_WIRE_VERSION 1                       /* protocol version spoken by this build */
#define RT_WIRE_MAX_HEADER 4096                 /* largest accepted header frame, bytes */
#define RT_WIRE_MAX_PAYLOADS 2                  /* payload frames after the header */
#define RT_WIRE_NAME_MAX 64                     /* sender name, bytes with the terminator */
#define RT_WIRE_TEXT_MAX 160                    /* error text, bytes with the terminator */
#define RT_WIRE_REASON_MAX 256                  /* decision reason, bytes with the terminator */
#define RT_WIRE_TRAILER 0x45424844u             /* last header field: detects a header cut short */
#define RT_WIRE_MEMBERS_BYTES 128               /* largest member bitmap of a step: 1024 workers */
/* Floats per payload frame that shards and workers send unless configured (512 KiB). */
#define RT_WIRE_CHUNK_FLOATS_DEFAULT (1u << 17)

/* Message types (values as EbType). */
enum rt_wire_type {
    RT_WIRE_REGISTER = 1,    /* worker -> coordinator: join with a share weight */
    RT_WIRE_WELCOME = 2,     /* coordinator -> worker: id, worker and shard counts, sizes */
    RT_WIRE_HELLO = 3,       /* worker -> shard: bind this connection to a worker id */
    RT_WIRE_ACK = 4,         /* shard -> worker: the shard's ranges */
    RT_WIRE_HEARTBEAT = 5,   /* worker -> coordinator: alive */
    RT_WIRE_SCHED_QUERY = 6, /* worker -> coordinator: schedule of `step` */
    RT_WIRE_SCHED = 7,       /* coordinator -> worker: schedule and share of `step` */
    RT_WIRE_INIT = 8,        /* worker 0 -> shard: initial weights chunk */
    RT_WIRE_PUSH = 9,        /* worker -> shard: gradient chunk of `step` */
    RT_WIRE_PULL = 10,       /* worker -> shard: weights at version `step` */
    RT_WIRE_WEIGHTS = 11,    /* shard -> worker: weights chunk at version `step` */
    RT_WIRE_BYE = 12,        /* worker -> shard: leaving */
    RT_WIRE_ERROR = 13,      /* refusal: err_code and text */
    RT_WIRE_SNAPSHOT = 14,   /* observer -> shard: weights of the latest epoch start */
    RT_WIRE_DECISION = 15,   /* eigen service -> coordinator: an ABS decision */
    RT_WIRE_PUBLISH = 16,    /* eigen service -> subscribers, late joiners: a decision and why */
    RT_WIRE_CURRENT = 17,    /* late joiner -> eigen service: the current decision (PUBLISH) */
    RT_WIRE_ABS_QUERY = 18,  /* eigen service -> coordinator: the ABS state it holds (ACK) */
    RT_WIRE_REJECT = 19,     /* shard -> coordinator: it rejected `worker`'s push of `step` */
    RT_WIRE_VERIFY = 20,     /* shard -> coordinator: is `token` `worker`'s registration? */
    RT_WIRE_STATUS = 21,     /* anyone -> coordinator: the run's status (reply: rt_wire_status.h) */
    RT_WIRE_TYPE_MAX = 21
};

/* The coordinator's verdict on an ABS decision: the ACK of DECISION carries it in err_code, a
 * PUBLISH in decision.verdict (server_sched_accept decides it; errors are negative rt_err codes).
 */
enum rt_wire_verdict {
    RT_WIRE_VERDICT_ACCEPTED = 0, /* appended as a new schedule version */
    RT_WIRE_VERDICT_DUPLICATE,    /* already held: nothing changes (idempotent) */
    RT_WIRE_VERDICT_SUPERSEDED,   /* older sequence number than one already seen */
    RT_WIRE_VERDICT_STALE,        /* computed on a snapshot older than the last batch increase */
    RT_WIRE_VERDICT_NOCHANGE,     /* same (B, lr, gamma) as in force: no new version */
    RT_WIRE_VERDICT_PENDING,      /* (a participant's insert) held until earlier versions arrive */
};

/* Who registers (REGISTER's role). */
enum rt_wire_role {
    RT_WIRE_ROLE_WORKER = 0,  /* a worker: gets an id and a share */
    RT_WIRE_ROLE_EIGENSVC = 1 /* the eigen service: its connection alone may send decisions */
};

/* Payload checksums (values as EbChecksum). */
enum rt_wire_checksum {
    RT_WIRE_CK_NONE = 0,      /* not checked */
    RT_WIRE_CK_CRC32 = 1,     /* zlib crc32 */
    RT_WIRE_CK_FLETCHER64 = 2 /* Fletcher sums over 64-bit words in 8 lanes (memory speed) */
};

/* A payload slice: `count` floats at `offset` of the flat vector. */
struct rt_wire_span {
    uint64_t offset;   /* first float */
    uint64_t count;    /* number of floats; the frame holds 4*count bytes */
    uint64_t checksum; /* of the frame's bytes, kind in rt_wire_msg.checksum */
};

/* Schedule of one step and the receiving worker's share of its global batch. */
struct rt_wire_sched {
    uint64_t epoch;        /* epoch the step belongs to */
    uint64_t epoch_offset; /* position in the epoch's sample order of the batch's first sample */
    uint32_t batch;        /* global batch B */
    uint32_t samples;      /* samples of the step (B, or fewer for a partial last step) */
    float lr;              /* learning rate */
    float gamma;           /* adversarial fraction */
    uint32_t share_offset; /* the worker's first sample within the batch */
    uint32_t share_count;  /* the worker's number of samples */
    int done;              /* training is over; the step does not exist */
    int epoch_last;        /* the step is its epoch's last (the next one starts an epoch) */
    int checkpoint;        /* every shard checkpoints the version the step makes */
    uint32_t members_len;  /* bytes of `members` in use; 0: every worker takes part */
    uint8_t members[RT_WIRE_MEMBERS_BYTES]; /* bit i%8 of byte i/8: worker i takes part in the
                                               step (evicted workers do not) */
    int32_t lead; /* the lead worker of the step (writes metrics and the final weights) */
};

/* The ABS rule's whole state (EbAbsState): eig_abs keeps it in this form, a DECISION carries it
 * after the decision, the coordinator keeps the latest for checkpoints and restarted services. */
struct rt_wire_abs {
    int64_t batch;      /* batch in force */
    double lr_base;     /* base learning rate (before step decay) */
    double gamma_base;  /* adversarial fraction before the tau rule */
    double lambda_ref;  /* reference eigenvalue (valid when has_ref) */
    int32_t has_ref;    /* a measurement has set lambda_ref */
    int32_t duration;   /* epochs since the last increase */
    int32_t measuring;  /* 0 once B_max is reached */
    int32_t increases;  /* batch increases so far */
    int32_t last_epoch; /* last epoch fed to the rule (-1: none) */
};

/* An ABS decision of the eigen service (EbDecision). */
struct rt_wire_decision {
    uint64_t seq;              /* the service's sequence number */
    uint64_t snapshot_version; /* weights version it was computed on */
    int32_t epoch;             /* the epoch whose end produced it */
    int64_t batch;             /* B from its apply step on */
    double lr_base;            /* learning rate before step decay */
    double gamma_base;         /* adversarial fraction before the tau / B_max rules */
    double lambda;             /* measured top eigenvalue */
    /* PUBLISH only (zero elsewhere): */
    double lr;                       /* effective learning rate of the next epoch */
    double gamma;                    /* effective adversarial fraction of the next epoch */
    char reason[RT_WIRE_REASON_MAX]; /* why */
    uint64_t apply_step;             /* step the coordinator applies it from (0: not accepted) */
    uint32_t sched_version;          /* schedule version it became (0: not accepted) */
    int32_t verdict;                 /* coordinator's verdict (< 0: an error code) */
    int32_t iterations;              /* power iterations of the measurement */
    double seconds;                  /* wall time of the measurement */
    int has_abs;                     /* `abs` is present */
    struct rt_wire_abs abs;          /* DECISION, and `held` of the ACK of ABS_QUERY: the rule's
                                        state after this decision */
};

/* A decoded header: the plain-C image of EbHeader. Fields not used by a type are zero. */
/* A test-set evaluation (EbEval): the lead worker's latest, which it reports to the coordinator
 * with its schedule queries and heartbeats. */
struct rt_wire_eval {
    int present;      /* 0: none (the fields below are 0) */
    uint64_t epoch;   /* the epoch whose final weights were evaluated */
    uint64_t samples; /* test samples scored (> 0 when present) */
    uint64_t correct; /* of them classified correctly (<= samples) */
    float loss;       /* mean test loss over them */
};

struct rt_wire_msg {
    enum rt_wire_type type;         /* message type */
    uint32_t version;               /* protocol version */
    int32_t sender;                 /* worker or shard id, -1 when unknown */
    char name[RT_WIRE_NAME_MAX];    /* sender's name for logs */
    uint64_t step;                  /* step (push) or weights version (pull, weights) */
    uint64_t sched_version;         /* schedule version */
    enum rt_wire_checksum checksum; /* checksum kind of the payload frames */
    int has_params;                 /* payload frame 1 is a parameter slice */
    int has_buffers;                /* a buffer slice follows (frame 2, or 1 without params) */
    struct rt_wire_span params;     /* the parameter slice */
    struct rt_wire_span buffers;    /* the buffer slice */
    uint32_t samples;               /* push: samples behind the gradient; WEIGHTS from shard 0
                                       at version v > 0: step v-1's over every worker */
    float loss;                     /* push: mean loss (WEIGHTS from shard 0: of step v-1) */
    uint32_t correct;               /* push: samples classified correctly (WEIGHTS: as samples) */
    float lr;                       /* push: learning rate used for the step */
    struct rt_wire_sched sched;     /* SCHED */
    double weight;                  /* REGISTER: share weight */
    uint32_t n_workers;             /* WELCOME */
    uint32_t n_shards;              /* WELCOME */
    uint64_t n_params;              /* sizes of the flat vectors */
    uint64_t n_buffers;
    int32_t err_code;                  /* ERROR */
    char text[RT_WIRE_TEXT_MAX];       /* ERROR */
    struct rt_wire_span params_range;  /* ACK: the shard's parameter range */
    struct rt_wire_span buffers_range; /* ACK: the shard's buffer range */
    struct rt_wire_decision decision;  /* DECISION */
    uint64_t epoch;                    /* WEIGHTS answering SNAPSHOT: epoch of the snapshot */
    int has_held;                      /* ACK: `held` is present */
    struct rt_wire_decision held;      /* ACK of a stale / superseded decision: the latest held;
                                          ACK of ABS_QUERY: the ABS state held (held.abs) */
    uint32_t heartbeat_ms;             /* WELCOME: the worker shows it is alive this often */
    uint64_t token;                    /* WELCOME, HELLO, VERIFY: the registration token */
    int32_t worker;                    /* REJECT, VERIFY: the worker id concerned */
    uint32_t role;                     /* REGISTER: RT_WIRE_ROLE_* */
    struct rt_wire_eval eval;          /* SCHED_QUERY, HEARTBEAT from a worker: its latest
                                          test-set evaluation (the lead's), or none */
    uint64_t bad_records;              /* SCHED_QUERY, HEARTBEAT from a worker: undecodable
                                          records its loaders have skipped since it started */
    int sealed;                        /* local, not encoded: payload checksums already filled */
};

/* Limits a receiver applies. */
struct rt_wire_limits {
    uint64_t n_params;   /* size of the flat parameter vector: slices must fit inside */
    uint64_t n_buffers;  /* size of the flat buffer vector */
    uint64_t max_floats; /* largest payload frame, floats */
};

/* Initialise a header of `type` from `sender` at this build's version (other fields zero). */
void rt_wire_msg_init(struct rt_wire_msg *m, enum rt_wire_type type, int32_t sender,
                      const char *name);

/* Checksum of n bytes with `kind` (0 for RT_WIRE_CK_NONE). */
uint64_t rt_wire_checksum(enum rt_wire_checksum kind, const void *data, size_t n);

/* Bytes the header needs (< RT_WIRE_MAX_HEADER for any valid message). */
size_t rt_wire_header_size(const struct rt_wire_msg *m);

/* Encode the header into buf (cap bytes); *len receives the size. RT_ERR_TOOBIG when it does not
 * fit. Payload checksums are the caller's (rt_wire_seal fills them). */
int rt_wire_encode(const struct rt_wire_msg *m, uint8_t *buf, size_t cap, size_t *len);

/* Fill m->params/buffers checksums from the payload frames. */
void rt_wire_seal(struct rt_wire_msg *m, const float *params, const float *buffers);

/* Decode and validate a whole multipart message: parts[0] (sizes[0] bytes) is the header, the rest
 * payload frames. Checks version, type, frame count, that each frame holds exactly 4*count bytes,
 * that each slice lies inside the limits' vectors, the frame size limit and the checksums.
 * On success fills *m and, when payload frames exist, *params / *buffers (pointers into parts,
 * may be NULL arguments when the caller does not want them). Payload pointers are NOT necessarily
 * 4-byte aligned (ZeroMQ receives in place): read them with memcpy or rt_wire_axpy. Returns 0 or a
 * negative rt_err code with a detail naming the problem. */
int rt_wire_decode(const void *const *parts, const size_t *sizes, int nparts,
                   const struct rt_wire_limits *lim, struct rt_wire_msg *m, const void **params,
                   const void **buffers);

/* y[i] += a * x[i] (accumulate) or y[i] = a * x[i] (not) for n floats, where x may be unaligned
 * (a payload frame). */
void rt_wire_axpy(float *y, float a, const void *x, size_t n, int accumulate);

/* Sum of the squares of n floats at x (may be unaligned), in double: not finite exactly when some
 * value is not (NaN or infinite). */
double rt_wire_sumsq(const void *x, size_t n);

/* Name of a message type for logs ("push"); "unknown" for values out of range. */
const char *rt_wire_type_name(int type);

/* Short description of a verdict ("stale: snapshot older than the last batch increase"); a
 * negative value is described as its rt_err code. Static storage. */
const char *rt_wire_verdict_str(int verdict);

/* Contiguous balanced partition of n floats into `parts` ranges: range i is [*off, *off + *cnt).
 * Ranges differ by at most one float, so bytes are balanced whatever the tensor boundaries. */
void rt_wire_partition(uint64_t n, int parts, int i, uint64_t *off, uint64_t *cnt);

#endif
