#include "conv_dnnl.h"

#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parallel.h"
#include "util.h"

/* libgomp's, declared here so that no OpenMP flag is needed to build: the thread count of
 * oneDNN's parallel regions started by the calling thread. */
void omp_set_num_threads(int n);

enum { FWD, FWD_SUM, BWD_D, BWD_W, N_DIRS };    /* FWD_SUM: the forward that adds into out */
enum { CLASSES = 8 };                           /* chunks of 1, 2, 4, ..., 128 images */
enum { A_SRC, A_WEI, A_DST, A_BIAS, A_SCRATCH, N_ARGS };

#define DN(call)                                                                                   \
    do {                                                                                           \
        dnnl_status_t st_ = (call);                                                                \
        if (st_ != dnnl_success) icn_die(3, "oneDNN: %s: %s", #call, dnnl_status2str(st_));         \
    } while (0)

/* A layout of the weights (FWD, shared with FWD_SUM, and BWD_D) or of their gradient (BWD_W)
 * that some chunk size's primitive runs on. */
typedef struct {
    dnnl_memory_desc_t md;
    float *blk;               /* FWD, BWD_D: the weights reordered into it, once per call */
    dnnl_memory_t mem;        /* FWD, BWD_D: blk */
    dnnl_primitive_t reorder; /* FWD, BWD_D: ohwi -> md; BWD_W: md -> ohwi, adding */
} layout;

/* What one thread of icn's pool keeps: its stream, scratchpad, memory objects and sums. */
typedef struct {
    dnnl_stream_t stream;
    void *scratch;
    size_t scratch_bytes;
    dnnl_memory_t mem[N_DIRS][CLASSES][N_ARGS];
    dnnl_memory_t r_src[CLASSES], r_dst; /* the weight-gradient reorders', per layout */
    float *dw_blk, *db_chunk;   /* a chunk's weight gradient in oneDNN's layout, its bias gradient */
    float *din_chunk, *out_chunk; /* a chunk's result before it is added (din +=, out += without FWD_SUM) */
} thread_state;

struct icn_conv_dnnl {
    icn_conv_shape s;
    int bias, max_class, max_batch;
    dnnl_data_type_t dt;
    size_t in_size, out_size, n_weights, dw_blk_bytes;
    pthread_mutex_t lock; /* primitives made on first use, by any thread */
    dnnl_primitive_desc_t pd[N_DIRS][CLASSES]; /* all made at once; FWD_SUM's may lack some */
    dnnl_primitive_t prim[N_DIRS][CLASSES];
    int lay[N_DIRS][CLASSES];                  /* which of layouts[] chunk class c runs on */
    layout layouts[N_DIRS][2 * CLASSES];       /* [FWD] serves FWD_SUM too: at most one new per pick */
    int n_layouts[N_DIRS];
    dnnl_memory_t w_plain;
    dnnl_stream_t stream; /* the caller's, for the weight reorders */
    thread_state *ts[ICN_CONV_MAX_THREADS];
    icn_conv_sums sums;
    char impl[N_DIRS][96];
};

static dnnl_engine_t engine;
static pthread_once_t engine_once = PTHREAD_ONCE_INIT;
static void engine_init(void) {
    omp_set_num_threads(1);
    DN(dnnl_engine_create(&engine, dnnl_cpu, 0));
}

/* The one place a data type of conv.h becomes oneDNN's. */
static int dnnl_type(icn_conv_type type, dnnl_data_type_t *dt) {
    switch (type) {
    case ICN_CONV_F32: *dt = dnnl_f32; return 0;
    }
    return -1;
}

static void md_init(dnnl_memory_desc_t *md, int ndims, const dnnl_dims_t dims, dnnl_data_type_t dt,
                    dnnl_format_tag_t tag) {
    DN(dnnl_memory_desc_init_by_tag(md, ndims, dims, dt, tag));
}

/* The weights' descriptor in oneDNN's order (OC, C, kh, kw), in layout tag. */
static void weights_md(const icn_conv_dnnl *f, dnnl_memory_desc_t *md, dnnl_format_tag_t tag) {
    dnnl_dims_t wd = {f->s.oc, f->s.c, f->s.k, f->s.k};
    md_init(md, 4, wd, f->dt, tag);
}

/* The activation and bias descriptors for a chunk of m images. */
static void shape_mds(const icn_conv_dnnl *f, int m, dnnl_memory_desc_t *src, dnnl_memory_desc_t *dst,
                      dnnl_memory_desc_t *bias) {
    const icn_conv_shape *s = &f->s;
    dnnl_dims_t sd = {m, s->c, s->h, s->w}, dd = {m, s->oc, s->oh, s->ow}, bd = {s->oc};
    md_init(src, 4, sd, f->dt, dnnl_nhwc);
    md_init(dst, 4, dd, f->dt, dnnl_nhwc);
    md_init(bias, 1, bd, dnnl_f32, dnnl_a);
}

static const char *impl_name(const_dnnl_primitive_desc_t pd) {
    const char *impl = NULL;
    DN(dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl));
    return impl;
}

