// libFuzzer target for the safetensors header parser (dsv3::parse_safetensors): any input must either
// parse into views that lie inside it or be refused with dsv3::Error; any other exception, crash,
// sanitizer report or leak is a finding.
//
// Build (clang 14 and Debian's libclang-rt-14-dev, which holds the libFuzzer runtime):
//   cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DDSV3_FUZZ=ON -DDSV3_CUDA=OFF
//   cmake --build build-fuzz --target fuzz_safetensors
// Run (new inputs go to the first directory; the seed corpus is only read):
//   mkdir -p build-fuzz/corpus
//   build-fuzz/tests/fuzz/fuzz_safetensors build-fuzz/corpus tests/fixtures/safetensors_corpus \
//     -dict=tests/fuzz/safetensors.dict -max_len=4096 -max_total_time=300
// A crash leaves crash-<sha1> in the working directory. Minimise it, then keep it in the seed corpus
// (tests/fixtures/safetensors_corpus/), where loading_tests replays it in every CI run:
//   build-fuzz/tests/fuzz/fuzz_safetensors -minimize_crash=1 -runs=100000 crash-<sha1>
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "dsv3/model/safetensors.h"
#include "dsv3/util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    for (const dsv3::TensorView& t : dsv3::parse_safetensors(data, size, "fuzz input")) {
      if (t.data < data || t.data + t.n_bytes > data + size) std::abort();
      if (size_t(t.numel()) * dsv3::dtype_bytes(t.dtype) != t.n_bytes) std::abort();
      // Reading the first and last byte lets AddressSanitizer check the bounds too.
      if (t.n_bytes > 0 && (t.data[0] ^ t.data[t.n_bytes - 1]) == 0x100) std::abort();
    }
  } catch (const dsv3::Error&) {
    // Refused with a message: the expected outcome for malformed input.
  }
  return 0;
}
