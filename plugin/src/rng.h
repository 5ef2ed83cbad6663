/* rng.h - counter-based noise: Philox4x32-10 + Box-Muller (docs/MODEL.md section 5).
 * Counter-based so that any backend draws element n of stream s without sequential state: the CPU
 * and a GPU produce the same noise, and a restored session continues with the same draws. */
#ifndef WM_RNG_H
#define WM_RNG_H

#include <stddef.h>
#include <stdint.h>

void wm_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);
/* dst[i] = normal element (first + i) of stream `stream` under `seed`. */
void wm_normal_fill(float *dst, size_t n, uint64_t seed, uint64_t stream, uint64_t first);

#endif
