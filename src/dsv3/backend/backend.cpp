#include "dsv3/backend/backend.h"

#include "dsv3/backend/cpu/cpu_backend.h"
#include "dsv3/util/error.h"
#ifdef DSV3_HAVE_CUDA
#include "dsv3/backend/cuda/cuda_backend.h"
#endif

namespace dsv3 {

std::unique_ptr<Backend> make_backend(const std::string& name) {
#ifdef DSV3_HAVE_CUDA
  if (name == "cuda" || (name.empty() && cuda::device_present())) return std::make_unique<CudaBackend>();
#else
  if (name == "cuda") fail("--device cuda: this dsv3 was built without the CUDA backend (no nvcc at build time); use --device cpu");
#endif
  if (name.empty() || name == "cpu") return std::make_unique<CpuBackend>();
  fail("unknown --device '", name, "' (expected cpu or cuda)");
}

}  // namespace dsv3
