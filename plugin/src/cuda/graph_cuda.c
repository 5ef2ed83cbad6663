/* graph_cuda.c - backend.h's capture_begin/capture_end on CUDA: the ops of a DiT forward are recorded
 * into a CUDA graph and launched as one, which removes the per-kernel launch cost (the host's, and
 * the gaps between kernels on the device; it is most of the time of a small model like the shipped
 * game). Each forward is captured anew and cudaGraphExecUpdate patches an executable graph of the
 * same shape (frame positions, cache lengths and the step's timestep change between forwards; the
 * sequence of kernels does not), so the capture costs what launching would and the update is cheap.
 * A denoising step, a sparse step and the cache pass (which stops early) are different sequences:
 * a few executable graphs are kept, told apart by their node counts, so that alternating between
 * them never pays for a new instantiation (nor provokes a failing update).
 *
 * Scratch memory: while capturing, wm_cu_scratch takes memory from an arena (a stack, LIFO) instead
 * of the stream-ordered pool, so the graph holds no memory nodes and every launch reuses the same
 * addresses. Its size is learnt: a capture that runs out of arena fails, remembers what it needed,
 * and the caller runs the forward normally; the next capture gets a larger arena.
 *
 * Anything that cannot be recorded (an op that waits for the device, an error) makes capture_end
 * return 0 without having run anything; after 3 failures in a row of one unit (not counting arena
 * growth) capture of that unit stays off. The first call of each unit is never captured: it makes
 * what ops create on first use (derived weights, GEMM and convolution plans, kernel attributes),
 * which must not happen inside a capture. WM_CUDA_GRAPH=0 turns it off from the start.
 *
 * Kept recordings (a non-zero key, backend.h): the decoder's work on a chunk is the same launches on
 * the same memory every chunk, so it is recorded once and replayed (wm_cu_replay) without recording
 * again: its ~500 launches per chunk, cuDNN's host work among them, cost one cudaGraphLaunch.
 * (Recording it anew each chunk was measured slower than launching: the device sat idle during the
 * recording.) A kept graph points into the arena; growing the arena drops them all. */
#include "common.h"
#include "cuda_backend.h"

#include <stdlib.h>
#include <string.h>

#define ARENA_ALIGN 256

void wm_cu_graph_init(cuda_impl *c) {
    const char *g = getenv("WM_CUDA_GRAPH");
    for (int u = 0; u < WM_CAPTURE_UNITS; u++) c->graph.off[u] = g && strcmp(g, "0") == 0;
}

static void drop_kept(cuda_graph_state *g) {
    for (int i = 0; i < CUDA_GRAPH_KEPT; i++) {
        if (g->kept[i].exec) cudaGraphExecDestroy(g->kept[i].exec);
        g->kept[i].exec = NULL;
    }
}

void wm_cu_graph_free(cuda_impl *c) {
    for (int i = 0; i < CUDA_GRAPH_SLOTS; i++)
        if (c->graph.slot[i].exec) cudaGraphExecDestroy(c->graph.slot[i].exec);
    drop_kept(&c->graph);
    if (c->graph.arena) cudaFree(c->graph.arena);
    free(c->graph.stack);
    memset(&c->graph, 0, sizeof c->graph);
}

void *wm_cu_arena_take(cuda_impl *c, size_t bytes) {
    cuda_graph_state *g = &c->graph;
    const size_t off = (g->top + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    if (off + bytes > g->size || g->depth == g->cap) {
        if (off + bytes > g->need) g->need = off + bytes;
        g->failed = 1;
        return NULL;
    }
    g->stack[g->depth++] = (cuda_arena_entry){off, bytes, 0};
    g->top = off + bytes;
    return g->arena + off;
}

int wm_cu_arena_give(cuda_impl *c, void *p) {
    cuda_graph_state *g = &c->graph;
    if (!g->arena || (char *)p < g->arena || (char *)p >= g->arena + g->size) return 0;
    const size_t off = (size_t)((char *)p - g->arena);
    for (int i = g->depth; i-- > 0;)
        if (g->stack[i].off == off && !g->stack[i].freed) {
            g->stack[i].freed = 1;
            break;
        }
    while (g->depth > 0 && g->stack[g->depth - 1].freed) g->depth--; /* frees out of order wait for the top */
    g->top = g->depth ? g->stack[g->depth - 1].off + g->stack[g->depth - 1].bytes : 0;
    return 1;
}

int wm_cu_capture_begin(wm_backend *be, int unit, uint64_t key) {
    cuda_impl *c = cuda_of(be);
    cuda_graph_state *g = &c->graph;
    if (unit < 0 || unit >= WM_CAPTURE_UNITS || g->off[unit] || g->capturing) return 0;
    if (g->calls[unit]++ == 0) return 0;
    /* an earlier failure of this call stays the caller's: do not record over it */
    const wm_status prev = wm_take_failure();
    if (prev != WM_OK) {
        wm_note_failure(prev);
        return 0;
    }
    if (!g->arena && g->need < ((size_t)64 << 20)) g->need = (size_t)64 << 20; /* a first size */
    if (g->need > g->size) { /* grow the arena to what the last capture needed, with room */
        if (cudaStreamSynchronize(c->stream) != cudaSuccess) {
            cudaGetLastError();
            return 0;
        }
        drop_kept(g); /* they point into the old arena */
        if (g->arena) cudaFree(g->arena), c->bytes -= g->size;
        const size_t size = g->need + g->need / 4;
        g->arena = wm_cu_malloc(c, size, "the CUDA graph's scratch arena");
        g->size = g->arena ? size : 0;
        if (!g->arena) {
            wm_take_failure(); /* an optimisation that could not get memory: run without it */
            for (int u = 0; u < WM_CAPTURE_UNITS; u++) g->off[u] = 1;
            return 0;
        }
        c->bytes += size;
    }
    if (!g->stack) {
        g->cap = 256;
        if (!(g->stack = calloc((size_t)g->cap, sizeof *g->stack))) return 0;
    }
    g->top = 0, g->depth = 0, g->failed = 0;
    if (cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal) != cudaSuccess) {
        cudaGetLastError();
        g->off[unit] = 1;
        return 0;
    }
    g->capturing = 1;
    g->unit = unit;
    g->key = key;
    g->clock++;
    return 1;
}

