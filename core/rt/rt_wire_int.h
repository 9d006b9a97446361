/*
 * rt_wire_int: what the codec's files (rt_wire.c, rt_wire_status.c) share about the generated
 * protobuf-c types. Not for other modules: only the codec sees eb.pb-c.h.
 */
#ifndef RT_WIRE_INT_H
#define RT_WIRE_INT_H

#include "eb.pb-c.h"
#include "rt_wire.h"

/* Fill the protobuf image of a decision; the reason (RT_WIRE_REASON_MAX bytes) and the ABS state
 * live in the caller's storage, which must outlive the image. */
void rt_wire_decision_to_pb(const struct rt_wire_decision *d, EbDecision *dc, char *reason,
                            EbAbsState *ab);

/* Copy a decoded decision into its plain-C form. */
void rt_wire_decision_from_pb(const EbDecision *dc, struct rt_wire_decision *d);

/* The protobuf image of an evaluation in the caller's storage ev; returns ev. */
EbEval *rt_wire_eval_to_pb(const struct rt_wire_eval *e, EbEval *ev);

/* Check and copy a decoded evaluation from `sender`: RT_ERR_FORMAT when it scores no sample or
 * more correct samples than it scored. */
int rt_wire_eval_from_pb(const EbEval *ev, const char *sender, struct rt_wire_eval *e);

#endif
