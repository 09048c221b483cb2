#include "dsv3/backend/backend.h"

#include "dsv3/backend/cpu/cpu_backend.h"
#include "dsv3/util/error.h"

namespace dsv3 {

std::unique_ptr<Backend> make_backend(const std::string& name) {
  if (name.empty() || name == "cpu") return std::make_unique<CpuBackend>();
  if (name == "cuda") fail("--device cuda: this build of dsv3 has no CUDA backend yet; use --device cpu");
  fail("unknown --device '", name, "' (expected cpu or cuda)");
}

}  // namespace dsv3
