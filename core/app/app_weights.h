/*
 * app_weights: a net's weights as a safetensors file with PyTorch state_dict names (models.md), so
 * that a file written here loads into the PyTorch module with load_state_dict and a PyTorch file
 * loads here. Both parameters and BatchNorm running statistics are stored, all float32.
 */
#ifndef APP_WEIGHTS_H
#define APP_WEIGHTS_H

#include "nn_net.h"

/* Write every named tensor of net (nn_net_tensor order) to path, atomically, with the metadata
 * "format": "pt". Returns 0 or a negative rt_err code (detail in rt_err_msg()). */
int app_weights_save(nn_net_t *net, const char *path);

/* app_weights_save with extra "__metadata__" entries: meta is a NULL-terminated key, value, ...
 * list (may be NULL), e.g. {"model", "cnn", "epoch", "12", NULL}. */
int app_weights_save_meta(nn_net_t *net, const char *path, const char *const *meta);

/* Load path into net: every named tensor of the net must be present as F32 with the net's shape
 * (else RT_ERR_NOTFOUND / RT_ERR_SHAPE / RT_ERR_FORMAT naming the tensor and the file). BatchNorm
 * "num_batches_tracked" entries (written by PyTorch) are ignored; any other tensor the net does not
 * have is an error (RT_ERR_FORMAT), as PyTorch's strict load_state_dict. On error the net may be
 * partly loaded. Returns 0 or a negative rt_err code. */
int app_weights_load(nn_net_t *net, const char *path);

#endif
