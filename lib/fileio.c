/* fileio.c: regular-file checks for readers, and the atomic (or in-place) output file. */
#include "fileio.h"

#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *file_type(mode_t m) {
    return S_ISDIR(m) ? "a directory" : S_ISFIFO(m) ? "a FIFO" : S_ISCHR(m) ? "a character device"
         : S_ISBLK(m) ? "a block device" : S_ISSOCK(m) ? "a socket" : "not a plain file";
}

/* ---------------------------------------------------------------- reading */

int icn_open_regular(const char *path, char *err, size_t errlen) { return icn_open_regular_as(path, O_RDONLY, 0, err, errlen); }

int icn_open_regular_as(const char *path, int flags, int mode, char *err, size_t errlen) {
    /* O_NONBLOCK: opening a FIFO without a writer returns at once instead of waiting forever. */
    int fd = open(path, flags | O_NONBLOCK | O_CLOEXEC | O_NOCTTY, mode);
    if (fd < 0) return icn_errf(err, errlen, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return icn_errf(err, errlen, "%s: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return icn_errf(err, errlen, "%s: not a regular file (%s)", path, file_type(st.st_mode));
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0) {
        int e = errno;
        close(fd);
        return icn_errf(err, errlen, "%s: %s", path, strerror(e));
    }
    return fd;
}

FILE *icn_fopen_regular(const char *path, char *err, size_t errlen) {
    int fd = icn_open_regular(path, err, errlen);
    if (fd < 0) return NULL;
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        icn_errf(err, errlen, "%s: %s", path, strerror(errno));
        close(fd);
    }
    return f;
}

int icn_read_file(const char *path, size_t max_bytes, uint8_t **data, size_t *len, char *err, size_t errlen) {
    int fd = icn_open_regular(path, err, errlen);
    if (fd < 0) return -1;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return icn_errf(err, errlen, "%s: %s", path, strerror(errno));
    }
    if ((uint64_t)st.st_size > max_bytes) {
        close(fd);
        return icn_errf(err, errlen, "%s: %lld bytes is larger than the limit of %zu", path, (long long)st.st_size,
                        max_bytes);
    }
    size_t n = (size_t)st.st_size, got = 0;
    uint8_t *buf = xmalloc(n);
    while (got < n) {
        ssize_t k = read(fd, buf + got, n - got);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        got += (size_t)k;
    }
    close(fd);
    if (got != n) {
        free(buf);
        return icn_errf(err, errlen, "%s: short read (%zu of %zu bytes)", path, got, n);
    }
    *data = buf;
    *len = n;
    return 0;
}

/* ---------------------------------------------------------------- writing */

/* The library's one write loop: all n bytes at `at` (pwrite), or at the file position when
 * at < 0 (write), through EINTR and short writes. */
int icn_write_at(int fd, const void *p, size_t n, int64_t at, char *err, size_t errlen) {
    const uint8_t *b = p;
    while (n) {
        ssize_t k = at < 0 ? write(fd, b, n) : pwrite(fd, b, n, (off_t)at);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            if (at < 0) return icn_errf(err, errlen, "write failed: %s", k < 0 ? strerror(errno) : "wrote nothing");
            return icn_errf(err, errlen, "write failed at byte %lld: %s", (long long)at,
                            k < 0 ? strerror(errno) : "wrote nothing");
        }
        b += k, n -= (size_t)k;
        if (at >= 0) at += k;
    }
    return 0;
}

int icn_write_all(int fd, const void *p, size_t n, char *err, size_t errlen) { return icn_write_at(fd, p, n, -1, err, errlen); }

int icn_read_at(int fd, void *p, size_t n, uint64_t at, char *err, size_t errlen) {
    uint8_t *d = p;
    while (n) {
        ssize_t k = pread(fd, d, n, (off_t)at);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) return icn_errf(err, errlen, "read error at byte %llu: %s", (unsigned long long)at, strerror(errno));
        if (k == 0) return 1;
        d += k, n -= (size_t)k, at += (uint64_t)k;
    }
    return 0;
}

int icn_file_is_zero(int fd, uint64_t at, uint64_t end) {
    uint8_t blk[65536];
    char e[ICN_ERRLEN];
    while (at < end) {
        size_t n = end - at < sizeof blk ? (size_t)(end - at) : sizeof blk;
        if (icn_read_at(fd, blk, n, at, e, sizeof e)) return 0;
        for (size_t i = 0; i < n; i++)
            if (blk[i]) return 0;
        at += n;
    }
    return 1;
}

int icn_fdatasync(int fd) {
    int r;
    while ((r = fdatasync(fd)) != 0 && errno == EINTR) {
    }
    return r;
}

/* The library's one directory sync: fsync the directory holding path, so that a file created
 * or renamed into it is durable; -1 with err when that fails. */
