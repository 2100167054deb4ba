// What the NiNo kernels share: the model's dimensions and offsets, the edge features read straight from
// the parameter history, and the per-edge chain of folded products.
//
// The folded model (nino-core's `fold_gnn`) is one buffer of weights `WT` (f32, or f16 rounded from it);
// `GnnDims` says where each tensor starts. Per edge, the chain never exists in memory as an `E x H`
// tensor: each kernel recomputes the edge features it needs for its tile of edges in shared memory.
#pragma once

#include "common.cuh"

// Sizes and offsets (in elements of the folded buffer) of one folded GNN on one graph; written by the
// host (`nino_cuda::nowcast::GnnDims`, same field order) and read by every NiNo kernel.
struct GnnDims {
    int h;          // hidden width H
    int nl;         // message-passing layers evaluated (layers - 1)
    int f;          // feature slots F of the graph
    int c;          // context states
    int fc;         // F * c: width of the first edge product's input
    int p;          // parameters P
    int e;          // edges E
    int n;          // nodes N
    int s;          // horizons S of the DMS head
    int typed;      // 1 when the first product's bias depends on the edge type
    int lpe;        // node feature width (0: no node projection product)
    int node_w, node_b;
    int pre[MAXL], pre_b[MAXL], post[MAXL], post_b[MAXL], st[MAXL], st_b[MAXL];
    int ew[MAXL + 1], eb[MAXL + 1];
    int head_w, head_b;
    // Offsets in the int table buffer (GraphTables below, all host-built from nino-core's NeuralGraph).
    int t_src, t_dst, t_kind, t_param, t_tensor, t_inptr, t_inedges;
};

// One row of a tile in shared memory.
typedef float Row[HMAX];

// The int tables (offsets t_* above): src [E], dst [E] and kind [E] (type id) of every edge; param_of
// [E * F], the parameter of each edge slot (-1 none, -2 a self-loop's slot 0); tensor_of [P], the tensor
// of each parameter; in_ptr [N + 1] and in_edges [E], the incoming edges of every node (CSR by target,
// edge order within a node).

// nino-core's SELF_LOOP_FEATURE and SCALE_EPS.
#define SELF_LOOP_FEATURE 2.0f
#define SCALE_EPS 1e-6f

// Edge feature `j = f * c + t` of edge `e`: the scaled state t of the parameter in slot f
// (nino-core's scale_history then history_to_edge_attr, fused).
__device__ __forceinline__ float attr_at(const GnnDims& d, const int* param_of, const int* tensor_of,
                                         const float* hist, const float* stats, int e, int j) {
    int f = j / d.c, t = j - f * d.c;
    int p = param_of[e * d.f + f];
    if (p >= 0) {
        int ti = tensor_of[p];
        float div = stats[2 * ti + 1] + SCALE_EPS;
        return (hist[t * d.p + p] - stats[2 * ti]) / div;
    }
    return p == -2 ? SELF_LOOP_FEATURE : 0.0f;
}

// acc[r] = sum over k < K of in[r][k] * W[k * ld + col] for the ROWS rows of a tile (fmaf, k ascending).
template <class WT>
__device__ __forceinline__ void tile_dot(const Row* in, int K, const WT* w, int ld, int col,
                                         float acc[ROWS]) {
    for (int r = 0; r < ROWS; r++) acc[r] = 0.0f;
    for (int k = 0; k < K; k++) {
        float wk = ldw(w + (size_t)k * ld + col);
        for (int r = 0; r < ROWS; r++) acc[r] = fmaf(in[r][k], wk, acc[r]);
    }
}

// Loads the first-layer edge features of a tile's edges into `in` (rows >= nrows are zeroed).
__device__ __forceinline__ void load_attr_tile(const GnnDims& d, const int* param_of, const int* tensor_of,
                                               const float* hist, const float* stats, const int* edge,
                                               int nrows, Row* in) {
    for (int i = threadIdx.x; i < ROWS * d.fc; i += blockDim.x) {
        int r = i / d.fc, j = i - r * d.fc;
        in[r][j] = r < nrows ? attr_at(d, param_of, tensor_of, hist, stats, edge[r], j) : 0.0f;
    }
}

// Edge features entering layer `upto` for a tile in `a` (which holds layer 0's on entry): each layer
// j < upto applies the edge update G = SiLU(I W_le + b_le + lin_s(X)[src] + lin_t(X)[dst]) (nino-core's
// EdgeKernels::update on the folded product), ping-ponging between `a` and `b`. Returns the buffer that
// holds the result. Ends with a barrier.
template <class WT>
__device__ Row* edge_chain(const GnnDims& d, const WT* fw, const float* lst, int upto, const int* esrc,
                           const int* edst, const int* ekind, Row* a, Row* b) {
    __syncthreads();
    int h = d.h;
    for (int j = 0; j < upto; j++) {
        int inp = j == 0 ? d.fc : h;
        const WT* w = fw + d.ew[j];
        const WT* bt = fw + d.eb[j];
        const float* ls = lst + (size_t)j * d.n * 2 * h;
        for (int col = threadIdx.x; col < h; col += blockDim.x) {
            float acc[ROWS];
            tile_dot(a, inp, w + h, 3 * h, col, acc);
            for (int r = 0; r < ROWS; r++) {
                int row = (j == 0 && d.typed) ? ekind[r] : 0;
                float bias = ldw(bt + (size_t)row * 3 * h + h + col);
                float s = ls[(size_t)esrc[r] * 2 * h + col];
                float t = ls[(size_t)edst[r] * 2 * h + h + col];
                b[r][col] = silu(acc[r] + ((bias + s) + t));
            }
        }
        __syncthreads();
        Row* tmp = a;
        a = b;
        b = tmp;
    }
    return a;
}
