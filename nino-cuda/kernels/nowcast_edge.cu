// NiNo step, edge side: the DMS head for one horizon, fused with everything after it. One block per tile
// of ROWS edges: the edge features leaving the last layer (recomputed by edge_chain), the head's hidden
// layer and the one output row per slot that horizon k needs, the residual on the newest scaled state,
// then unscaling and the scatter into the parameter vector (nino-core's edges_to_params and
// unscale_params). Writes only `pred` [P] (and the scaled edge outputs when `edge_out` is not null).
#include "nowcast.cuh"

template <class WT>
__device__ void head(const GnnDims* dp, const int* tab, const WT* fw, const float* hist, const float* stats,
                     const float* lst, int k, float upd_scale, float* pred, float* edge_out, int* flag) {
    const GnnDims& d = *dp;
    __shared__ Row bufa[ROWS], bufb[ROWS];
    __shared__ int eid[ROWS], esrc[ROWS], edst[ROWS], ekind[ROWS];
    const int *param_of = tab + d.t_param, *tensor_of = tab + d.t_tensor;
    int h = d.h, e0 = blockIdx.x * ROWS;
    int nrows = min(ROWS, d.e - e0);
    if (threadIdx.x < ROWS) {
        int r = threadIdx.x;
        int e = e0 + (r < nrows ? r : 0);
        eid[r] = e;
        esrc[r] = tab[d.t_src + e];
        edst[r] = tab[d.t_dst + e];
        ekind[r] = tab[d.t_kind + e];
    }
    __syncthreads();
    load_attr_tile(d, param_of, tensor_of, hist, stats, eid, nrows, bufa);
    Row* in = edge_chain(d, fw, lst, d.nl, esrc, edst, ekind, bufa, bufb);
    Row* hid = in == bufa ? bufb : bufa;
    int inp = d.nl == 0 ? d.fc : h;
    const WT* w = fw + d.ew[d.nl];
    const WT* bt = fw + d.eb[d.nl];
    bool typed = d.nl == 0 && d.typed;
    for (int col = threadIdx.x; col < h; col += blockDim.x) {
        float acc[ROWS];
        tile_dot(in, inp, w, h, col, acc);
        for (int r = 0; r < ROWS; r++) hid[r][col] = silu(acc[r] + ldw(bt + (typed ? ekind[r] : 0) * h + col));
    }
    __syncthreads();
    bool bad = false;
    for (int i = threadIdx.x; i < nrows * d.f; i += blockDim.x) {
        int r = i / d.f, f = i - r * d.f;
        int row = f * d.s + k - 1;
        float acc = 0.0f;
        for (int j = 0; j < h; j++) acc = fmaf(hid[r][j], ldw(fw + d.head_w + (size_t)row * h + j), acc);
        float out = ldw(fw + d.head_b + row) + acc;
        int e = e0 + r;
        float last = attr_at(d, param_of, tensor_of, hist, stats, e, f * d.c + d.c - 1);
        float y = last + upd_scale * out;
        if (edge_out) edge_out[(size_t)e * d.f + f] = y;
        int p = param_of[(size_t)e * d.f + f];
        if (p >= 0) {
            int ti = tensor_of[p];
            float v = y * stats[2 * ti + 1] + stats[2 * ti];
            bad |= !finite(y) || !finite(v);
            pred[p] = v;
        }
    }
    if (bad) atomicOr(flag, FLAG_PREDICTION);
}

NINO_KERNEL nino_head_f32(const GnnDims* d, const int* tab, const float* fw, const float* hist, const float* stats,
                          const float* lst, int k, float upd_scale, float* pred, float* edge_out, int* flag) {
    head(d, tab, fw, hist, stats, lst, k, upd_scale, pred, edge_out, flag);
}

NINO_KERNEL nino_head_f16(const GnnDims* d, const int* tab, const f16_t* fw, const float* hist, const float* stats,
                          const float* lst, int k, float upd_scale, float* pred, float* edge_out, int* flag) {
    head(d, tab, fw, hist, stats, lst, k, upd_scale, pred, edge_out, flag);
}
