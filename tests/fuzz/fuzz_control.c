/* fuzz_control: the snapshot channel as icn-synthesize reads it (lib/inbox.c through
 * lib/protocol.c): a frame is "stop", "hold" (with the generation it ends), "heartbeat" or a
 * model snapshot, decided by its kind and decoded once; and its request socket as the
 * publisher reads it ("snapshot_request") and the synthesizer reads the replies. */
#include "fuzz.h"
#include "protocol.h"
#include "util.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_env();
    char err[ICN_ERRLEN];
    icn_msg m;
    if (icn_msg_decode(data, size, ICN_SNAPSHOT_KINDS, 0, &m, err, sizeof err) == 0) icn_msg_free(&m);
    if (icn_msg_decode(data, size, ICN_MSG_SNAPSHOT_REQUEST, 0, &m, err, sizeof err) == 0) icn_msg_free(&m);
    if (icn_msg_decode(data, size, ICN_SNAPSHOT_REPLY_KINDS, 0, &m, err, sizeof err) == 0) icn_msg_free(&m);
    return 0;
}
