// NiNo step, scaling: mean and unbiased standard deviation of every parameter tensor over the context
// states (nino-core's tensor_scales, f64 accumulation as there). One block per tensor.
#include "common.cuh"

// hist [c][P]; tbeg [T + 1] tensor boundaries; stats [T][2] = (mean, sd). Raises FLAG_HISTORY on a
// non-finite history value and FLAG_SCALES on a non-finite mean or sd.
NINO_KERNEL nino_tensor_stats(const float* hist, const int* tbeg, int c, int p, float* stats, int* flag) {
    __shared__ double red[NT];
    int ti = blockIdx.x;
    int off = tbeg[ti], len = tbeg[ti + 1] - off;
    long long n = (long long)len * c;
    double sum = 0.0;
    bool bad = false;
    for (long long i = threadIdx.x; i < n; i += blockDim.x) {
        int st = (int)(i / len);
        float x = hist[(size_t)st * p + off + (i - (long long)st * len)];
        bad |= !finite(x);
        sum += (double)x;
    }
    double mean = block_sum(sum, red) / (double)n;
    double ss = 0.0;
    for (long long i = threadIdx.x; i < n; i += blockDim.x) {
        int st = (int)(i / len);
        double dx = (double)hist[(size_t)st * p + off + (i - (long long)st * len)] - mean;
        ss += dx * dx;
    }
    double tot = block_sum(ss, red);
    if (bad) atomicOr(flag, FLAG_HISTORY);
    if (threadIdx.x == 0) {
        float m = (float)mean, sd = n > 1 ? (float)sqrt(tot / (double)(n - 1)) : nan_f32();
        stats[2 * ti] = m;
        stats[2 * ti + 1] = sd;
        if (!finite(m) || !finite(sd)) atomicOr(flag, FLAG_SCALES);
    }
}
