#include "plot.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fileio.h"
#include "json.h"
#include "util.h"

#define MAX_LINE (1 << 20)
#define MAX_RUNS 1000000
#define MAX_METHODS 64

extern char **environ;

/* ---- reading results ---- */

static int valid_method(const char *s) {
    size_t n = strlen(s);
    if (n < 1 || n > ICN_METHOD_MAX) return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || strchr("_.+-", *s)))
            return 0;
    return 1;
}

/* A whole number in [lo, hi] under `key`, or an error naming it. */
static int whole(const icn_json_member *ms, int n, const char *key, double lo, double hi, int64_t *out, const char *where,
                 char *err, size_t errlen) {
    const icn_json_member *m = icn_json_find(ms, n, key);
    if (!m) return icn_errf(err, errlen, "%s: no \"%s\"", where, key);
    if (m->type != ICN_JSON_NUMBER) return icn_errf(err, errlen, "%s: %s is %s, not a number", where, key, icn_json_type_name(m->type));
    double v = m->number; /* finite: the reader refuses NaN and infinities (json.h) */
    if (!(v >= lo && v <= hi) || v != floor(v))
        return icn_errf(err, errlen, "%s: %s is %g, not a whole number from %.0f to %.0f", where, key, v, lo, hi);
    *out = (int64_t)v;
    return 0;
}

static int parse_run(const char *line, size_t len, icn_run_result *run, const char *where, char *err, size_t errlen) {
    icn_json_member *ms;
    int n, rc = -1;
    char jerr[ICN_ERRLEN];
    if (icn_json_parse_object(line, len, &ms, &n, jerr, sizeof jerr))
        return icn_errf(err, errlen, "%s: not a JSON object: %s", where, jerr);
    const icn_json_member *method = icn_json_find(ms, n, "method"), *e = icn_json_find(ms, n, "error");
    if (whole(ms, n, "images", 1, 1e9, &run->images, where, err, errlen) ||
        whole(ms, n, "seed", -9007199254740991.0, 9007199254740991.0, &run->seed, where, err, errlen))
        goto out;
    if (!method) { icn_errf(err, errlen, "%s: no \"method\"", where); goto out; }
    if (method->type != ICN_JSON_STRING || !valid_method(method->string)) {
        icn_errf(err, errlen, "%s: method must be a string of 1 to %d letters, digits or _.+-", where, ICN_METHOD_MAX);
        goto out;
    }
    if (!e) { icn_errf(err, errlen, "%s: no \"error\"", where); goto out; }
    if (e->type != ICN_JSON_NUMBER) {
        icn_errf(err, errlen, "%s: error is %s, not a number in [0, 1]", where, icn_json_type_name(e->type));
        goto out;
    }
    if (!(e->number >= 0 && e->number <= 1)) { /* the reader refuses NaN and infinities (json.h) */
        icn_errf(err, errlen, "%s: error is %g, not a number in [0, 1]", where, e->number);
        goto out;
    }
    snprintf(run->method, sizeof run->method, "%s", method->string);
    run->error = e->number;
    rc = 0;
out:
    icn_json_free(ms, n);
    return rc;
}

int icn_results_read(icn_results *r, const char *path, char *err, size_t errlen) {
    int is_stdin = strcmp(path, "-") == 0;
    FILE *f = is_stdin ? stdin : icn_fopen_regular(path, err, errlen); /* a FIFO or device: refused */
    if (!f) return -1;
    r->files = xrealloc(r->files, (size_t)(r->n_files + 1) * sizeof *r->files);
    r->files[r->n_files] = xstrdup(is_stdin ? "(stdin)" : path);
    const char *name = r->files[r->n_files++];
    size_t cap = 4096; /* grows with the longest line, up to MAX_LINE */
    char *line = xmalloc(cap + 1);
    char where[ICN_ERRLEN];
    int64_t lineno = 0;
    int rc = 0, c = 0;
    while (rc == 0 && c != EOF) {
        size_t len = 0;
        int too_long = 0;
        while ((c = getc(f)) != EOF && c != '\n') {
            if (len == cap && cap < MAX_LINE) line = xrealloc(line, (cap = cap * 2 < MAX_LINE ? cap * 2 : MAX_LINE) + 1);
            if (len < cap) line[len++] = (char)c;
            else too_long = 1;
        }
        if (c == EOF && len == 0 && !too_long) break;
        lineno++;
        snprintf(where, sizeof where, "%.200s:%lld", name, (long long)lineno);
        if (too_long) { rc = icn_errf(err, errlen, "%s: line longer than %d bytes", where, MAX_LINE); break; }
        size_t k = 0;
        while (k < len && (line[k] == ' ' || line[k] == '\t' || line[k] == '\r')) k++;
        if (k == len) continue; /* blank */
        if (r->n == MAX_RUNS) { rc = icn_errf(err, errlen, "%s: more than %d results", where, MAX_RUNS); break; }
        if (r->n == r->cap) {
            r->cap = r->cap ? 2 * r->cap : 64;
            r->runs = xrealloc(r->runs, r->cap * sizeof *r->runs);
        }
        icn_run_result *run = &r->runs[r->n];
        if (parse_run(line, len, run, where, err, errlen)) { rc = -1; break; }
        run->file = r->n_files - 1;
        run->line = lineno;
        r->n++;
    }
    if (rc == 0 && ferror(f)) rc = icn_errf(err, errlen, "%s: read error: %s", name, strerror(errno));
    free(line);
    if (!is_stdin) fclose(f);
    return rc;
}

