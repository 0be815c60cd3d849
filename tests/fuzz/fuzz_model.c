/* fuzz_model: model files and checkpoints (kind "model", also the weight snapshot sent over
 * ZeroMQ): icn_model_load from a file; when it loads, again as a checkpoint with the
 * optimizer state restored (SGD and Adam, as --resume does). */
#include "fuzz.h"
#include "fileio.h"
#include "net.h"
#include "optim.h"
#include "snapshot.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static fuzz_file f;
    fuzz_env();
    char err[ICN_ERRLEN];
    icn_net net;
    icn_model_meta meta;
    const char *path = fuzz_file_put(&f, data, size);
    if (icn_model_load(path, &net, &meta, NULL, NULL, err, sizeof err)) return 0;
    size_t n = net.n_trainable;
    icn_net_free(&net);
    for (int adam = 0; adam < 2; adam++) {
        icn_optim o;
        if (adam) icn_optim_adam(&o, n, 0.9f, 0.999f, 1e-8f);
        else icn_optim_sgd(&o, n, 0.9f, 0.0f);
        int has = 0;
        if (icn_model_load(path, &net, &meta, &o, &has, err, sizeof err) == 0) icn_net_free(&net);
        icn_optim_free(&o);
    }
    return 0;
}
