#include "fastconv.h"

#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gemm.h"
#include "sgemm.h"
#include "parallel.h"
#include "util.h"

/* libgomp's, declared here so that no OpenMP flag is needed to build: the thread count of
 * oneDNN's parallel regions started by the calling thread. */
void omp_set_num_threads(int n);

enum { FWD, FWD_SUM, BWD_D, BWD_W, N_DIRS };
enum { CLASSES = 8, MAX_THREADS = 256 }; /* chunks of 1, 2, 4, ..., 128 images */
enum { A_SRC, A_WEI, A_DST, A_BIAS, A_SCRATCH, N_ARGS };

#define DN(call)                                                                                   \
    do {                                                                                           \
        dnnl_status_t st_ = (call);                                                                \
        if (st_ != dnnl_success) icn_die(3, "oneDNN: %s: %s", #call, dnnl_status2str(st_));         \
    } while (0)

/* What one thread of icn's pool keeps: its stream, scratchpad, memory objects and sums. */
typedef struct {
    dnnl_stream_t stream;
    void *scratch;
    size_t scratch_bytes;
    dnnl_memory_t mem[N_DIRS][CLASSES][N_ARGS];
    dnnl_memory_t r_src, r_dst; /* the weight-gradient reorder's */
    float *dw_blk, *db_chunk;   /* a chunk's weight gradient in oneDNN's layout, its bias gradient */
    float *dw_sum, *db_sum;     /* threads > 0: their sums, added to the caller's after the join */
    float *din_chunk;           /* backward-data that accumulates: a chunk's gradient before the add */
    float *dcol;                /* matrix-product kind: this thread's rows of the input gradient's col */
    long call;                  /* the call these sums belong to */
} thread_state;

struct icn_fastconv {
    icn_conv_shape s;
    int bias, max_class, ref_bwd_d;
    int gemm;   /* the matrix-product kind: im2col + oneDNN's sgemm */
    float *col; /* its im2col of the last forward's input [max_batch * OH * OW, K] */
    size_t in_size, out_size, n_weights;
    pthread_mutex_t lock; /* primitives made on first use, by any thread */
    dnnl_primitive_t prim[N_DIRS][CLASSES];
    const_dnnl_primitive_desc_t pd[N_DIRS][CLASSES];
    dnnl_memory_desc_t wmd[N_DIRS]; /* the weights' layout per direction, fixed by the first primitive */
    /* weights reordered for the forward and backward-data, once per call */
    float *w_blk[N_DIRS];
    dnnl_primitive_t w_reorder[N_DIRS], dw_reorder; /* ohwi -> blocked; blocked -> ohwi, adding */
    dnnl_memory_t w_plain, w_mem[N_DIRS];
    dnnl_stream_t stream; /* the caller's, for the weight reorders */
    thread_state *ts[MAX_THREADS];
    long call;
    float *dcol, *dref; /* the reference backward-data: its scratch, and its output when accumulating */
    int max_batch;
    char describe[160];
};

static dnnl_engine_t engine;
static pthread_once_t engine_once = PTHREAD_ONCE_INIT;
static void engine_init(void) {
    omp_set_num_threads(1);
    DN(dnnl_engine_create(&engine, dnnl_cpu, 0));
}

int icn_fastconv_reference_only(void) {
    static int mode = -1;
    if (mode < 0) {
        const char *v = getenv("ICN_CONV");
        if (!v || !*v || !strcmp(v, "fast")) mode = 0;
        else if (!strcmp(v, "reference")) mode = 1;
        else icn_die(2, "ICN_CONV='%s': expected 'reference' or 'fast'", v);
    }
    return mode;
}

static void md_init(dnnl_memory_desc_t *md, int ndims, const dnnl_dims_t dims, dnnl_format_tag_t tag) {
    DN(dnnl_memory_desc_init_by_tag(md, ndims, dims, dnnl_f32, tag));
}

/* The activation and parameter descriptors for a chunk of m images. */
static void shape_mds(const icn_fastconv *f, int m, dnnl_memory_desc_t *src, dnnl_memory_desc_t *dst,
                      dnnl_memory_desc_t *bias) {
    const icn_conv_shape *s = &f->s;
    dnnl_dims_t sd = {m, s->c, s->h, s->w}, dd = {m, s->oc, s->oh, s->ow}, bd = {s->oc};
    md_init(src, 4, sd, dnnl_nhwc);
    md_init(dst, 4, dd, dnnl_nhwc);
    md_init(bias, 1, bd, dnnl_a);
}

static int is_ref(const_dnnl_primitive_desc_t pd) {
    const char *impl = NULL;
    DN(dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl));
    return !strncmp(impl, "ref", 3);
}

