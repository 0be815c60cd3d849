/* fuzz_batch: "batch" frames, the tensor stream: one frame decoded whole (as from a ZeroMQ
 * message: icn_frame_unpack + icn_batch_decode), and the same bytes read as a stream of
 * frames from a file (icn_batch_read_all: the incremental walker, frame after frame). */
#include "fuzz.h"
#include "util.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static fuzz_file f;
    fuzz_env();
    char err[ICN_ERRLEN];
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    if (icn_frame_unpack(data, size, &u, err, sizeof err) == 0) {
        icn_batch b;
        if (icn_batch_decode(&u.data, &b, err, sizeof err) == 0) icn_batch_free(&b);
    }
    msgpack_unpacked_destroy(&u);
    icn_batch all;
    if (icn_batch_read_all(fuzz_file_put(&f, data, size), &all, err, sizeof err) == 0) icn_batch_free(&all);
    return 0;
}
