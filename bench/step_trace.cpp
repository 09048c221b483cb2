// Where a CUDA decode step's time goes: a CUPTI injection library that records every kernel replayed
// from a CUDA graph (the decode steps) and every CUDA runtime call, and at exit writes
//   - per step (one graph launch: its kernels carry the launch's correlation id): the span of its
//     kernels, their summed durations, and the GPU's idle time between steps (the host's share:
//     sampling, the inputs' upload, the graph launch; none where steps are launched ahead);
//   - per kernel (name and grid): its share of the span (`contrib`: from the end of the kernel before
//     it to its own end, so the shares add up to the span and overlapped starts count once), its
//     mean duration (from its first block, which a chained kernel starts early) and launches a step;
//   - per runtime call: count and host time.
// The trace itself slows a step by some 10%; compare kernels within one trace, not across builds.
//
//   export CUDA_INJECTION64_PATH=build/bench/libdsv3_step_trace.so DSV3_STEP_TRACE=trace.txt
//   build/dsv3 bench --device cuda -m preset:moonlight --prompt-tokens 1024 --decode-tokens 64
#include <cupti.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace {

constexpr size_t kBufferBytes = size_t(8) << 20;
struct KernelRecord {
  uint64_t start_ns, end_ns;
  uint32_t launch;  // the correlation id of the graph launch that replayed it
  std::string name;  // with its grid
};

struct ApiTotal {
  int64_t calls = 0;
  double ns = 0.0;
};

std::mutex records_mutex;
std::vector<KernelRecord> kernels;
std::map<std::string, ApiTotal> api_calls;

void CUPTIAPI give_buffer(uint8_t** buffer, size_t* size, size_t* max_records) {
  *size = kBufferBytes;
  *buffer = static_cast<uint8_t*>(aligned_alloc(8, kBufferBytes));
  *max_records = 0;
}

void CUPTIAPI take_buffer(CUcontext, uint32_t, uint8_t* buffer, size_t, size_t valid_bytes) {
  std::lock_guard<std::mutex> lock(records_mutex);
  CUpti_Activity* record = nullptr;
  while (cuptiActivityGetNextRecord(buffer, valid_bytes, &record) == CUPTI_SUCCESS) {
    if (record->kind == CUPTI_ACTIVITY_KIND_RUNTIME) {
      const auto* call = reinterpret_cast<const CUpti_ActivityAPI*>(record);
      const char* name = nullptr;
      cuptiGetCallbackName(CUPTI_CB_DOMAIN_RUNTIME_API, call->cbid, &name);
      ApiTotal& total = api_calls[name ? name : "?"];
      ++total.calls;
      total.ns += double(call->end - call->start);
    } else if (record->kind == CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL) {
      const auto* kernel = reinterpret_cast<const CUpti_ActivityKernel10*>(record);
      if (kernel->graphId == 0) continue;  // not a replayed step
      char name[400];
      std::snprintf(name, sizeof name, "%.300s [%dx%dx%d]", kernel->name ? kernel->name : "?", kernel->gridX,
                    kernel->gridY, kernel->gridZ);
      kernels.push_back({kernel->start, kernel->end, kernel->correlationId, name});
    }
  }
  free(buffer);
}

struct KernelTotal {
  int64_t launches = 0;
  double duration_ns = 0.0, contrib_ns = 0.0;
};

void write_report() {
  cuptiActivityFlushAll(1);
  std::lock_guard<std::mutex> lock(records_mutex);
  std::sort(kernels.begin(), kernels.end(),
            [](const KernelRecord& a, const KernelRecord& b) { return a.start_ns < b.start_ns; });
  std::map<std::string, KernelTotal> totals;
  std::vector<double> idle_ns;
  double span_ns = 0.0, duration_ns = 0.0;
  int64_t steps = 0;
  uint64_t last_end = 0;
  const KernelRecord* last = nullptr;
  for (const KernelRecord& k : kernels) {
    double contrib = 0.0;
    if (last && k.launch == last->launch) {
      contrib = double(std::max(k.end_ns, last_end) - last_end);
    } else {
      const uint64_t from = std::max(k.start_ns, last_end);
      if (last) idle_ns.push_back(double(from - last_end));
      contrib = double(std::max(k.end_ns, from) - from);
      ++steps;
    }
    last_end = std::max(last_end, k.end_ns);
    last = &k;
    KernelTotal& total = totals[k.name];
    ++total.launches;
    total.duration_ns += double(k.end_ns - k.start_ns);
    total.contrib_ns += contrib;
    span_ns += contrib;
    duration_ns += double(k.end_ns - k.start_ns);
  }
  const char* path = std::getenv("DSV3_STEP_TRACE");
  FILE* out = path ? std::fopen(path, "w") : stderr;
  if (!out) return;
  const double per_step = 1e-3 / double(std::max<int64_t>(steps, 1));
  std::fprintf(out, "%lld steps, %zu kernels: span %.1f us a step, kernels' durations %.1f us a step\n",
               (long long)steps, kernels.size(), span_ns * per_step, duration_ns * per_step);
  if (!idle_ns.empty()) {
    std::sort(idle_ns.begin(), idle_ns.end());
    std::fprintf(out, "GPU idle between steps: median %.1f us, p10 %.1f us\n", idle_ns[idle_ns.size() / 2] * 1e-3,
                 idle_ns[idle_ns.size() / 10] * 1e-3);
  }
  std::vector<std::pair<std::string, KernelTotal>> by_share(totals.begin(), totals.end());
  std::sort(by_share.begin(), by_share.end(),
            [](const auto& a, const auto& b) { return a.second.contrib_ns > b.second.contrib_ns; });
  std::fprintf(out, "%12s %12s %10s  kernel\n", "us a step", "mean us", "a step");
  for (const auto& [name, t] : by_share)
    std::fprintf(out, "%12.1f %12.2f %10.1f  %s\n", t.contrib_ns * per_step, t.duration_ns * 1e-3 / double(t.launches),
                 double(t.launches) / double(std::max<int64_t>(steps, 1)), name.c_str());
  for (const auto& [name, t] : api_calls)
    std::fprintf(out, "runtime %-40s calls %8lld host %12.1f us, %8.2f us a call\n", name.c_str(),
                 (long long)t.calls, t.ns * 1e-3, t.ns * 1e-3 / double(t.calls));
  if (path) std::fclose(out);
}

}  // namespace

// Called by the CUDA driver when the library is named in CUDA_INJECTION64_PATH.
extern "C" int InitializeInjection() {
  if (cuptiActivityRegisterCallbacks(give_buffer, take_buffer) != CUPTI_SUCCESS) return 0;
  cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL);
  cuptiActivityEnable(CUPTI_ACTIVITY_KIND_RUNTIME);
  std::atexit(write_report);
  return 1;
}