static const char *impl_name(const_dnnl_primitive_desc_t pd) {
    const char *impl = NULL;
    DN(dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl));
    return impl;
}

/* Make the primitive of direction dir for chunks of 2^c images. The weights' layout is oneDNN's
 * choice for the first one made in each direction, and imposed on the others, so one reordered
 * copy serves every chunk size. Returns 0, or -1 where oneDNN has only its reference. */
static int make_prim(icn_fastconv *f, int dir, int c) {
    const icn_conv_shape *s = &f->s;
    const int m = 1 << c;
    dnnl_memory_desc_t src, dst, bias, wei;
    shape_mds(f, m, &src, &dst, &bias);
    int wdir = dir == FWD_SUM ? FWD : dir;
    dnnl_dims_t wd = {s->oc, s->c, s->k, s->k}, strides = {s->stride, s->stride}, pad = {s->pad, s->pad};
    if (f->wmd[wdir].ndims) wei = f->wmd[wdir];
    else md_init(&wei, 4, wd, dnnl_format_tag_any);
    dnnl_primitive_attr_t attr;
    DN(dnnl_primitive_attr_create(&attr));
    DN(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));
    if (dir == FWD_SUM) {
        dnnl_post_ops_t ops;
        DN(dnnl_post_ops_create(&ops));
        DN(dnnl_post_ops_append_sum(ops, 1.0f));
        DN(dnnl_primitive_attr_set_post_ops(attr, ops));
        DN(dnnl_post_ops_destroy(ops));
    }
    const dnnl_memory_desc_t *bmd = f->bias ? &bias : NULL;
    dnnl_convolution_desc_t fd, cd;
    DN(dnnl_convolution_forward_desc_init(&fd, dnnl_forward_training, dnnl_convolution_direct, &src, &wei, bmd, &dst,
                                          strides, pad, pad));
    dnnl_primitive_desc_t hint = NULL, pd = NULL;
    dnnl_status_t st;
    if (dir == FWD || dir == FWD_SUM) {
        st = dnnl_primitive_desc_create(&pd, &fd, attr, engine, NULL);
    } else {
        /* the backward passes need the forward's descriptor as a hint */
        if (f->wmd[FWD].ndims) {
            dnnl_memory_desc_t fw = f->wmd[FWD];
            DN(dnnl_convolution_forward_desc_init(&fd, dnnl_forward_training, dnnl_convolution_direct, &src, &fw, bmd,
                                                  &dst, strides, pad, pad));
        }
        st = dnnl_primitive_desc_create(&hint, &fd, NULL, engine, NULL);
        if (st == dnnl_success) {
            if (dir == BWD_D)
                DN(dnnl_convolution_backward_data_desc_init(&cd, dnnl_convolution_direct, &src, &wei, &dst, strides, pad,
                                                            pad));
            else
                DN(dnnl_convolution_backward_weights_desc_init(&cd, dnnl_convolution_direct, &src, &wei, bmd, &dst,
                                                               strides, pad, pad));
            st = dnnl_primitive_desc_create(&pd, &cd, attr, engine, hint);
        }
    }
    DN(dnnl_primitive_attr_destroy(attr));
    if (hint) DN(dnnl_primitive_desc_destroy(hint));
    if (st != dnnl_success || is_ref(pd)) {
        if (pd) DN(dnnl_primitive_desc_destroy(pd));
        return -1;
    }
    if (!f->wmd[wdir].ndims)
        f->wmd[wdir] = *dnnl_primitive_desc_query_md(pd, dir == BWD_W ? dnnl_query_diff_weights_md : dnnl_query_weights_md, 0);
    DN(dnnl_primitive_create(&f->prim[dir][c], pd));
    DN(dnnl_primitive_get_primitive_desc(f->prim[dir][c], &f->pd[dir][c]));
    DN(dnnl_primitive_desc_destroy(pd));
    return 0;
}

/* The primitive for direction dir and chunk class c, made on first use. */
static dnnl_primitive_t prim(icn_fastconv *f, int dir, int c) {
    pthread_mutex_lock(&f->lock);
    if (!f->prim[dir][c] && make_prim(f, dir, c))
        icn_die(3, "internal: oneDNN has no convolution for a chunk of %d images of a shape it took for %d", 1 << c,
                1 << f->max_class);
    pthread_mutex_unlock(&f->lock);
    return f->prim[dir][c];
}