/* Failure of a capture: nothing ran, the caller runs the ops again. */
static int capture_failed(cuda_graph_state *g) {
    cudaGetLastError();
    wm_take_failure();
    const int grow = g->failed && g->need > g->size;
    if (!grow && ++g->failures[g->unit] >= 3) g->off[g->unit] = 1;
    g->depth = 0, g->top = 0;
    return 0;
}

/* capture_end of a keyed recording: instantiated anew into the (unit, key) slot, or the least
 * recently used one, and launched. */
static int end_kept(cuda_impl *c, cudaGraph_t graph) {
    cuda_graph_state *g = &c->graph;
    int s = 0;
    for (int i = 0; i < CUDA_GRAPH_KEPT; i++) {
        if (g->kept[i].exec && g->kept[i].unit == g->unit && g->kept[i].key == g->key) {
            s = i;
            break;
        }
        if (!g->kept[i].exec || (g->kept[s].exec && g->kept[i].used < g->kept[s].used)) s = i;
    }
    if (g->kept[s].exec) cudaGraphExecDestroy(g->kept[s].exec);
    g->kept[s].exec = NULL;
    const int ok = cudaGraphInstantiate(&g->kept[s].exec, graph, 0) == cudaSuccess &&
                   cudaGraphLaunch(g->kept[s].exec, c->stream) == cudaSuccess;
    cudaGraphDestroy(graph);
    if (!ok) {
        if (g->kept[s].exec) cudaGraphExecDestroy(g->kept[s].exec);
        g->kept[s].exec = NULL;
        return capture_failed(g);
    }
    g->kept[s].unit = g->unit, g->kept[s].key = g->key, g->kept[s].used = g->clock;
    g->failures[g->unit] = 0;
    return 1;
}

int wm_cu_replay(wm_backend *be, int unit, uint64_t key) {
    cuda_graph_state *g = &cuda_of(be)->graph;
    if (!key || unit < 0 || unit >= WM_CAPTURE_UNITS || g->off[unit] || g->capturing) return 0;
    for (int i = 0; i < CUDA_GRAPH_KEPT; i++)
        if (g->kept[i].exec && g->kept[i].unit == unit && g->kept[i].key == key) {
            g->calls[unit]++;
            g->kept[i].used = ++g->clock;
            if (cudaGraphLaunch(g->kept[i].exec, cuda_of(be)->stream) == cudaSuccess) return 1;
            cudaGetLastError(); /* dropped: the caller records or runs the ops again */
            cudaGraphExecDestroy(g->kept[i].exec);
            g->kept[i].exec = NULL;
            return 0;
        }
    return 0;
}

int wm_cu_capture_end(wm_backend *be) {
    cuda_impl *c = cuda_of(be);
    cuda_graph_state *g = &c->graph;
    if (!g->capturing) return 0;
    g->capturing = 0;
    cudaGraph_t graph = NULL;
    cudaError_t e = cudaStreamEndCapture(c->stream, &graph);
    int ok = e == cudaSuccess && graph && !g->failed && wm_take_failure() == WM_OK;
    size_t nodes = 0;
    if (ok) ok = cudaGraphGetNodes(graph, NULL, &nodes) == cudaSuccess;
    if (ok && g->key) return end_kept(c, graph);
    int s = -1;
    if (ok) { /* the slot of this size, else the least recently used one */
        for (int i = 0; i < CUDA_GRAPH_SLOTS; i++)
            if (g->slot[i].exec && g->slot[i].nodes == nodes && (s < 0 || g->slot[i].used > g->slot[s].used)) s = i;
        if (s >= 0) {
            cudaGraphExecUpdateResultInfo info;
            if (cudaGraphExecUpdate(g->slot[s].exec, graph, &info) != cudaSuccess) { /* same size, other kernels */
                cudaGetLastError();
                cudaGraphExecDestroy(g->slot[s].exec);
                g->slot[s].exec = NULL;
            }
        } else {
            s = 0;
            for (int i = 1; i < CUDA_GRAPH_SLOTS; i++)
                if (!g->slot[i].exec || (g->slot[s].exec && g->slot[i].used < g->slot[s].used)) s = i;
            if (g->slot[s].exec) cudaGraphExecDestroy(g->slot[s].exec);
            g->slot[s].exec = NULL;
        }
        if (!g->slot[s].exec && cudaGraphInstantiate(&g->slot[s].exec, graph, 0) != cudaSuccess) {
            cudaGetLastError();
            g->slot[s].exec = NULL;
            ok = 0;
        }
    }
    if (ok) {
        g->slot[s].nodes = nodes;
        g->slot[s].used = g->clock;
        ok = cudaGraphLaunch(g->slot[s].exec, c->stream) == cudaSuccess;
    }
    if (graph) cudaGraphDestroy(graph);
    if (!ok) return capture_failed(g);
    g->failures[g->unit] = 0;
    return 1;
}
