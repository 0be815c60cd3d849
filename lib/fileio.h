/* fileio.h: opening untrusted input files, and the ONE way icn writes an output file.
 *
 * Reading. Every path is untrusted: a FIFO, a device or a directory given where a data file
 * is expected must be refused at once, not read (a FIFO with no writer blocks forever in
 * fopen). icn_open_regular opens with O_NONBLOCK (so opening a FIFO cannot block), checks
 * with fstat that it is a regular file, then clears O_NONBLOCK.
 *
 * Writing. icn_out_open / icn_out_commit / icn_out_abort:
 *   - a new path, or an existing regular file: the bytes go to a temporary file in the same
 *     directory ("PATH.tmp.PID.N"); commit fsyncs it, renames it onto PATH and fsyncs the
 *     directory. A reader never sees half a file, and a failure (or abort) leaves whatever
 *     was at PATH untouched. A symbolic link to a regular file keeps being a link: the file
 *     it points to is replaced.
 *   - "-": standard output, written in place (not closed by commit).
 *   - an existing target that is not a regular file (a character or block device such as
 *     /dev/null, a FIFO, a socket, /dev/stdout when stdout is a pipe or a terminal): opened
 *     and written IN PLACE, never renamed onto. So `--out /dev/null` leaves /dev/null a device.
 *     Anything under /dev/ or /proc/ is written in place too, whatever it is.
 * Every error is one line in err naming the path. */
#ifndef ICN_FILEIO_H
#define ICN_FILEIO_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Open `path` read-only; -1 with err ("PATH: not a regular file (a FIFO)") unless it is a
 * regular file. The descriptor is close-on-exec and blocking. */
int icn_open_regular(const char *path, char *err, size_t errlen);
/* The same with open(2)'s flags (O_RDWR, O_CREAT, O_EXCL...) and mode. */
int icn_open_regular_as(const char *path, int flags, int mode, char *err, size_t errlen);
/* The same as a stdio stream ("rb"); NULL with err. */
FILE *icn_fopen_regular(const char *path, char *err, size_t errlen);
/* Read a whole regular file of at most max_bytes into *data (malloc'd). */
int icn_read_file(const char *path, size_t max_bytes, uint8_t **data, size_t *len, char *err, size_t errlen);

typedef struct {
    int fd;        /* write here */
    int in_place;  /* 1: writing the target itself (stdout, a device, a FIFO) */
    int own_fd;    /* 0 for stdout */
    char *target;  /* where the bytes end up (a symlink resolved) */
    char *tmp;     /* the temporary file, NULL when in place */
} icn_out;

/* Start writing `path` (see above). 0, or -1 with err. */
int icn_out_open(icn_out *o, const char *path, char *err, size_t errlen);
/* Write all of buf to o->fd (short writes and EINTR handled). */
int icn_out_write(icn_out *o, const void *buf, size_t n, char *err, size_t errlen);
/* Finish: fsync, close, rename into place, fsync the directory (a temporary file), or
 * just close (in place). On failure the temporary file is removed. o is released either way. */
int icn_out_commit(icn_out *o, char *err, size_t errlen);
/* Give up: close and remove the temporary file; the target is untouched. Safe to call on a
 * committed, aborted or zeroed icn_out. */
void icn_out_abort(icn_out *o);

/* The whole file at once: icn_out_open, icn_out_write, icn_out_commit. */
int icn_write_file_atomic(const char *path, const void *data, size_t len, char *err, size_t errlen);

/* The library's one write loop and one directory sync (every file writer uses them):
 * icn_write_at writes all n bytes at offset `at` (pwrite), or at the file position when at < 0;
 * icn_write_all(fd, ...) is icn_write_at(fd, ..., -1, ...). 0, or -1 with err. */
int icn_write_at(int fd, const void *p, size_t n, int64_t at, char *err, size_t errlen);
int icn_write_all(int fd, const void *p, size_t n, char *err, size_t errlen);
/* All n bytes at `at`: 0; 1 when the file ends first; -1 with err on a read error. */
int icn_read_at(int fd, void *p, size_t n, uint64_t at, char *err, size_t errlen);
/* 1 when bytes [at, end) of fd are all zero (a page-aligned hole a crash left), else 0 (a read
 * error included). */
int icn_file_is_zero(int fd, uint64_t at, uint64_t end);
int icn_fdatasync(int fd); /* fdatasync through EINTR: 0, or -1 with errno */
/* fsync the directory holding path (a new or renamed file in it is then durable). */
int icn_fsync_dir_of(const char *path, char *err, size_t errlen);

#endif
