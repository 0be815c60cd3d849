/* fuzz_pool_msgs: the pool's channels (icn-wire(5)) as lib/protocol.c decodes them: the
 * requests icn-pool serve reads ("fetch", "stats"), the batches its intake reads (with
 * producer and seq), the answers a sender reads ("ack", "refused"), and the replies a trainer
 * or icn-pool stats reads ("records" with a batch of pseudo-negatives, "stats", "error"). */
#include "fuzz.h"
#include "protocol.h"
#include "util.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_env();
    char err[ICN_ERRLEN];
    static const struct {
        unsigned accept;
        int need_origin;
    } channels[] = {{ICN_REQUEST_KINDS, 0},
                    {ICN_MSG_BATCH, 1},
                    {ICN_INTAKE_REPLY_KINDS, 0},
                    {ICN_MSG_RECORDS | ICN_MSG_ERROR, 0},
                    {ICN_MSG_STATS | ICN_MSG_ERROR, 0}};
    for (size_t i = 0; i < sizeof channels / sizeof channels[0]; i++) {
        icn_msg m;
        if (icn_msg_decode(data, size, channels[i].accept, channels[i].need_origin, &m, err, sizeof err) == 0)
            icn_msg_free(&m);
    }
    return 0;
}
