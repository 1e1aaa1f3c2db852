// Runs the GPU backend's CUDA kernels (fastssim/_cupy/_source.py) on the CPU,
// for tests/test_cupy_emulated.py: every CUDA thread of a block is a std::thread,
// __syncthreads() a std::barrier, shared memory one static buffer (the blocks
// of a launch run one after another).  The kernel source is included verbatim (the build
// writes it to fastssim_kernels.cu next to this file's object), so its
// indexing, tables, formulas and reductions are executed, not re-implemented.
// Not the GPU's arithmetic (no FMA contraction here): a check of the logic.
#include <barrier>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <math.h>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

struct dim3 { unsigned x = 1, y = 1, z = 1; };
static thread_local dim3 threadIdx, blockIdx;
static dim3 blockDim, gridDim;
static std::barrier<> *fs_bar = nullptr;
double fs_smem[1 << 16];  // 512 KiB: more than any kernel's dynamic shared memory

#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__
#define __launch_bounds__(n)
#define __shared__
#define __syncthreads() fs_bar->arrive_and_wait()

#include "fastssim_kernels.cu"

template <typename... A, std::size_t... I>
static void fs_call(void (*k)(A...), void **args, std::index_sequence<I...>)
{
    k(*static_cast<std::remove_reference_t<A> *>(args[I])...);
}

template <typename... A>
static void fs_launch(void (*k)(A...), dim3 g, dim3 b, void **args)
{
    // One std::thread per CUDA thread of a block, created once per launch;
    // each runs the blocks in order, and a barrier ends every block (the
    // shared buffer is reused by the next).  A thread that returns early skips
    // no __syncthreads() the others still reach (as CUDA requires).
    gridDim = g;
    blockDim = b;
    const unsigned nt = b.x * b.y * b.z;
    std::barrier<> bar(nt);
    fs_bar = &bar;
    std::vector<std::thread> th;
    for (unsigned t = 0; t < nt; t++)
        th.emplace_back([&, t] {
            threadIdx = {t % b.x, (t / b.x) % b.y, t / (b.x * b.y)};
            for (unsigned z = 0; z < g.z; z++)
                for (unsigned y = 0; y < g.y; y++)
                    for (unsigned x = 0; x < g.x; x++) {
                        blockIdx = {x, y, z};
                        fs_call(k, args, std::index_sequence_for<A...>{});
                        bar.arrive_and_wait();
                    }
        });
    for (auto &t : th) t.join();
}

extern "C" int emu_launch(const char *name, unsigned gx, unsigned gy, unsigned gz,
                          unsigned bx, unsigned by, unsigned bz, void **args)
{
    const dim3 g = {gx, gy, gz}, b = {bx, by, bz};
    const std::string n(name);
    if (n == "fs_fwd") fs_launch(fs_fwd, g, b, args);
    else if (n == "fs_adj") fs_launch(fs_adj, g, b, args);
    else if (n == "fs_fwd0") fs_launch(fs_fwd0, g, b, args);
    else if (n == "fs_adj0") fs_launch(fs_adj0, g, b, args);
    else if (n == "fs_prod") fs_launch(fs_prod, g, b, args);
    else if (n == "fs_down") fs_launch(fs_down, g, b, args);
    else if (n == "fs_up") fs_launch(fs_up, g, b, args);
    else if (n == "fs_combine") fs_launch(fs_combine, g, b, args);
    else if (n == "fs_reduce") fs_launch(fs_reduce, g, b, args);
    else if (n == "fs_shifts") fs_launch(fs_shifts, g, b, args);
    else return 1;
    return 0;
}