/* The primitive descriptor of direction dir for chunks of 2^c images with the weights in wei
 * (a layout, or any). 0, or -1 where oneDNN has none, or only its reference ("ref:"). */
static int make_pd(icn_conv_dnnl *f, int dir, int c, const dnnl_memory_desc_t *wei, dnnl_primitive_desc_t *out) {
    const icn_conv_shape *s = &f->s;
    dnnl_memory_desc_t src, dst, bias;
    shape_mds(f, 1 << c, &src, &dst, &bias);
    dnnl_dims_t strides = {s->stride, s->stride}, pad = {s->pad, s->pad};
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
    dnnl_primitive_desc_t hint = NULL, pd = NULL;
    dnnl_status_t st;
    if (dir == FWD || dir == FWD_SUM) {
        DN(dnnl_convolution_forward_desc_init(&fd, dnnl_forward_training, dnnl_convolution_direct, &src, wei, bmd, &dst,
                                              strides, pad, pad));
        st = dnnl_primitive_desc_create(&pd, &fd, attr, engine, NULL);
    } else {
        /* the backward passes need a forward's descriptor as a hint: this chunk size's forward */
        dnnl_memory_desc_t fw;
        if (f->pd[FWD][c]) fw = f->layouts[FWD][f->lay[FWD][c]].md;
        else weights_md(f, &fw, dnnl_format_tag_any);
        DN(dnnl_convolution_forward_desc_init(&fd, dnnl_forward_training, dnnl_convolution_direct, &src, &fw, bmd, &dst,
                                              strides, pad, pad));
        st = dnnl_primitive_desc_create(&hint, &fd, NULL, engine, NULL);
        if (st == dnnl_success) {
            if (dir == BWD_D)
                DN(dnnl_convolution_backward_data_desc_init(&cd, dnnl_convolution_direct, &src, wei, &dst, strides, pad,
                                                            pad));
            else
                DN(dnnl_convolution_backward_weights_desc_init(&cd, dnnl_convolution_direct, &src, wei, bmd, &dst,
                                                               strides, pad, pad));
            st = dnnl_primitive_desc_create(&pd, &cd, attr, engine, hint);
        }
    }
    DN(dnnl_primitive_attr_destroy(attr));
    if (hint) DN(dnnl_primitive_desc_destroy(hint));
    if (st != dnnl_success || !strncmp(impl_name(pd), "ref", 3)) {
        if (pd) DN(dnnl_primitive_desc_destroy(pd));
        return -1;
    }
    *out = pd;
    return 0;
}

/* Chunk class c's descriptor for dir: on a layout already in use if one has a JIT implementation
 * (the largest chunk's first), else on the layout oneDNN picks for this chunk size, kept as a new
 * one. 0, or -1 where this chunk size has no JIT implementation in any layout. */