static dnnl_primitive_t make_reorder(const dnnl_memory_desc_t *from, const dnnl_memory_desc_t *to, int add) {
    dnnl_primitive_attr_t attr = NULL;
    if (add) {
        dnnl_post_ops_t ops;
        DN(dnnl_primitive_attr_create(&attr));
        DN(dnnl_post_ops_create(&ops));
        DN(dnnl_post_ops_append_sum(ops, 1.0f));
        DN(dnnl_primitive_attr_set_post_ops(attr, ops));
        DN(dnnl_post_ops_destroy(ops));
    }
    dnnl_primitive_desc_t pd;
    dnnl_primitive_t p;
    DN(dnnl_reorder_primitive_desc_create(&pd, from, engine, to, engine, attr));
    DN(dnnl_primitive_create(&p, pd));
    DN(dnnl_primitive_desc_destroy(pd));
    if (attr) DN(dnnl_primitive_attr_destroy(attr));
    return p;
}

icn_fastconv *icn_fastconv_new(const icn_conv_shape *s, int bias, int max_batch) {
    if (icn_fastconv_reference_only() || max_batch < 1) return NULL;
    pthread_once(&engine_once, engine_init);
    omp_set_num_threads(1);
    icn_fastconv *f = xcalloc(1, sizeof *f);
    f->s = *s, f->bias = bias, f->max_batch = max_batch;
    f->in_size = (size_t)s->h * s->w * s->c, f->out_size = (size_t)s->oh * s->ow * s->oc;
    f->n_weights = (size_t)s->oc * icn_conv_kdim(s);
    pthread_mutex_init(&f->lock, NULL);
    if (s->oh * s->ow < ICN_FASTCONV_MIN_PIXELS) {
        f->gemm = 1;
        f->col = xmalloc((size_t)max_batch * s->oh * s->ow * icn_conv_kdim(s) * sizeof(float));
        snprintf(f->describe, sizeof f->describe, "im2col + AVX-512 sgemm (%d output pixels)", s->oh * s->ow);
        return f;
    }
    /* the largest chunk: a thread's share of a full batch, at most 128 images */
    int threads = icn_threads(), share = (max_batch + threads - 1) / threads;
    while (f->max_class + 1 < CLASSES && (1 << (f->max_class + 1)) <= share) f->max_class++;
    f->ref_bwd_d = s->c < 8;
    if (make_prim(f, FWD, f->max_class) || make_prim(f, BWD_W, f->max_class) ||
        (!f->ref_bwd_d && make_prim(f, BWD_D, f->max_class))) {
        icn_fastconv_free(f);
        return NULL;
    }
    dnnl_memory_desc_t plain;
    dnnl_dims_t wd = {s->oc, s->c, s->k, s->k};
    md_init(&plain, 4, wd, dnnl_ohwi);
    DN(dnnl_memory_create(&f->w_plain, &plain, engine, DNNL_MEMORY_NONE));
    DN(dnnl_stream_create(&f->stream, engine, dnnl_stream_default_flags));
    const int blocked[2] = {FWD, BWD_D};
    for (int i = 0; i < 2 - f->ref_bwd_d; i++) {
        int d = blocked[i];
        f->w_blk[d] = xmalloc(dnnl_memory_desc_get_size(&f->wmd[d]));
        DN(dnnl_memory_create(&f->w_mem[d], &f->wmd[d], engine, f->w_blk[d]));
        f->w_reorder[d] = make_reorder(&plain, &f->wmd[d], 0);
    }
    f->dw_reorder = make_reorder(&f->wmd[BWD_W], &plain, 1);
    snprintf(f->describe, sizeof f->describe, "%s / %s / %s", impl_name(f->pd[FWD][f->max_class]),
             f->ref_bwd_d ? "reference" : impl_name(f->pd[BWD_D][f->max_class]), impl_name(f->pd[BWD_W][f->max_class]));
    return f;
}

const char *icn_fastconv_describe(const icn_fastconv *f) { return f ? f->describe : "reference"; }

