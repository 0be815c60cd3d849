/* fuzz.h: what every libFuzzer harness in tests/fuzz/ shares.
 *
 * A harness is `int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)`, built by
 * `make fuzz` with clang -fsanitize=fuzzer,address,undefined against a libicn.a compiled with
 * the same sanitizers (build-fuzz/). Readers that take a path get the input through a memfd
 * (a regular file as far as fstat is concerned) named /proc/self/fd/N. Any exit() from the
 * library (icn_die on an allocation failure, say) is a finding: libFuzzer reports it. */
#ifndef ICN_FUZZ_H
#define ICN_FUZZ_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Keep frames small enough that a run stays within libFuzzer's memory limit; set before
 * anything reads it (icn_max_frame reads the environment each time). */
static inline void fuzz_env(void) {
    static int done;
    if (done) return;
    done = 1;
    setenv("ICN_MAX_FRAME", "67108864", 0); /* 64 MiB */
}

/* A memfd holding exactly data[0, n); slot keeps the descriptor across calls. Returns the
 * path that opens it, valid until the next call with the same slot. */
typedef struct { int fd; char path[64]; } fuzz_file;

static inline const char *fuzz_file_put(fuzz_file *f, const void *data, size_t n) {
    if (f->fd <= 0) {
        f->fd = memfd_create("icn-fuzz", 0);
        if (f->fd < 0) { perror("memfd_create"); abort(); }
        snprintf(f->path, sizeof f->path, "/proc/self/fd/%d", f->fd);
    }
    if (ftruncate(f->fd, 0) != 0) abort();
    const uint8_t *p = data;
    size_t off = 0;
    while (off < n) {
        ssize_t k = pwrite(f->fd, p + off, n - off, (off_t)off);
        if (k <= 0) abort();
        off += (size_t)k;
    }
    return f->path;
}

#endif
