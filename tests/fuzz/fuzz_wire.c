/*
 * fuzz_wire: libFuzzer harness of the wire decoder (rt_wire_decode), as rt_sock feeds it: a
 * header frame and up to two payload frames (the input split by fuzz_split, so that frame count
 * and sizes are fuzzed too). A message that decodes must encode again: what a receiver accepts,
 * a sender can say. Decode errors are expected; crashes, leaks and sanitizer reports are not.
 */
#include <stdint.h>
#include <stdlib.h>

#include "fuzz_util.h"
#include "rt_err.h"
#include "rt_log.h"
#include "rt_wire.h"

#define S_FRAMES (1 + RT_WIRE_MAX_PAYLOADS) /* header and payloads */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *parts[S_FRAMES];
    size_t sizes[S_FRAMES];
    int n = fuzz_split(data, size, S_FRAMES, parts, sizes);
    /* the limits of a small model: slices must lie inside these vectors */
    struct rt_wire_limits lim = {
        .n_params = 1u << 20, .n_buffers = 1u << 12, .max_floats = 1u << 16};
    struct rt_wire_msg m;
    const void *params = NULL, *buffers = NULL;
    if (rt_wire_decode((const void *const *)parts, sizes, n, &lim, &m, &params, &buffers))
        return 0;
    if (m.has_params && !params)
        abort();
    uint8_t buf[RT_WIRE_MAX_HEADER];
    size_t len = 0;
    if (rt_wire_encode(&m, buf, sizeof buf, &len)) {
        fprintf(stderr, "decoded %s does not encode: %s\n", rt_wire_type_name(m.type),
                rt_err_msg());
        abort();
    }
    (void)rt_wire_type_name(m.type);
    (void)rt_wire_verdict_str(m.decision.verdict);
    return 0;
}
