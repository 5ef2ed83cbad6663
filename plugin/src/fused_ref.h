/* fused_ref.h - the fused sub-layer ops of backend.h written as the compositions of primitive ops
 * that define them. A backend without fused kernels (the CPU) points its table at these; the GPU
 * tests run them on the CUDA backend too, which gives the unfused baseline in the same run. */
#ifndef WM_FUSED_REF_H
#define WM_FUSED_REF_H

#include "backend.h"

void wm_ref_self_attn_in(wm_backend *be, const wm_self_attn_in *a);
void wm_ref_self_attn(wm_backend *be, const wm_self_attn *a);
void wm_ref_cross_attn(wm_backend *be, const wm_cross_attn *a);
void wm_ref_ffn_block(wm_backend *be, const wm_ffn_block *a);

#endif
