/*
 * fuzz_status: libFuzzer harness of the STATUS reply decoder (rt_wire_status_decode), as
 * `eigenbatch status` feeds it: one frame from the coordinator (or from whoever answers on its
 * port). A status that decodes must encode again within the limits: what the client accepts, a
 * coordinator can say. Decode errors are expected; crashes, leaks and sanitizer reports are not.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "rt_err.h"
#include "rt_wire_status.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct rt_wire_status st;
    static uint8_t buf[RT_WIRE_STATUS_MAX];
    char name[RT_WIRE_NAME_MAX];
    if (rt_wire_status_decode(data, size, &st, name))
        return 0;
    size_t len = 0;
    if (rt_wire_status_encode(&st, 0, name, buf, sizeof buf, &len)) {
        fprintf(stderr, "decoded status does not encode: %s\n", rt_err_msg());
        abort();
    }
    return 0;
}
