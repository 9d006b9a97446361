/*
 * fuzz_util: what the libFuzzer harnesses of tests/fuzz share.
 *
 * Several inputs from one byte string: fuzz_split cuts it into frames, each a 2-byte little-endian
 * length followed by that many bytes; the last frame (or one whose length runs past the end) takes
 * what is left. The seed generator (seeds/fuzz_seeds.c) writes the same layout with fuzz_join.
 * Files from bytes: fuzz_memfd keeps one anonymous in-memory file whose /proc/self/fd path file
 * readers can open; fuzz_tmpdir a directory in memory (/dev/shm) removed at exit.
 */
#ifndef FUZZ_UTIL_H
#define FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define FUZZ_FRAME_PREFIX 2 /* bytes of a frame's length prefix */
#define FUZZ_PATH_MAX 256   /* bytes of a path made here */

/* Cut data into at most max frames (parts[i], sizes[i] point into data); returns the count (at
 * least 1: an empty input is one empty frame). */
static inline int fuzz_split(const uint8_t *data, size_t size, int max, const uint8_t **parts,
                             size_t *sizes)
{
    int n = 0;
    while (n < max - 1 && size >= FUZZ_FRAME_PREFIX) {
        size_t len = (size_t)data[0] | (size_t)data[1] << 8;
        if (len > size - FUZZ_FRAME_PREFIX)
            break;
        parts[n] = data + FUZZ_FRAME_PREFIX;
        sizes[n++] = len;
        data += FUZZ_FRAME_PREFIX + len;
        size -= FUZZ_FRAME_PREFIX + len;
    }
    parts[n] = data;
    sizes[n++] = size;
    return n;
}

/* Write len bytes as a length-prefixed frame (the inverse of fuzz_split) to f; 0 or -1. */
static inline int fuzz_join(FILE *f, const void *data, size_t len)
{
    uint8_t pre[FUZZ_FRAME_PREFIX] = {(uint8_t)(len & 0xff), (uint8_t)(len >> 8)};
    if (len > 0xffff || fwrite(pre, 1, sizeof pre, f) != sizeof pre)
        return -1;
    return len && fwrite(data, 1, len, f) != len ? -1 : 0;
}

/* Replace the content of fd with len bytes; 0 or -1. */
static inline int fuzz_fill(int fd, const void *data, size_t len)
{
    if (ftruncate(fd, 0) || (len && pwrite(fd, data, len, 0) != (ssize_t)len))
        return -1;
    return 0;
}

/* An in-memory file for this process (made once) and its path into path (FUZZ_PATH_MAX bytes);
 * returns the descriptor, or aborts: a harness cannot run without it. */
static inline int fuzz_memfd(char *path)
{
    static int fd = -1;
    if (fd < 0)
        fd = memfd_create("eb-fuzz", 0);
    if (fd < 0) {
        perror("memfd_create");
        abort();
    }
    snprintf(path, FUZZ_PATH_MAX, "/proc/self/fd/%d", fd);
    return fd;
}

#endif