void icn_results_free(icn_results *r) {
    for (int i = 0; i < r->n_files; i++) free(r->files[i]);
    free(r->files);
    free(r->runs);
    memset(r, 0, sizeof *r);
}

/* ---- summarizing ---- */

typedef struct {
    const icn_run_result *run;
    int rank; /* the method's order of first appearance */
} keyed;

static int by_key(const void *a, const void *b) {
    const keyed *x = a, *y = b;
    if (x->rank != y->rank) return x->rank < y->rank ? -1 : 1;
    if (x->run->images != y->run->images) return x->run->images < y->run->images ? -1 : 1;
    if (x->run->seed != y->run->seed) return x->run->seed < y->run->seed ? -1 : 1;
    if (x->run->file != y->run->file) return x->run->file < y->run->file ? -1 : 1;
    return x->run->line < y->run->line ? -1 : x->run->line > y->run->line;
}

int icn_results_summarize(const icn_results *r, icn_curve_point **points, size_t *n, char *err, size_t errlen) {
    *points = NULL;
    *n = 0;
    if (r->n == 0) return icn_errf(err, errlen, "no results to plot");
    const char *methods[MAX_METHODS];
    int n_methods = 0;
    keyed *k = xmalloc(r->n * sizeof *k);
    for (size_t i = 0; i < r->n; i++) {
        int m = 0;
        while (m < n_methods && strcmp(methods[m], r->runs[i].method) != 0) m++;
        if (m == n_methods) {
            if (n_methods == MAX_METHODS) {
                free(k);
                return icn_errf(err, errlen, "%s:%lld: more than %d methods", r->files[r->runs[i].file],
                                (long long)r->runs[i].line, MAX_METHODS);
            }
            methods[n_methods++] = r->runs[i].method;
        }
        k[i] = (keyed){&r->runs[i], m};
    }
    qsort(k, r->n, sizeof *k, by_key);
    icn_curve_point *p = xmalloc(r->n * sizeof *p);
    size_t np = 0;
    for (size_t i = 0; i < r->n;) {
        size_t j = i;
        double sum = 0;
        for (; j < r->n && k[j].rank == k[i].rank && k[j].run->images == k[i].run->images; j++) {
            if (j > i && k[j].run->seed == k[j - 1].run->seed) {
                const icn_run_result *a = k[j - 1].run, *b = k[j].run;
                icn_errf(err, errlen, "%.200s:%lld: a second result for method %s, %lld images, seed %lld (the first: %.200s:%lld)",
                         r->files[b->file], (long long)b->line, b->method, (long long)b->images, (long long)b->seed,
                         r->files[a->file], (long long)a->line);
                free(k);
                free(p);
                return -1;
            }
            sum += k[j].run->error;
        }
        icn_curve_point *q = &p[np++];
        memcpy(q->method, k[i].run->method, sizeof q->method);
        q->images = k[i].run->images;
        q->seeds = (int)(j - i);
        q->mean = sum / q->seeds;
        double ss = 0;
        for (size_t t = i; t < j; t++) ss += (k[t].run->error - q->mean) * (k[t].run->error - q->mean);
        q->sd = q->seeds > 1 ? sqrt(ss / (q->seeds - 1)) : 0;
        i = j;
    }
    free(k);
    *points = p;
    *n = np;
    return 0;
}

const char *icn_method_label(const char *method) {
    if (!strcmp(method, "icn")) return "ICN";
    if (!strcmp(method, "noise")) return "ICN-noise";
    return method;
}

/* ---- the gnuplot script ---- */