static void thread_state_free(thread_state *t) {
    if (!t) return;
    for (int d = 0; d < N_DIRS; d++)
        for (int c = 0; c < CLASSES; c++)
            for (int a = 0; a < N_ARGS; a++)
                if (t->mem[d][c][a]) dnnl_memory_destroy(t->mem[d][c][a]);
    if (t->r_src) dnnl_memory_destroy(t->r_src);
    if (t->r_dst) dnnl_memory_destroy(t->r_dst);
    if (t->stream) dnnl_stream_destroy(t->stream);
    free(t->dcol);
    free(t->scratch), free(t->dw_blk), free(t->db_chunk), free(t->dw_sum), free(t->db_sum), free(t->din_chunk);
    free(t);
}

void icn_fastconv_free(icn_fastconv *f) {
    if (!f) return;
    for (int i = 0; i < MAX_THREADS; i++) thread_state_free(f->ts[i]);
    for (int d = 0; d < N_DIRS; d++) {
        for (int c = 0; c < CLASSES; c++)
            if (f->prim[d][c]) dnnl_primitive_destroy(f->prim[d][c]);
        if (f->w_reorder[d]) dnnl_primitive_destroy(f->w_reorder[d]);
        if (f->w_mem[d]) dnnl_memory_destroy(f->w_mem[d]);
        free(f->w_blk[d]);
    }
    if (f->dw_reorder) dnnl_primitive_destroy(f->dw_reorder);
    if (f->w_plain) dnnl_memory_destroy(f->w_plain);
    if (f->stream) dnnl_stream_destroy(f->stream);
    pthread_mutex_destroy(&f->lock);
    free(f->dcol), free(f->dref), free(f->col);
    free(f);
}

/* The calling thread's state: made by that thread on its first call, so no lock. */
static thread_state *thread_get(icn_fastconv *f, int thread) {
    if (thread >= MAX_THREADS) icn_die(3, "internal: fastconv supports %d threads", MAX_THREADS);
    thread_state *t = f->ts[thread];
    if (!t) {
        t = f->ts[thread] = xcalloc(1, sizeof *t);
        DN(dnnl_stream_create(&t->stream, engine, dnnl_stream_default_flags));
    }
    omp_set_num_threads(1); /* this thread's oneDNN regions: no OpenMP workers */
    return t;
}

/* Run direction dir on a chunk of 2^c images: src, weights, dst, bias as the direction names
 * them (forward: in, w, out, bias; backward-data: din, w, dout; backward-weights: in, dw, dout, db). */
static void run_chunk(icn_fastconv *f, thread_state *t, int dir, int c, void *src, void *wei, void *dst, void *bias) {
    dnnl_primitive_t p = prim(f, dir, c);
    const_dnnl_primitive_desc_t pd = f->pd[dir][c];
    dnnl_memory_t *mem = t->mem[dir][c];
    if (!mem[A_SRC]) {
        static const dnnl_query_t q[N_DIRS][N_ARGS] = {
            [FWD] = {dnnl_query_src_md, dnnl_query_weights_md, dnnl_query_dst_md, dnnl_query_weights_md, dnnl_query_scratchpad_md},
            [FWD_SUM] = {dnnl_query_src_md, dnnl_query_weights_md, dnnl_query_dst_md, dnnl_query_weights_md, dnnl_query_scratchpad_md},
            [BWD_D] = {dnnl_query_diff_src_md, dnnl_query_weights_md, dnnl_query_diff_dst_md, 0, dnnl_query_scratchpad_md},
            [BWD_W] = {dnnl_query_src_md, dnnl_query_diff_weights_md, dnnl_query_diff_dst_md, dnnl_query_diff_weights_md,
                       dnnl_query_scratchpad_md}};
        for (int a = 0; a < N_ARGS; a++) {
            if (a == A_BIAS && (dir == BWD_D || !f->bias)) continue;
            const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, q[dir][a], a == A_BIAS ? 1 : 0);
            DN(dnnl_memory_create(&mem[a], md, engine, DNNL_MEMORY_NONE));
        }
    }
    size_t need = dnnl_memory_desc_get_size(dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0));
    if (need > t->scratch_bytes) {
        free(t->scratch);
        t->scratch = xmalloc(need);
        t->scratch_bytes = need;
    }
    static const int arg[N_DIRS][N_ARGS] = {
        [FWD] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST, DNNL_ARG_BIAS, DNNL_ARG_SCRATCHPAD},
        [FWD_SUM] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST, DNNL_ARG_BIAS, DNNL_ARG_SCRATCHPAD},
        [BWD_D] = {DNNL_ARG_DIFF_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DIFF_DST, 0, DNNL_ARG_SCRATCHPAD},
        [BWD_W] = {DNNL_ARG_SRC, DNNL_ARG_DIFF_WEIGHTS, DNNL_ARG_DIFF_DST, DNNL_ARG_DIFF_BIAS, DNNL_ARG_SCRATCHPAD}};
    void *handle[N_ARGS] = {src, wei, dst, bias, t->scratch};
    dnnl_exec_arg_t args[N_ARGS];
    int nargs = 0;
    for (int a = 0; a < N_ARGS; a++) {
        if (!mem[a]) continue;
        DN(dnnl_memory_set_data_handle(mem[a], handle[a]));
        args[nargs++] = (dnnl_exec_arg_t){arg[dir][a], mem[a]};
    }
    DN(dnnl_primitive_execute(p, t->stream, nargs, args));
    DN(dnnl_stream_wait(t->stream));
}

