/* fuzz_control: the snapshot channel as icn-synthesize reads it (poll_snapshot): a frame is
 * "stop", "hold" (with the generation it ends) or a model snapshot, decided by its kind. */
#include "fuzz.h"
#include "net.h"
#include "snapshot.h"
#include "util.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_env();
    char err[ICN_ERRLEN];
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    if (icn_frame_unpack(data, size, &u, err, sizeof err) == 0) {
        int64_t gen;
        if (icn_map_kind_is(&u.data, "stop")) {
        } else if (icn_map_kind_is(&u.data, "hold")) {
            (void)icn_map_i64(&u.data, "generation", 0, INT64_MAX, &gen, err, sizeof err);
        } else {
            icn_net net;
            icn_model_meta meta;
            if (icn_model_decode(data, size, &net, &meta, NULL, NULL, err, sizeof err) == 0) icn_net_free(&net);
        }
    }
    msgpack_unpacked_destroy(&u);
    return 0;
}
