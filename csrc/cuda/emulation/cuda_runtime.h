// CPU emulation of the little CUDA runtime that mi_kernels.cu uses, so that the kernel source
// can be executed (slowly, one std::thread per CUDA thread) on a machine without a GPU.
// Used only by tests/test_ops.py::test_cuda_kernels_emulated_on_cpu; never part of the build.
#pragma once
#include <barrier>
#include <cmath>
#include <functional>
#include <thread>
#include <vector>

typedef int cudaError_t;
typedef void* cudaStream_t;
inline cudaError_t cudaGetLastError() { return 0; }

struct dim3 {
  unsigned x, y, z;
  dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};

inline thread_local dim3 threadIdx, blockIdx;
inline std::barrier<>* emu_barrier = nullptr;

#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__
// Blocks run one after another, so a function-local static is exactly "one per block".
#define __shared__ static
#define __syncthreads() emu_barrier->arrive_and_wait()

template <class F>
void emu_launch(dim3 grid, dim3 block, F&& body) {
  const unsigned nthreads = block.x * block.y * block.z;
  for (unsigned by = 0; by < grid.y; ++by)
    for (unsigned bx = 0; bx < grid.x; ++bx) {
      std::barrier<> bar(nthreads);
      emu_barrier = &bar;
      std::vector<std::thread> ts;
      for (unsigned ty = 0; ty < block.y; ++ty)
        for (unsigned tx = 0; tx < block.x; ++tx)
          ts.emplace_back([&, tx, ty, bx, by] {
            threadIdx = dim3(tx, ty, 0);
            blockIdx = dim3(bx, by, 0);
            body();
          });
      for (auto& t : ts) t.join();
      emu_barrier = nullptr;
    }
}
