// NiNo step, node side: the node projection, then one message-passing layer per launch (one block per
// target node: its incoming edges' messages, their mean, the node update and the node products the edge
// update and the next layer read), along nino-core's folded_forward.
#include "nowcast.cuh"

// X0 = lpe W_np + b_np (the word-position row is folded into b_np), then layer 0's [U | V] = X0 pre + b_pre.
// x [N][H], uv [N][2H]. One block per node.
template <class WT>
__device__ void node_init(const GnnDims* dp, const WT* fw, const float* lpe, float* x, float* uv) {
    const GnnDims& d = *dp;
    __shared__ float xs[HMAX];
    int node = blockIdx.x, h = d.h;
    for (int col = threadIdx.x; col < h; col += blockDim.x) {
        float acc = 0.0f;
        for (int k = 0; k < d.lpe; k++) acc = fmaf(lpe[(size_t)node * d.lpe + k], ldw(fw + d.node_w + k * h + col), acc);
        float v = ldw(fw + d.node_b + col) + acc;
        xs[col] = v;
        x[(size_t)node * h + col] = v;
    }
    __syncthreads();
    if (d.nl == 0) return;
    for (int col = threadIdx.x; col < 2 * h; col += blockDim.x) {
        float acc = 0.0f;
        for (int k = 0; k < h; k++) acc = fmaf(xs[k], ldw(fw + d.pre[0] + k * 2 * h + col), acc);
        uv[(size_t)node * 2 * h + col] = ldw(fw + d.pre_b[0] + col) + acc;
    }
}

