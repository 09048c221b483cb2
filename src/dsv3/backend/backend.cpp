#include "dsv3/backend/backend.h"

#include "dsv3/backend/cpu/cpu_backend.h"
#include "dsv3/util/error.h"
#ifdef DSV3_HAVE_CUDA
#include "dsv3/backend/cuda/cuda_backend.h"
#endif

namespace dsv3 {

void Backend::run_step(std::optional<uint64_t>, std::span<const std::vector<int32_t>> inputs, const StepBody& body,
                       std::vector<float>& result) {
  std::vector<Indices> views;
  for (const std::vector<int32_t>& values : inputs) views.push_back({values.data(), int64_t(values.size())});
  const ActBuffer out = body(views);
  result.resize(size_t(out.view.rows * out.view.cols));
  download(out.view, result.data());
}

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
