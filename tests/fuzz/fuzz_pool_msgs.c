/* fuzz_pool_msgs: the pool protocol (icn-wire(5)): the requests icn-pool serve reads
 * ("fetch" with offset and max, "stats") and the replies a trainer or icn-pool stats reads
 * ("records" with a batch of pseudo-negatives, "stats" with its count maps, "error"). */
#include "fuzz.h"
#include "pool.h"
#include "transport.h"
#include "util.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_env();
    char err[ICN_ERRLEN], msg[ICN_ERRLEN];
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    if (icn_frame_unpack(data, size, &u, err, sizeof err) == 0) {
        const msgpack_object *m = &u.data;
        int64_t a, b;
        if (icn_map_kind_is(m, "fetch")) {
            (void)(icn_map_i64(m, "offset", 0, INT64_MAX, &a, err, sizeof err) ||
                   icn_map_i64(m, "max", 1, 1000000, &b, err, sizeof err));
        } else if (icn_map_kind_is(m, "error")) {
            (void)icn_map_str(m, "message", msg, sizeof msg, err, sizeof err);
        } else if (icn_map_kind_is(m, "stats")) {
            icn_pool_counts c;
            int64_t rejected;
            if (icn_decode_pool_stats(m, &c, &rejected, err, sizeof err) == 0) icn_pool_counts_free(&c);
        } else {
            icn_batch r;
            if (icn_decode_records(m, &a, &b, &r, err, sizeof err) == 0) icn_batch_free(&r);
        }
    }
    msgpack_unpacked_destroy(&u);
    return 0;
}