static int pick(icn_conv_dnnl *f, int dir, int c) {
    const int wd = dir == FWD_SUM ? FWD : dir;
    for (int i = 0; i < f->n_layouts[wd]; i++)
        if (!make_pd(f, dir, c, &f->layouts[wd][i].md, &f->pd[dir][c])) {
            f->lay[dir][c] = i;
            return 0;
        }
    dnnl_memory_desc_t any;
    weights_md(f, &any, dnnl_format_tag_any);
    if (make_pd(f, dir, c, &any, &f->pd[dir][c])) return -1;
    f->lay[dir][c] = f->n_layouts[wd];
    f->layouts[wd][f->n_layouts[wd]++].md =
        *dnnl_primitive_desc_query_md(f->pd[dir][c], dir == BWD_W ? dnnl_query_diff_weights_md : dnnl_query_weights_md, 0);
    return 0;
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

icn_conv_dnnl *icn_conv_dnnl_new(const icn_conv_shape *s, int bias, int max_batch, icn_conv_type type, int directions) {
    dnnl_data_type_t dt;
    if (max_batch < 1 || dnnl_type(type, &dt)) return NULL;
    pthread_once(&engine_once, engine_init);
    omp_set_num_threads(1);
    icn_conv_dnnl *f = xcalloc(1, sizeof *f);
    f->s = *s, f->bias = bias, f->max_batch = max_batch, f->dt = dt;
    f->in_size = (size_t)s->h * s->w * s->c, f->out_size = (size_t)s->oh * s->ow * s->oc;
    f->n_weights = (size_t)s->oc * icn_conv_kdim(s);
    icn_conv_sums_init(&f->sums, f->n_weights, s->oc);
    pthread_mutex_init(&f->lock, NULL);
    /* the largest chunk: a thread's share of a full batch, at most 128 images */
    int threads = icn_threads(), share = (max_batch + threads - 1) / threads;
    while (f->max_class + 1 < CLASSES && (1 << (f->max_class + 1)) <= share) f->max_class++;
    /* every chunk size a split can make, the largest first (its layouts are tried first for the
     * others); the forwards first (the backward passes take them as hints) */
    const int want[N_DIRS] = {[FWD] = directions & ICN_DNNL_FORWARD, [FWD_SUM] = directions & ICN_DNNL_FORWARD,
                              [BWD_D] = directions & ICN_DNNL_BACKWARD_DATA,
                              [BWD_W] = directions & ICN_DNNL_BACKWARD_WEIGHTS};
    static const int order[N_DIRS] = {FWD, BWD_W, BWD_D, FWD_SUM};
    for (int i = 0; i < N_DIRS; i++) {
        const int d = order[i];
        for (int c = f->max_class; want[d] && c >= 0; c--)
            if (pick(f, d, c) && d != FWD_SUM) { /* FWD_SUM: forward, then add */
                icn_conv_dnnl_free(f);
                return NULL;
            }
    }
    dnnl_memory_desc_t plain;
    weights_md(f, &plain, dnnl_ohwi);
    DN(dnnl_memory_create(&f->w_plain, &plain, engine, DNNL_MEMORY_NONE));
    DN(dnnl_stream_create(&f->stream, engine, dnnl_stream_default_flags));
    for (int d = 0; d < N_DIRS; d++)
        for (int i = 0; i < f->n_layouts[d]; i++) {
            layout *l = &f->layouts[d][i];
            size_t bytes = dnnl_memory_desc_get_size(&l->md);
            if (d == BWD_W) {
                l->reorder = make_reorder(&l->md, &plain, 1);
                if (bytes > f->dw_blk_bytes) f->dw_blk_bytes = bytes;
                continue;
            }
            l->blk = xmalloc(bytes);
            DN(dnnl_memory_create(&l->mem, &l->md, engine, l->blk));
            l->reorder = make_reorder(&plain, &l->md, 0);
        }
    for (int d = 0; d < N_DIRS; d++)
        snprintf(f->impl[d], sizeof f->impl[d], "%s", f->pd[d][f->max_class] ? impl_name(f->pd[d][f->max_class]) : "-");
    return f;
}

const char *icn_conv_dnnl_impl(const icn_conv_dnnl *f, int direction) {
    return f->impl[direction == ICN_DNNL_FORWARD ? FWD : direction == ICN_DNNL_BACKWARD_DATA ? BWD_D : BWD_W];
}

static void thread_state_free(thread_state *t) {
    if (!t) return;
    for (int d = 0; d < N_DIRS; d++)
        for (int c = 0; c < CLASSES; c++)
            for (int a = 0; a < N_ARGS; a++)
                if (t->mem[d][c][a]) dnnl_memory_destroy(t->mem[d][c][a]);
    for (int i = 0; i < CLASSES; i++)
        if (t->r_src[i]) dnnl_memory_destroy(t->r_src[i]);
    if (t->r_dst) dnnl_memory_destroy(t->r_dst);
    if (t->stream) dnnl_stream_destroy(t->stream);
    free(t->scratch), free(t->dw_blk), free(t->db_chunk);
    free(t->din_chunk), free(t->out_chunk);
    free(t);
}

void icn_conv_dnnl_free(icn_conv_dnnl *f) {
    if (!f) return;
    for (int i = 0; i < ICN_CONV_MAX_THREADS; i++) thread_state_free(f->ts[i]);
    icn_conv_sums_free(&f->sums);
    for (int d = 0; d < N_DIRS; d++) {
        for (int c = 0; c < CLASSES; c++) {
            if (f->prim[d][c]) dnnl_primitive_destroy(f->prim[d][c]);
            if (f->pd[d][c]) dnnl_primitive_desc_destroy(f->pd[d][c]);
        }
        for (int i = 0; i < f->n_layouts[d]; i++) {
            layout *l = &f->layouts[d][i];
            if (l->reorder) dnnl_primitive_destroy(l->reorder);
            if (l->mem) dnnl_memory_destroy(l->mem);
            free(l->blk);
        }
    }
    if (f->w_plain) dnnl_memory_destroy(f->w_plain);
    if (f->stream) dnnl_stream_destroy(f->stream);
    pthread_mutex_destroy(&f->lock);
    free(f);
}

/* The calling thread's state: made by that thread on its first call, so no lock. */
static thread_state *thread_get(icn_conv_dnnl *f, int thread) {
    if (thread >= ICN_CONV_MAX_THREADS)
        icn_die(3, "internal: the convolutions support %d threads", ICN_CONV_MAX_THREADS);
    thread_state *t = f->ts[thread];
    if (!t) {
        t = f->ts[thread] = xcalloc(1, sizeof *t);
        DN(dnnl_stream_create(&t->stream, engine, dnnl_stream_default_flags));
    }
    omp_set_num_threads(1); /* this thread's oneDNN regions: no OpenMP workers */
    return t;
}

/* The primitive of direction dir for chunk class c, made from its descriptor on first use. */
static dnnl_primitive_t prim(icn_conv_dnnl *f, int dir, int c) {
    pthread_mutex_lock(&f->lock);
    if (!f->prim[dir][c]) DN(dnnl_primitive_create(&f->prim[dir][c], f->pd[dir][c]));
    pthread_mutex_unlock(&f->lock);
    return f->prim[dir][c];
}

/* Run direction dir on a chunk of 2^c images: src, weights, dst, bias as the direction names
 * them (forward: in, w, out, bias; backward-data: din, w, dout; backward-weights: in, dw, dout, db). */
static void run_chunk(icn_conv_dnnl *f, thread_state *t, int dir, int c, void *src, void *wei, void *dst, void *bias) {
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
static int chunk_class(const icn_conv_dnnl *f, long left) {
    int c = f->max_class;
    while ((1L << c) > left) c--;
    return c;
}

/* The weights into every layout of direction dir (FWD or BWD_D), on the caller's thread. */
static void reorder_weights(icn_conv_dnnl *f, int dir, const float *weight) {
    DN(dnnl_memory_set_data_handle(f->w_plain, (void *)weight));
    for (int i = 0; i < f->n_layouts[dir]; i++) {
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, f->w_plain}, {DNNL_ARG_TO, f->layouts[dir][i].mem}};
        DN(dnnl_primitive_execute(f->layouts[dir][i].reorder, f->stream, 2, args));
    }
    DN(dnnl_stream_wait(f->stream));
}

