// Training step, everything but the convolutions (nino-core's ops/linear.rs, ops/pool.rs, ops/act.rs and
// ops/loss.rs): linear forward and backward, global average pooling, softmax cross-entropy. ReLU is fused
// into the forward kernels (`relu`) and into the input-gradient kernels (`act`, the activation whose
// ReLU is undone; null for none).
#include "common.cuh"

// y [n, n_out] = x W^T + b, then ReLU when `relu`. One thread per output value.
NINO_KERNEL nino_linear_fwd(const float* x, int n, int n_in, const float* w, const float* b, int n_out, int relu,
                            float* y) {
    int idx = gtid();
    if (idx >= n * n_out) return;
    int o = idx % n_out, i = idx / n_out;
    float acc = 0.0f;
    for (int k = 0; k < n_in; k++) acc = fmaf(x[(size_t)i * n_in + k], w[(size_t)o * n_in + k], acc);
    float v = acc + b[o];
    y[idx] = relu && v < 0.0f ? 0.0f : v;
}

// Thread i < n_out*n_in: gw[i] = sum over examples of dy * x; thread n_out*n_in + o: gb[o] = sum of
// dy[.., o], added in example order as nino-core does.
NINO_KERNEL nino_linear_bwd_w(const float* x, int n, int n_in, const float* dy, int n_out, float* gw, float* gb) {
    int idx = gtid(), wl = n_out * n_in;
    if (idx >= wl + n_out) return;
    float acc = 0.0f;
    if (idx < wl) {
        int o = idx / n_in, k = idx % n_in;
        for (int b = 0; b < n; b++) acc = fmaf(dy[(size_t)b * n_out + o], x[(size_t)b * n_in + k], acc);
        gw[idx] = acc;
    } else {
        int o = idx - wl;
        for (int b = 0; b < n; b++) acc = acc + dy[(size_t)b * n_out + o];
        gb[o] = acc;
    }
}

// dx [n, n_in] = dy W, zeroed where `act` <= 0.
NINO_KERNEL nino_linear_bwd_x(const float* dy, int n, int n_out, const float* w, int n_in, const float* act,
                              float* dx) {
    int idx = gtid();
    if (idx >= n * n_in) return;
    int k = idx % n_in, b = idx / n_in;
    float acc = 0.0f;
    for (int o = 0; o < n_out; o++) acc = fmaf(dy[(size_t)b * n_out + o], w[(size_t)o * n_in + k], acc);
    dx[idx] = act && act[idx] <= 0.0f ? 0.0f : acc;
}

// out [n, ch] = mean over the pixels of x [n, pix, ch], summed in pixel order then divided (bit for bit
// nino-core's gap_forward).
NINO_KERNEL nino_gap_fwd(const float* x, int n, int pix, int ch, float* out) {
    int idx = gtid();
    if (idx >= n * ch) return;
    int c = idx % ch, b = idx / ch;
    float s = 0.0f;
    for (int p = 0; p < pix; p++) s = s + x[((size_t)b * pix + p) * ch + c];
    out[idx] = s / (float)pix;
}

// dx [n, pix, ch] = dout[n, ch] / pix, zeroed where `act` <= 0.
NINO_KERNEL nino_gap_bwd(const float* dout, int n, int pix, int ch, const float* act, float* dx) {
    int idx = gtid();
    if (idx >= n * pix * ch) return;
    int c = idx % ch, b = idx / (pix * ch);
    float g = dout[(size_t)b * ch + c] / (float)pix;
    dx[idx] = act && act[idx] <= 0.0f ? 0.0f : g;
}

// Softmax cross-entropy of logits [n, classes] against labels y, in one block (nino-core's
// cross_entropy_sum and count_correct): writes dlogits = scale * (softmax - onehot) when not null, the
// per-example losses and hits into rows [2n], then out[0] = the sum of the losses (added in example
// order) and out[1] = the number of top-1 hits. A label outside 0..classes raises FLAG_LABEL.
NINO_KERNEL nino_xent(const float* logits, const int* y, int n, int classes, float scale, float* dlogits,
                      float* rows, float* out, int* flag) {
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        const float* z = logits + (size_t)i * classes;
        int label = y[i];
        if (label < 0 || label >= classes) {
            atomicOr(flag, FLAG_LABEL);
            rows[2 * i] = nan_f32();
            rows[2 * i + 1] = 0.0f;
            continue;
        }
        float m = -inf_f32();
        for (int j = 0; j < classes; j++) m = fmaxf(m, z[j]);
        if (!finite(m)) {
            m = 0.0f;
            for (int j = 0; j < classes; j++) m = m + z[j];
        }
        float s = 0.0f;
        for (int j = 0; j < classes; j++) s = s + expf(z[j] - m);
        float ls = logf(s);
        int best = 0;
        for (int j = 0; j < classes; j++) best = z[j] > z[best] ? j : best;
        rows[2 * i] = (m - z[label]) + ls;
        rows[2 * i + 1] = best == label ? 1.0f : 0.0f;
        if (dlogits) {
            float* d = dlogits + (size_t)i * classes;
            for (int j = 0; j < classes; j++) d[j] = scale * expf((z[j] - m) - ls);
            d[label] = d[label] - scale;
        }
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        float total = 0.0f, hits = 0.0f;
        for (int i = 0; i < n; i++) {
            total = total + rows[2 * i];
            hits = hits + rows[2 * i + 1];
        }
        out[0] = total;
        out[1] = hits;
    }
}
