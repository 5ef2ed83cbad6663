/* timestep.cu - one thread per (frame, frequency); float64 pow/cos/sin as the CPU's math library does
 * them (CUDA's double-precision functions are within 1-2 ulp of the correctly rounded value, far
 * below the fp32 rounding that follows). */
#include "common.cuh"
#include "timestep.cuh"

struct Timesteps {
    float t[WM_TIMESTEP_MAX_FRAMES];
};

static __global__ void timestep_sinusoid_kernel(float *dst, Timesteps ts, int F, int freq_dim) {
    const int half = freq_dim / 2;
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= F * half) return;
    const int f = i / half, k = i % half;
    const double ang = (double)ts.t[f] * pow(10000.0, -(double)k / (double)half);
    dst[(size_t)f * freq_dim + k] = (float)cos(ang);
    dst[(size_t)f * freq_dim + half + k] = (float)sin(ang);
}

extern "C" cudaError_t wm_cuda_timestep_sinusoid(float *dst, const float *t, int F, int freq_dim, cudaStream_t s) {
    if (F <= 0 || freq_dim < 2) return cudaSuccess;
    if (F > WM_TIMESTEP_MAX_FRAMES) return cudaErrorInvalidValue;
    Timesteps ts;
    for (int f = 0; f < F; f++) ts.t[f] = t[f];
    const int n = F * (freq_dim / 2), threads = 128;
    timestep_sinusoid_kernel<<<(n + threads - 1) / threads, threads, 0, s>>>(dst, ts, F, freq_dim);
    return cudaGetLastError();
}