/* Largest chunk class for `left` images. */
static int chunk_class(const icn_fastconv *f, long left) {
    int c = f->max_class;
    while ((1L << c) > left) c--;
    return c;
}

static void reorder_weights(icn_fastconv *f, int dir, const float *weight) {
    DN(dnnl_memory_set_data_handle(f->w_plain, (void *)weight));
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, f->w_plain}, {DNNL_ARG_TO, f->w_mem[dir]}};
    DN(dnnl_primitive_execute(f->w_reorder[dir], f->stream, 2, args));
    DN(dnnl_stream_wait(f->stream));
}

typedef struct {
    icn_fastconv *f;
    float *out, *din, *dweight, *dbias;
    const float *in, *dout, *bias;
    int dir, accumulate;
} job;

static void forward_range(void *ctx, long lo, long hi, int thread) {
    job *j = ctx;
    icn_fastconv *f = j->f;
    thread_state *t = thread_get(f, thread);
    for (long i = lo; i < hi;) {
        int c = chunk_class(f, hi - i);
        run_chunk(f, t, j->dir, c, (void *)(j->in + i * f->in_size), f->w_blk[FWD], j->out + i * f->out_size,
                  (void *)j->bias);
        i += 1L << c;
    }
}

/* Where a thread's weight and bias gradients go: thread 0 adds into the caller's, the others into
 * their own sums (zeroed here), which the caller adds after the join. */
static void gradient_targets(icn_fastconv *f, thread_state *t, int thread, float **dw, float **db) {
    if (thread == 0) return;
    if (!t->dw_sum) t->dw_sum = xmalloc(f->n_weights * sizeof(float)), t->db_sum = xmalloc((size_t)f->s.oc * sizeof(float));
    memset(t->dw_sum, 0, f->n_weights * sizeof(float));
    memset(t->db_sum, 0, (size_t)f->s.oc * sizeof(float));
    *dw = t->dw_sum, *db = t->db_sum;
    t->call = f->call;
}

/* ---- the matrix-product kind: a thread's images are rows [r0, r1) of im2col ---- */

/* icn's own AVX-512 product (sgemm.h), inside each of icn's threads, not dnnl_sgemm: oneDNN 2.6's
 * sgemm corrupted the heap on this Zen 5 machine (glibc "corrupted size vs. prev_size", freed
 * inside dnnl_sgemm, in the backward pass of a synthesizer: 3 of 8 synthesizers aborted in 4 runs
 * of 2, none with ICN_CONV=reference, which multiplies the same matrices with OpenBLAS, nor with
 * oneDNN held to AVX2; docs/RESULTS.md, "Heap abort"); and not OpenBLAS, held to AVX2 here. */
#define SGEMM(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) \
    icn_sgemm_avx512((ta) == 'T', (tb) == 'T', m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)

enum { GEMM_PIECE_ROWS = 128 }; /* rows of the input gradient's col made at once, per thread */

typedef struct {
    icn_fastconv *f;
    float *out, *din, *dweight, *dbias;
    const float *in, *dout, *weight, *bias;
    float beta;
    int accumulate;
} gemm_job;

/* A thread's images [lo, hi) as im2col rows [r0, r0 + rows) of K columns. */
typedef struct { long P, r0, rows, K; } gemm_rows;
static gemm_rows rows_of(const icn_conv_shape *s, long lo, long hi) {
    const long P = (long)s->oh * s->ow;
    return (gemm_rows){P, lo * P, (hi - lo) * P, (long)icn_conv_kdim(s)};
}

