/* snapshot.h: the model file, which is also the weight snapshot sent over ZeroMQ.
 *
 * One msgpack map of kind "model" (man icn-wire(5)): format version, architecture, input
 * shape, class count, head, the parameters as one float32 bin, a CRC-32 over architecture,
 * shape and parameters, training metadata, and, in a checkpoint, the optimizer state and
 * the trainer's position so that a killed run resumes where it stopped. Loading checks the
 * version, every size against the bytes present, the checksum, and rejects NaN/Inf weights. */
#ifndef ICN_SNAPSHOT_H
#define ICN_SNAPSHOT_H
#include <msgpack.h>
#include <stdint.h>

#include "losses.h"
#include "net.h"
#include "optim.h"

#define ICN_MODEL_VERSION 1

#define ICN_SETTINGS_LEN 320

typedef struct {
    icn_head head;
    int64_t generation;   /* snapshot generation: introspective round that produced it */
    int64_t step;         /* SGD steps trained so far */
    int64_t total_steps;  /* steps the run was asked for (the lr schedule depends on it) */
    int64_t seed;
    int64_t train_images; /* size of the real training set */
    int64_t round;        /* introspective trainer: round reached */
    int64_t pool_offset;  /* introspective trainer: pool records consumed */
    int64_t pool_start;   /* introspective trainer: pool record where this run began */
    /* the trainer's settings that shape the run ("lr=0.025 momentum=0.9 ..."), so that a
     * resume with other settings is refused; empty when unknown (older files) */
    char settings[ICN_SETTINGS_LEN];
    /* introspective trainer: the UUID of the pool store it consumed (ICN_UUID_STRLEN, pool.h),
     * so that a resume against another store is refused; empty when unknown */
    char pool_uuid[37];
} icn_model_meta;

/* Encode the model (and, if optim is non-NULL, the optimizer state) into sb. */
void icn_model_pack(msgpack_sbuffer *sb, const icn_net *net, const icn_model_meta *meta, const icn_optim *optim);
/* Decode a model frame. net is built and filled; meta filled. If optim is non-NULL and the
 * frame holds optimizer state, it is restored into optim (which must already be set up for
 * net->n_trainable); *has_optim says whether it was. */
int icn_model_decode(const uint8_t *p, size_t n, icn_net *net, icn_model_meta *meta, icn_optim *optim, int *has_optim,
                     char *err, size_t errlen);

/* The same, from a frame already checked and unpacked (icn_frame_unpack): the map itself. */
int icn_model_decode_map(const msgpack_object *map, icn_net *net, icn_model_meta *meta, icn_optim *optim,
                         int *has_optim, char *err, size_t errlen);

int icn_model_save(const char *path, const icn_net *net, const icn_model_meta *meta, const icn_optim *optim, char *err,
                   size_t errlen);
int icn_model_load(const char *path, icn_net *net, icn_model_meta *meta, icn_optim *optim, int *has_optim, char *err,
                   size_t errlen);

#endif
