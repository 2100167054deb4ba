// Training step, convolutions (nino-core's ops/conv.rs): forward with its ReLU fused, the weight and bias
// gradients, and the input gradient with the ReLU of the layer below undone in the same pass. Weights
// and their gradients stay in PyTorch's [out, in, kh, kw] order (the flat parameter vector's), so no
// packing is needed; activations are channels-last [n, h, w, c] except a network's input (NCHW).
#include "common.cuh"

// Input value (channel ci, row iy, column ix) of example b in either layout.
__device__ __forceinline__ float conv_in(const float* x, int nchw, int b, int ci, int iy, int ix, int ci_n, int ih,
                                         int iw) {
    return nchw ? x[(((size_t)b * ci_n + ci) * ih + iy) * iw + ix] : x[(((size_t)b * ih + iy) * iw + ix) * ci_n + ci];
}

// y [n, oh, ow, co] = b + conv(x, w), then ReLU when `relu`. One thread per output value; taps summed in
// nino-core's im2col order (ky, kx, ci).
NINO_KERNEL nino_conv_fwd(const float* x, int nchw, int n, int ci_n, int ih, int iw, const float* w, const float* b,
                          int co_n, int k, int stride, int pad, int oh, int ow, int relu, float* y) {
    int idx = gtid();
    if (idx >= n * oh * ow * co_n) return;
    int co = idx % co_n, pix = idx / co_n;
    int ox = pix % ow, oy = (pix / ow) % oh, bi = pix / (ow * oh);
    float acc = 0.0f;
    for (int ky = 0; ky < k; ky++) {
        int iy = oy * stride + ky - pad;
        if (iy < 0 || iy >= ih) continue;
        for (int kx = 0; kx < k; kx++) {
            int ix = ox * stride + kx - pad;
            if (ix < 0 || ix >= iw) continue;
            for (int ci = 0; ci < ci_n; ci++) {
                acc = fmaf(conv_in(x, nchw, bi, ci, iy, ix, ci_n, ih, iw), w[((co * ci_n + ci) * k + ky) * k + kx], acc);
            }
        }
    }
    float v = b[co] + acc;
    y[idx] = relu && v < 0.0f ? 0.0f : v;
}

// Thread i < co*ci*k*k: gw[i] = sum over examples and output pixels of x * dy (PyTorch order); thread
// co*ci*k*k + o: gb[o] = sum of dy[.., o]. Each thread sums its pixels in order: no atomics, no
// barriers, the same result on every run.
NINO_KERNEL nino_conv_bwd_w(const float* x, int nchw, int n, int ci_n, int ih, int iw, const float* dy, int co_n,
                            int k, int stride, int pad, int oh, int ow, float* gw, float* gb) {
    int wi = gtid(), wl = co_n * ci_n * k * k, pixels = n * oh * ow;
    if (wi >= wl + co_n) return;
    float acc = 0.0f;
    if (wi < wl) {
        int kx = wi % k, ky = (wi / k) % k, ci = (wi / (k * k)) % ci_n, co = wi / (k * k * ci_n);
        for (int p = 0; p < pixels; p++) {
            int ox = p % ow, oy = (p / ow) % oh, bi = p / (ow * oh);
            int iy = oy * stride + ky - pad, ix = ox * stride + kx - pad;
            if (iy < 0 || iy >= ih || ix < 0 || ix >= iw) continue;
            acc = fmaf(conv_in(x, nchw, bi, ci, iy, ix, ci_n, ih, iw), dy[(size_t)p * co_n + co], acc);
        }
        gw[wi] = acc;
    } else {
        int co = wi - wl;
        for (int p = 0; p < pixels; p++) acc = acc + dy[(size_t)p * co_n + co];
        gb[co] = acc;
    }
}

// dx [n, ih, iw, ci] (channels-last input) = the transposed convolution of dy, zeroed where the input
// activation `act` (same layout; null: no ReLU below) is <= 0, as nino-core's relu_backward.
NINO_KERNEL nino_conv_bwd_x(const float* dy, const float* w, int n, int ci_n, int ih, int iw, int co_n, int k,
                            int stride, int pad, int oh, int ow, const float* act, float* dx) {
    int idx = gtid();
    if (idx >= n * ih * iw * ci_n) return;
    int ci = idx % ci_n, pix = idx / ci_n;
    int ix = pix % iw, iy = (pix / iw) % ih, bi = pix / (iw * ih);
    float acc = 0.0f;
    for (int ky = 0; ky < k; ky++) {
        int ty = iy + pad - ky;
        if (ty < 0 || ty % stride != 0 || ty / stride >= oh) continue;
        int oy = ty / stride;
        for (int kx = 0; kx < k; kx++) {
            int tx = ix + pad - kx;
            if (tx < 0 || tx % stride != 0 || tx / stride >= ow) continue;
            int ox = tx / stride;
            const float* g = dy + (((size_t)bi * oh + oy) * ow + ox) * co_n;
            for (int co = 0; co < co_n; co++) acc = fmaf(g[co], w[((co * ci_n + ci) * k + ky) * k + kx], acc);
        }
    }
    dx[idx] = act && act[idx] <= 0.0f ? 0.0f : acc;
}