static void gemm_forward_range(void *ctx, long lo, long hi, int thread) {
    gemm_job *j = ctx;
    icn_fastconv *f = j->f;
    thread_get(f, thread);
    const icn_conv_shape *s = &f->s;
    const gemm_rows g = rows_of(s, lo, hi);
    const long r0 = g.r0, rows = g.rows, K = g.K;
    float *col = f->col + r0 * K, *out = j->out + r0 * s->oc;
    icn_im2col_range(col, j->in, s, r0, r0 + rows);
    float beta = j->beta;
    if (j->bias) { /* out = bias (+ out), then += col W^T */
        for (long r = 0; r < rows; r++)
            for (int o = 0; o < s->oc; o++) out[r * s->oc + o] = j->bias[o] + (beta != 0.0f ? out[r * s->oc + o] : 0.0f);
        beta = 1.0f;
    }
    SGEMM('N', 'T', rows, s->oc, K, 1.0f, col, K, j->weight, K, beta, out, s->oc);
}

/* Both gradients of a thread's images: dW += dout^T col (from the forward's col), then
 * din = (or +=) col2im(dout W), a piece of rows at a time. */
static void gemm_backward_range(void *ctx, long lo, long hi, int thread) {
    gemm_job *j = ctx;
    icn_fastconv *f = j->f;
    thread_state *t = thread_get(f, thread);
    const icn_conv_shape *s = &f->s;
    const gemm_rows g = rows_of(s, lo, hi);
    const long P = g.P, r0 = g.r0, rows = g.rows, K = g.K;
    if (j->dweight) {
        float *dw = j->dweight, *db = j->dbias;
        gradient_targets(f, t, thread, &dw, &db);
        const float *dout = j->dout + r0 * s->oc;
        SGEMM('T', 'N', s->oc, K, rows, 1.0f, dout, s->oc, f->col + r0 * K, K, 1.0f, dw, K);
        if (db)
            for (long r = 0; r < rows; r++)
                for (int o = 0; o < s->oc; o++) db[o] += dout[r * s->oc + o];
    }
    if (!j->din) return;
    const long piece = GEMM_PIECE_ROWS > P ? GEMM_PIECE_ROWS / P * P : P; /* whole images at a time */
    if (!t->dcol) t->dcol = xmalloc((size_t)piece * K * sizeof(float));
    if (!j->accumulate) memset(j->din + lo * f->in_size, 0, (size_t)(hi - lo) * f->in_size * sizeof(float));
    for (long r = r0; r < r0 + rows; r += piece) {
        long m = r0 + rows - r < piece ? r0 + rows - r : piece;
        SGEMM('N', 'N', m, K, s->oc, 1.0f, j->dout + r * s->oc, s->oc, j->weight, K, 0.0f, t->dcol, K);
        icn_col2im_range(j->din, t->dcol, s, r, r + m);
    }
}

void icn_fastconv_forward(icn_fastconv *f, float *out, const float *in, const float *weight, const float *bias, int n,
                          float beta) {
    if (n > f->max_batch) icn_die(3, "internal: batch of %d exceeds the convolution's %d", n, f->max_batch);
    if (f->gemm) {
        gemm_job j = {.f = f, .out = out, .in = in, .weight = weight, .bias = bias, .beta = beta};
        icn_gemm_parallel_for(n, 1, gemm_forward_range, &j);
        return;
    }
    reorder_weights(f, FWD, weight);
    job j = {.f = f, .out = out, .in = in, .bias = bias, .dir = beta != 0.0f ? FWD_SUM : FWD};
    icn_parallel_for(n, 1, forward_range, &j);
}

static void backward_data_range(void *ctx, long lo, long hi, int thread) {
    job *j = ctx;
    icn_fastconv *f = j->f;
    thread_state *t = thread_get(f, thread);
    if (j->accumulate && !t->din_chunk) t->din_chunk = xmalloc(((size_t)1 << f->max_class) * f->in_size * sizeof(float));
    for (long i = lo; i < hi;) {
        int c = chunk_class(f, hi - i);
        float *din = j->din + i * f->in_size, *target = j->accumulate ? t->din_chunk : din;
        run_chunk(f, t, BWD_D, c, target, f->w_blk[BWD_D], (void *)(j->dout + i * f->out_size), NULL);
        if (j->accumulate) icn_residual_add(din, target, ((size_t)1 << c) * f->in_size);
        i += 1L << c;
    }
}