static float *weights_of(icn_conv_dnnl *f, int dir, int c) {
    return f->layouts[dir == FWD_SUM ? FWD : dir][f->lay[dir][c]].blk;
}

typedef struct {
    icn_conv_dnnl *f;
    float *out, *din, *dweight, *dbias;
    const float *in, *dout, *bias;
    int dir, accumulate;
} job;

static void forward_range(void *ctx, long lo, long hi, int thread) {
    job *j = ctx;
    icn_conv_dnnl *f = j->f;
    thread_state *t = thread_get(f, thread);
    for (long i = lo; i < hi;) {
        const int c = chunk_class(f, hi - i);
        void *in = (void *)(j->in + i * f->in_size), *bias = (void *)j->bias;
        float *out = j->out + i * f->out_size;
        if (j->dir == FWD_SUM && !f->pd[FWD_SUM][c]) { /* no adding primitive at this size: forward, then add */
            if (!t->out_chunk) t->out_chunk = xmalloc(((size_t)1 << f->max_class) * f->out_size * sizeof(float));
            run_chunk(f, t, FWD, c, in, weights_of(f, FWD, c), t->out_chunk, bias);
            icn_conv_sum_into(out, t->out_chunk, ((size_t)1 << c) * f->out_size);
        } else {
            run_chunk(f, t, j->dir, c, in, weights_of(f, j->dir, c), out, bias);
        }
        i += 1L << c;
    }
}