int icn_fsync_dir_of(const char *path, char *err, size_t errlen) {
    char *d = strdup(path);
    if (!d) return icn_errf(err, errlen, "%s: out of memory", path);
    int rc = 0, dfd = open(dirname(d), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    /* EINVAL: a file system that cannot sync directories (nothing more can be done there) */
    if (dfd < 0 || (fsync(dfd) != 0 && errno != EINVAL))
        rc = icn_errf(err, errlen, "%s: the directory could not be synced: %s", path, strerror(errno));
    if (dfd >= 0) close(dfd);
    free(d);
    return rc;
}

static char *dup_str(const char *s) {
    char *d = strdup(s);
    if (!d) icn_die(3, "out of memory");
    return d;
}

static int open_in_place(icn_out *o, const char *path, int flags, char *err, size_t errlen) {
    o->fd = open(path, O_WRONLY | O_CLOEXEC | O_NOCTTY | flags, 0644);
    if (o->fd < 0) return icn_errf(err, errlen, "%s: cannot open for writing: %s", path, strerror(errno));
    o->in_place = 1;
    o->own_fd = 1;
    o->target = dup_str(path);
    return 0;
}

int icn_out_open(icn_out *o, const char *path, char *err, size_t errlen) {
    memset(o, 0, sizeof *o);
    o->fd = -1;
    if (strcmp(path, "-") == 0) {
        o->fd = 1;
        o->in_place = 1;
        o->target = dup_str("stdout");
        return 0;
    }
    struct stat st;
    int exists = stat(path, &st) == 0;
    if (!exists && errno != ENOENT) return icn_errf(err, errlen, "%s: %s", path, strerror(errno));
    /* Devices, FIFOs, sockets, /dev/stdout and friends: never renamed onto. */
    if (!strncmp(path, "/dev/", 5) || !strncmp(path, "/proc/", 6))
        return open_in_place(o, path, exists && S_ISREG(st.st_mode) ? O_TRUNC : exists ? 0 : O_CREAT | O_TRUNC, err,
                             errlen);
    if (exists && S_ISDIR(st.st_mode)) return icn_errf(err, errlen, "%s: is a directory", path);
    if (exists && !S_ISREG(st.st_mode)) return open_in_place(o, path, 0, err, errlen);
    if (exists) { /* through any symlinks to the file itself, so that a link stays a link */
        o->target = realpath(path, NULL);
        if (!o->target) return icn_errf(err, errlen, "%s: %s", path, strerror(errno));
    } else {
        o->target = dup_str(path);
    }
    static unsigned counter;
    size_t tl = strlen(o->target) + 48;
    o->tmp = xmalloc(tl);
    snprintf(o->tmp, tl, "%s.tmp.%ld.%u", o->target, (long)getpid(), counter++);
    o->fd = open(o->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (o->fd < 0) {
        int e = errno;
        icn_errf(err, errlen, "%s: cannot create %s: %s", path, o->tmp, strerror(e));
        free(o->tmp), free(o->target);
        memset(o, 0, sizeof *o);
        o->fd = -1;
        return -1;
    }
    o->own_fd = 1;
    if (exists) (void)fchmod(o->fd, st.st_mode & 07777); /* replacing a file keeps its permissions */
    return 0;
}

int icn_out_write(icn_out *o, const void *buf, size_t n, char *err, size_t errlen) {
    char e[ICN_ERRLEN];
    if (icn_write_at(o->fd, buf, n, -1, e, sizeof e))
        return icn_errf(err, errlen, "%s: %s", o->tmp ? o->tmp : o->target, e);
    return 0;
}

static void out_release(icn_out *o) {
    free(o->target);
    free(o->tmp);
    memset(o, 0, sizeof *o);
    o->fd = -1;
}

int icn_out_commit(icn_out *o, char *err, size_t errlen) {
    int rc = 0;
    if (o->in_place) {
        if (o->own_fd && close(o->fd) != 0) rc = icn_errf(err, errlen, "%s: %s", o->target, strerror(errno));
        out_release(o);
        return rc;
    }
    if (!o->tmp) return icn_errf(err, errlen, "output file: nothing open to commit");
    if (fsync(o->fd) != 0) rc = icn_errf(err, errlen, "%s: fsync failed: %s", o->tmp, strerror(errno));
    if (close(o->fd) != 0 && rc == 0) rc = icn_errf(err, errlen, "%s: close failed: %s", o->tmp, strerror(errno));
    o->fd = -1;
    if (rc == 0 && rename(o->tmp, o->target) != 0)
        rc = icn_errf(err, errlen, "%s: cannot rename into place: %s", o->target, strerror(errno));
    if (rc == 0) rc = icn_fsync_dir_of(o->target, err, errlen);
    else unlink(o->tmp);
    out_release(o);
    return rc;
}

void icn_out_abort(icn_out *o) {
    if (!o->target) return; /* zeroed, committed or aborted already */
    if (o->fd >= 0 && o->own_fd) close(o->fd);
    if (o->tmp) unlink(o->tmp);
    out_release(o);
}

int icn_write_file_atomic(const char *path, const void *data, size_t len, char *err, size_t errlen) {
    icn_out o;
    if (icn_out_open(&o, path, err, errlen)) return -1;
    if (icn_out_write(&o, data, len, err, errlen)) {
        icn_out_abort(&o);
        return -1;
    }
    return icn_out_commit(&o, err, errlen);
}
