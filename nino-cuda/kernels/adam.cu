// Adam on the flat parameter vector, operation for operation nino-core's adam_step (the step-dependent
// scalars come from the host, computed as nino-core computes them), so results agree bit for bit.
#include "common.cuh"

NINO_KERNEL nino_adam(float* p, const float* g, float* m, float* v, int n, float neg_step, float bc2_sqrt,
                      float decay, int weight_decay, float w1, float b2, float w2, float eps) {
    int i = gtid();
    if (i >= n) return;
    float gi = g[i], pi = p[i];
    if (weight_decay) pi = pi * decay;
    float mi = m[i] + w1 * (gi - m[i]);
    float vi = v[i] * b2 + w2 * gi * gi;
    float denom = sqrtf(vi) / bc2_sqrt + eps;
    pi = pi + neg_step * mi / denom;
    m[i] = mi;
    v[i] = vi;
    p[i] = pi;
}