/* s as a gnuplot single-quoted string (no substitution happens inside one; ' doubles). */
static int quoted(FILE *f, const char *s, const char *what, char *err, size_t errlen) {
    for (const char *c = s; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f) return icn_errf(err, errlen, "%s: contains a control character", what);
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'') fputc('\'', f);
        fputc(*s, f);
    }
    fputc('\'', f);
    return 0;
}

static void thousands(char *buf, size_t len, int64_t v) {
    char digits[32];
    int n = snprintf(digits, sizeof digits, "%lld", (long long)v), o = 0;
    for (int i = 0; i < n && o + 2 < (int)len; i++) {
        if (i > 0 && (n - i) % 3 == 0) buf[o++] = ',';
        buf[o++] = digits[i];
    }
    buf[o] = 0;
}

static int by_size(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

int icn_plot_script(char **script, const icn_curve_point *p, size_t n, const icn_plot_opts *o, const char *out,
                    char *err, size_t errlen) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) icn_die(1, "out of memory");
    int rc = 0;
    fprintf(f, "# written by icn-eval plot: test error against training-set size, mean +- standard deviation over seeds\n");
    fprintf(f, "set terminal pngcairo size %d,%d noenhanced font ',11'\nset output ", o->width, o->height);
    rc = quoted(f, out, "--out", err, errlen);
    fprintf(f, "\nset title ");
    if (!rc) rc = quoted(f, o->title ? o->title : "Test error against training-set size", "--title", err, errlen);
    fprintf(f, "\nset xlabel 'training images'\nset ylabel 'test error (%%)'\nset logscale x\nset yrange [0:*]\n"
               "set grid\nset key top right\nset bars 1.5\n");
    /* x tics at the sizes measured, with a margin on the log scale */
    int64_t *sizes = xmalloc(n * sizeof *sizes);
    size_t ns = 0;
    for (size_t i = 0; i < n; i++) {
        size_t j = 0;
        while (j < ns && sizes[j] != p[i].images) j++;
        if (j == ns) sizes[ns++] = p[i].images;
    }
    qsort(sizes, ns, sizeof *sizes, by_size);
    fprintf(f, "set xrange [%g:%g]\nset xtics (", ns ? sizes[0] / 1.5 : 1.0, ns ? sizes[ns - 1] * 1.5 : 10.0);
    for (size_t i = 0; i < ns; i++) {
        char label[40];
        thousands(label, sizeof label, sizes[i]);
        fprintf(f, "%s'%s' %lld", i ? ", " : "", label, (long long)sizes[i]);
    }
    fprintf(f, ")\n");
    free(sizes);
    /* one data block per method: images, mean error %, standard deviation %, seeds */
    int blocks = 0;
    for (size_t i = 0; i < n; blocks++) {
        fprintf(f, "$m%d << EOD\n# images  error%%  sd%%  seeds  (%s)\n", blocks, p[i].method);
        size_t j = i;
        for (; j < n && !strcmp(p[j].method, p[i].method); j++)
            fprintf(f, "%lld %.6f %.6f %d\n", (long long)p[j].images, 100 * p[j].mean, 100 * p[j].sd, p[j].seeds);
        fprintf(f, "EOD\n");
        i = j;
    }
    fprintf(f, "plot ");
    for (size_t i = 0, b = 0; i < n; b++) {
        int lo = p[i].seeds, hi = p[i].seeds;
        size_t j = i;
        for (; j < n && !strcmp(p[j].method, p[i].method); j++) {
            if (p[j].seeds < lo) lo = p[j].seeds;
            if (p[j].seeds > hi) hi = p[j].seeds;
        }
        char title[ICN_METHOD_MAX + 64];
        if (lo == hi) snprintf(title, sizeof title, "%s (%d seed%s)", icn_method_label(p[i].method), lo, lo == 1 ? "" : "s");
        else snprintf(title, sizeof title, "%s (%d-%d seeds)", icn_method_label(p[i].method), lo, hi);
        fprintf(f, "%s$m%zu using 1:2:3 with yerrorlines lw 2 pt 7 ps 1.2 title ", b ? ", \\\n     " : "", b);
        quoted(f, title, "method", err, errlen); /* method names are checked when read */
        i = j;
    }
    fprintf(f, "\n");
    fclose(f);
    if (rc) { free(text); return -1; }
    *script = text;
    return 0;
}

/* ---- running gnuplot ---- */

/* The last non-empty line of gnuplot's output, printable, for a one-line error. */
static void last_line(const char *out, size_t len, char *line, size_t size) {
    while (len && (out[len - 1] == '\n' || out[len - 1] == '\r' || out[len - 1] == ' ')) len--;
    size_t start = len;
    while (start && out[start - 1] != '\n') start--;
    size_t o = 0;
    for (size_t i = start; i < len && o + 1 < size; i++) line[o++] = (unsigned char)out[i] < 0x20 ? ' ' : out[i];
    line[o] = 0;
    if (!o) snprintf(line, size, "(no output)");
}