void icn_conv_dnnl_forward(icn_conv_dnnl *f, float *out, const float *in, const float *weight, const float *bias, int n,
                           float beta) {
    if (n > f->max_batch) icn_die(3, "internal: batch of %d exceeds the convolution's %d", n, f->max_batch);
    reorder_weights(f, FWD, weight);
    job j = {.f = f, .out = out, .in = in, .bias = bias, .dir = beta != 0.0f ? FWD_SUM : FWD};
    icn_parallel_for(n, 1, forward_range, &j);
}

static void backward_data_range(void *ctx, long lo, long hi, int thread) {
    job *j = ctx;
    icn_conv_dnnl *f = j->f;
    thread_state *t = thread_get(f, thread);
    if (j->accumulate && !t->din_chunk) t->din_chunk = xmalloc(((size_t)1 << f->max_class) * f->in_size * sizeof(float));
    for (long i = lo; i < hi;) {
        const int c = chunk_class(f, hi - i);
        float *din = j->din + i * f->in_size, *target = j->accumulate ? t->din_chunk : din;
        run_chunk(f, t, BWD_D, c, target, weights_of(f, BWD_D, c), (void *)(j->dout + i * f->out_size), NULL);
        if (j->accumulate) icn_conv_sum_into(din, target, ((size_t)1 << c) * f->in_size);
        i += 1L << c;
    }
}

void icn_conv_dnnl_backward_data(icn_conv_dnnl *f, float *din, int accumulate, const float *dout, const float *weight,
                                 int n) {
    if (n > f->max_batch) icn_die(3, "internal: batch of %d exceeds the convolution's %d", n, f->max_batch);
    reorder_weights(f, BWD_D, weight);
    job j = {.f = f, .din = din, .dout = dout, .accumulate = accumulate};
    icn_parallel_for(n, 1, backward_data_range, &j);
}

static void backward_weights_range(void *ctx, long lo, long hi, int thread) {
    job *j = ctx;
    icn_conv_dnnl *f = j->f;
    thread_state *t = thread_get(f, thread);
    const int oc = f->s.oc;
    if (!t->dw_blk) {
        t->dw_blk = xmalloc(f->dw_blk_bytes);
        t->db_chunk = xmalloc((size_t)oc * sizeof(float));
        dnnl_memory_desc_t plain;
        weights_md(f, &plain, dnnl_ohwi);
        for (int i = 0; i < f->n_layouts[BWD_W]; i++)
            DN(dnnl_memory_create(&t->r_src[i], &f->layouts[BWD_W][i].md, engine, t->dw_blk));
        DN(dnnl_memory_create(&t->r_dst, &plain, engine, DNNL_MEMORY_NONE));
    }
    float *dw = j->dweight, *db = j->dbias;
    icn_conv_sums_targets(&f->sums, thread, &dw, &db);
    for (long i = lo; i < hi;) {
        const int c = chunk_class(f, hi - i), l = f->lay[BWD_W][c];
        run_chunk(f, t, BWD_W, c, (void *)(j->in + i * f->in_size), t->dw_blk, (void *)(j->dout + i * f->out_size),
                  t->db_chunk);
        DN(dnnl_memory_set_data_handle(t->r_dst, dw));
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, t->r_src[l]}, {DNNL_ARG_TO, t->r_dst}};
        DN(dnnl_primitive_execute(f->layouts[BWD_W][l].reorder, t->stream, 2, args)); /* dw += dw_blk, in ohwi */
        DN(dnnl_stream_wait(t->stream));
        if (db && f->bias) icn_conv_sum_into(db, t->db_chunk, (size_t)oc);
        i += 1L << c;
    }
}

void icn_conv_dnnl_backward_weights(icn_conv_dnnl *f, float *dweight, float *dbias, const float *dout, const float *in,
                                    int n) {
    if (n > f->max_batch) icn_die(3, "internal: batch of %d exceeds the convolution's %d", n, f->max_batch);
    float *dw = icn_conv_sums_begin(&f->sums, dweight);
    job j = {.f = f, .dweight = dw, .dbias = dbias, .in = in, .dout = dout};
    icn_parallel_for(n, 1, backward_weights_range, &j);
    icn_conv_sums_end(&f->sums, dw, dbias);
}
