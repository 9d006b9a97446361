/*
 * rt_file: durable file writes shared by the writers of weights and checkpoints: write a whole
 * buffer despite short writes and signals, and fsync the directory that holds a path so that a
 * rename into it survives a crash.
 */
#ifndef RT_FILE_H
#define RT_FILE_H

#include <stddef.h>

/* Write all len bytes of buf to fd, retrying short writes and EINTR. 0, or -1 with errno set. */
int rt_file_write_all(int fd, const void *buf, size_t len);

/* fsync the directory that holds path ("." for a bare name). 0 or RT_ERR_IO naming the
 * directory. */
int rt_file_fsync_parent(const char *path);

#endif