int icn_plot_png(const icn_curve_point *p, size_t n, const icn_plot_opts *o, const char *out, char *err, size_t errlen) {
    /* gnuplot draws into a private file; its bytes then go to `out` through icn_out (fileio.h),
     * so a device or FIFO given as `out` is written in place and a file is replaced atomically. */
    char *script = NULL, gp[64] = "", tmp[64] = "";
    uint8_t *png = NULL;
    size_t png_len = 0;
    icn_out dst = {.fd = -1};
    int rc = -1, sfd = -1, pipefd[2] = {-1, -1};
    const char *tmpdir = getenv("TMPDIR");
    tmpdir = tmpdir && *tmpdir && strlen(tmpdir) <= 40 ? tmpdir : "/tmp";
    snprintf(tmp, sizeof tmp, "%s/icn-plot-XXXXXX.png", tmpdir);
    int pfd = mkstemps(tmp, 4);
    if (pfd < 0) { icn_errf(err, errlen, "%s: cannot create: %s", tmp, strerror(errno)); tmp[0] = 0; goto done; }
    close(pfd);
    if (icn_plot_script(&script, p, n, o, tmp, err, errlen)) goto done;
    snprintf(gp, sizeof gp, "%s/icn-plot-XXXXXX", tmpdir);
    sfd = mkstemp(gp);
    if (sfd < 0) { icn_errf(err, errlen, "%s: cannot create the gnuplot script: %s", gp, strerror(errno)); goto done; }
    size_t slen = strlen(script);
    if (write(sfd, script, slen) != (ssize_t)slen || close(sfd) != 0) {
        sfd = -1;
        icn_errf(err, errlen, "%s: cannot write the gnuplot script: %s", gp, strerror(errno));
        goto done;
    }
    sfd = -1;
    if (icn_out_open(&dst, out, err, errlen)) goto done; /* a clear error for an unwritable place, before gnuplot */
    if (pipe(pipefd) != 0) { icn_errf(err, errlen, "pipe: %s", strerror(errno)); goto done; }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
    posix_spawn_file_actions_adddup2(&fa, pipefd[1], 2);
    posix_spawn_file_actions_addclose(&fa, pipefd[0]);
    posix_spawn_file_actions_addclose(&fa, pipefd[1]);
    char *argv[] = {"gnuplot", gp, NULL};
    pid_t pid;
    int e = posix_spawnp(&pid, "gnuplot", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(pipefd[1]);
    pipefd[1] = -1;
    if (e) {
        if (e == ENOENT) icn_errf(err, errlen, "gnuplot not found on PATH (Debian: apt-get install gnuplot-nox)");
        else icn_errf(err, errlen, "cannot run gnuplot: %s", strerror(e));
        goto done;
    }
    char output[4096]; /* its last 4 KiB */
    size_t got = 0;
    for (;;) {
        char buf[4096];
        ssize_t r = read(pipefd[0], buf, sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        if ((size_t)r >= sizeof output) { memcpy(output, buf + r - sizeof output, sizeof output); got = sizeof output; continue; }
        if (got + (size_t)r > sizeof output) {
            size_t drop = got + (size_t)r - sizeof output;
            memmove(output, output + drop, got - drop);
            got -= drop;
        }
        memcpy(output + got, buf, (size_t)r);
        got += (size_t)r;
    }
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    char line[200];
    last_line(output, got, line, sizeof line);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        icn_errf(err, errlen, "gnuplot failed (%s %d): %s", WIFEXITED(status) ? "exit" : "signal",
                 WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), line);
        goto done;
    }
    char e2[ICN_ERRLEN];
    if (icn_read_file(tmp, (size_t)1 << 30, &png, &png_len, e2, sizeof e2) || png_len < 8 ||
        memcmp(png, "\x89PNG\r\n\x1a\n", 8) != 0) {
        icn_errf(err, errlen, "%s: gnuplot wrote no PNG: %s", out, got ? line : "(no output)");
        goto done;
    }
    if (icn_out_write(&dst, png, png_len, err, errlen) || icn_out_commit(&dst, err, errlen)) goto done;
    rc = 0;
done:
    if (pipefd[0] >= 0) close(pipefd[0]);
    if (pipefd[1] >= 0) close(pipefd[1]);
    if (script && gp[0]) unlink(gp);
    if (tmp[0]) unlink(tmp);
    icn_out_abort(&dst);
    free(png);
    free(script);
    return rc;
}
