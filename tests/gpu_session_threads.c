/* gpu_session_threads.c - test_session_threads.c on the CUDA backend (label gpu; exits 77 without a
 * device): the backend's fork (a stream of its own per session, the model's weights shared) and two
 * sessions of one model on two threads at once, bit-identical to the same sessions run one at a time.
 * On the GPU the concurrent run also races the sessions' first uses of the derived weight copies
 * (q|k|v concatenation, KRSC conv filters), their GEMM plans and their CUDA graphs. */
#define WM_SESSION_THREADS_CUDA 1
#include "test_session_threads.c"