// Message-passing layer `l` for target node blockIdx.x:
//   agg = mean over incoming edges of (Z_sc + b_sc) * (U[dst] + V[src]) (+ b_shift per edge when typed,
//         + b_shift after the mean when not), plus mean(edge input) W_shift;
//   X~ = X post_top + agg post_bot + post_b (written to xconv), X' = SiLU(X~) (to x_out);
//   lst[l] = [lin_s(X') | lin_t(X')] for the edge update, and the next layer's [U | V] into uv_next.
// Edge inputs of layer l are recomputed per tile (edge_chain): no E x H tensor is read or written.
template <class WT>
__device__ void layer(const GnnDims* dp, const int* tab, const WT* fw, const float* hist, const float* stats,
                      int l, const float* x_in, const float* uv, float* lst, float* xconv, float* x_out,
                      float* uv_next) {
    const GnnDims& d = *dp;
    __shared__ Row bufa[ROWS], bufb[ROWS];
    __shared__ int eid[ROWS], esrc[ROWS], edst[ROWS], ekind[ROWS];
    __shared__ float xs[HMAX], aggs[HMAX], sxs[HMAX];
    const int *src = tab + d.t_src, *kind = tab + d.t_kind, *in_edges = tab + d.t_inedges;
    int t = blockIdx.x, h = d.h;
    int inp = l == 0 ? d.fc : h;
    int beg = tab[d.t_inptr + t], end = tab[d.t_inptr + t + 1];
    const WT* w = fw + d.ew[l];
    const WT* bt = fw + d.eb[l];
    bool typed = l == 0 && d.typed;
    float agg[HMAX / NT], sx[HMAX / NT];
    for (int i = 0; i < HMAX / NT; i++) agg[i] = sx[i] = 0.0f;
    for (int c0 = beg; c0 < end; c0 += ROWS) {
        int nrows = min(ROWS, end - c0);
        __syncthreads();
        if (threadIdx.x < ROWS) {
            int r = threadIdx.x;
            int e = in_edges[c0 + (r < nrows ? r : 0)];
            eid[r] = e;
            esrc[r] = src[e];
            edst[r] = t;
            ekind[r] = kind[e];
        }
        __syncthreads();
        load_attr_tile(d, tab + d.t_param, tab + d.t_tensor, hist, stats, eid, nrows, bufa);
        const Row* in = edge_chain(d, fw, lst, l, esrc, edst, ekind, bufa, bufb);
        for (int i = 0, col = threadIdx.x; col < h; i++, col += blockDim.x) {
            float acc[ROWS];
            tile_dot(in, inp, w, 3 * h, col, acc);
            float u = uv[(size_t)t * 2 * h + col];
            for (int r = 0; r < nrows; r++) {
                int row = typed ? ekind[r] : 0;
                float v = uv[(size_t)esrc[r] * 2 * h + h + col];
                agg[i] = agg[i] + (acc[r] + ldw(bt + row * 3 * h + col)) * (u + v);
                if (typed) agg[i] = agg[i] + ldw(bt + row * 3 * h + 2 * h + col);
            }
        }
        for (int i = 0, k = threadIdx.x; k < inp; i++, k += blockDim.x) {
            for (int r = 0; r < nrows; r++) sx[i] = sx[i] + in[r][k];
        }
    }
    float inv = 1.0f / (float)(end - beg);
    for (int i = 0, col = threadIdx.x; col < h; i++, col += blockDim.x) {
        float a = agg[i] * inv;
        if (!typed) a = a + ldw(bt + 2 * h + col);
        aggs[col] = a;
        xs[col] = x_in[(size_t)t * h + col];
    }
    for (int i = 0, k = threadIdx.x; k < inp; i++, k += blockDim.x) sxs[k] = sx[i] * inv;
    __syncthreads();
    for (int col = threadIdx.x; col < h; col += blockDim.x) {
        float acc = 0.0f;
        for (int k = 0; k < inp; k++) acc = fmaf(sxs[k], ldw(w + k * 3 * h + 2 * h + col), acc);
        aggs[col] = aggs[col] + acc;
    }
    __syncthreads();
    float xn[HMAX / NT] = {};
    for (int i = 0, col = threadIdx.x; col < h; i++, col += blockDim.x) {
        float d1 = 0.0f, d2 = 0.0f;
        for (int k = 0; k < h; k++) d1 = fmaf(xs[k], ldw(fw + d.post[l] + k * h + col), d1);
        for (int k = 0; k < h; k++) d2 = fmaf(aggs[k], ldw(fw + d.post[l] + (h + k) * h + col), d2);
        float xt = (ldw(fw + d.post_b[l] + col) + d1) + d2;
        xconv[(size_t)t * h + col] = xt;
        xn[i] = silu(xt);
        x_out[(size_t)t * h + col] = xn[i];
    }
    __syncthreads();
    for (int i = 0, col = threadIdx.x; col < h; i++, col += blockDim.x) xs[col] = xn[i];
    __syncthreads();
    float* ls = lst + (size_t)l * d.n * 2 * h;
    for (int col = threadIdx.x; col < 2 * h; col += blockDim.x) {
        float acc = 0.0f;
        for (int k = 0; k < h; k++) acc = fmaf(xs[k], ldw(fw + d.st[l] + k * 2 * h + col), acc);
        ls[(size_t)t * 2 * h + col] = ldw(fw + d.st_b[l] + col) + acc;
    }
    if (l + 1 < d.nl) {
        for (int col = threadIdx.x; col < 2 * h; col += blockDim.x) {
            float acc = 0.0f;
            for (int k = 0; k < h; k++) acc = fmaf(xs[k], ldw(fw + d.pre[l + 1] + k * 2 * h + col), acc);
            uv_next[(size_t)t * 2 * h + col] = ldw(fw + d.pre_b[l + 1] + col) + acc;
        }
    }
}

NINO_KERNEL nino_node_init_f32(const GnnDims* d, const float* fw, const float* lpe, float* x, float* uv) {
    node_init(d, fw, lpe, x, uv);
}

NINO_KERNEL nino_node_init_f16(const GnnDims* d, const f16_t* fw, const float* lpe, float* x, float* uv) {
    node_init(d, fw, lpe, x, uv);
}

NINO_KERNEL nino_layer_f32(const GnnDims* d, const int* tab, const float* fw, const float* hist, const float* stats,
                           int l, const float* x_in, const float* uv, float* lst, float* xconv, float* x_out,
                           float* uv_next) {
    layer(d, tab, fw, hist, stats, l, x_in, uv, lst, xconv, x_out, uv_next);
}

NINO_KERNEL nino_layer_f16(const GnnDims* d, const int* tab, const f16_t* fw, const float* hist, const float* stats,
                           int l, const float* x_in, const float* uv, float* lst, float* xconv, float* x_out,
                           float* uv_next) {
    layer(d, tab, fw, hist, stats, l, x_in, uv, lst, xconv, x_out, uv_next);
}