static void backward_weights_range(void *ctx, long lo, long hi, int thread) {
    job *j = ctx;
    icn_fastconv *f = j->f;
    thread_state *t = thread_get(f, thread);
    const int oc = f->s.oc;
    if (!t->dw_blk) {
        t->dw_blk = xmalloc(dnnl_memory_desc_get_size(&f->wmd[BWD_W]));
        t->db_chunk = xmalloc((size_t)oc * sizeof(float));
        dnnl_memory_desc_t plain;
        dnnl_dims_t wd = {oc, f->s.c, f->s.k, f->s.k};
        md_init(&plain, 4, wd, dnnl_ohwi);
        DN(dnnl_memory_create(&t->r_src, &f->wmd[BWD_W], engine, t->dw_blk));
        DN(dnnl_memory_create(&t->r_dst, &plain, engine, DNNL_MEMORY_NONE));
    }
    float *dw = j->dweight, *db = j->dbias;
    gradient_targets(f, t, thread, &dw, &db);
    for (long i = lo; i < hi;) {
        int c = chunk_class(f, hi - i);
        run_chunk(f, t, BWD_W, c, (void *)(j->in + i * f->in_size), t->dw_blk, (void *)(j->dout + i * f->out_size),
                  t->db_chunk);
        DN(dnnl_memory_set_data_handle(t->r_dst, dw));
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, t->r_src}, {DNNL_ARG_TO, t->r_dst}};
        DN(dnnl_primitive_execute(f->dw_reorder, t->stream, 2, args)); /* dw += dw_blk, in ohwi */
        DN(dnnl_stream_wait(t->stream));
        if (db && f->bias) icn_residual_add(db, t->db_chunk, (size_t)oc);
        i += 1L << c;
    }
}

void icn_fastconv_backward(icn_fastconv *f, float *din, int accumulate, float *dweight, float *dbias,
                           const float *dout, const float *in, const float *weight, int n) {
    if (n > f->max_batch) icn_die(3, "internal: batch of %d exceeds the convolution's %d", n, f->max_batch);
    if (dweight || dbias) {
        float *dw = dweight;
        if (!dw) { /* a bias gradient alone: the weights' goes to a thread's scratch sum */
            thread_state *t = thread_get(f, 0);
            float *db;
            gradient_targets(f, t, 1, &dw, &db); /* zeroed scratch, as another thread's */
        }
        f->call++;
        if (f->gemm) {
            gemm_job j = {.f = f, .dweight = dw, .dbias = dbias, .din = din, .accumulate = accumulate, .dout = dout,
                          .weight = weight};
            icn_gemm_parallel_for(n, 1, gemm_backward_range, &j);
            din = NULL; /* done in the same pass */
        } else {
            job j = {.f = f, .dweight = dw, .dbias = dbias, .in = in, .dout = dout};
            icn_parallel_for(n, 1, backward_weights_range, &j);
        }
        for (int i = 1; i < MAX_THREADS && f->ts[i]; i++) {
            thread_state *t = f->ts[i];
            if (t->call != f->call) continue;
            icn_residual_add(dw, t->dw_sum, f->n_weights);
            if (dbias) icn_residual_add(dbias, t->db_sum, (size_t)f->s.oc);
            t->call = 0;
        }
    }
    if (!din) return;
    if (f->gemm) {
        gemm_job j = {.f = f, .din = din, .dout = dout, .weight = weight, .accumulate = accumulate};
        icn_gemm_parallel_for(n, 1, gemm_backward_range, &j);
        return;
    }
    if (f->ref_bwd_d) {
        if (!f->dcol) f->dcol = xmalloc((size_t)f->max_batch * f->s.oh * f->s.ow * icn_conv_kdim(&f->s) * sizeof(float));
        float *target = din;
        if (accumulate) {
            if (!f->dref) f->dref = xmalloc((size_t)f->max_batch * f->in_size * sizeof(float));
            target = f->dref;
        }
        icn_conv2d_backward(target, NULL, NULL, f->dcol, dout, NULL, weight, &f->s, n, NULL);
        if (accumulate) icn_residual_add(din, target, (size_t)n * f->in_size);
        return;
    }
    reorder_weights(f, BWD_D, weight);
    job j = {.f = f, .din = din, .dout = dout, .accumulate = accumulate};
    icn_parallel_for(n, 1, backward_data_range, &j);
}
