// Backend::launch_step and finish_step on the GPU: a step's inputs go up in one copy; decode steps
// (those given a replay key) are recorded as CUDA graphs the second time their key is seen and
// replayed after that (step_graphs.h); each step's result comes down into pinned memory of its own,
// behind its work on the stream, and finish_step waits for that copy alone.
#include <algorithm>
#include <utility>

#include "dsv3/backend/cuda/cuda_backend.h"

namespace dsv3 {
namespace {

std::vector<Indices> input_views(const void* memory, const cuda::StepInputLayout& layout,
                                 std::span<const std::vector<int32_t>> inputs) {
  std::vector<Indices> views;
  for (size_t i = 0; i < inputs.size(); ++i)
    views.push_back(
        {static_cast<const int32_t*>(memory) + layout.offsets[i], int64_t(inputs[i].size()), layout.capacities[i]});
  return views;
}

}  // namespace

void CudaBackend::upload_step_inputs(std::span<const std::vector<int32_t>> inputs, const cuda::StepInputLayout& layout,
                                     void* memory) {
  std::vector<int32_t> packed(size_t(layout.total), 0);
  for (size_t i = 0; i < inputs.size(); ++i)
    std::copy(inputs[i].begin(), inputs[i].end(), packed.begin() + layout.offsets[i]);
  copy_to_device(memory, packed.data(), packed.size() * sizeof(int32_t));
}

void CudaBackend::launch_step(std::optional<uint64_t> replay_key, std::span<const std::vector<int32_t>> inputs,
                              const StepBody& body) {
  if (!replay_key) return launch_step_directly(inputs, body);
  const cuda::StepInputLayout layout = cuda::StepInputLayout::of(inputs, true);
  const cuda::StepGraphs::Key key{*replay_key, layout.capacities};
  cuda::StepGraphs::Graph* graph = graphs_.find(key);
  if (graph) {
    // Queued behind the steps in flight, which may be replays of this graph still reading its inputs.
    upload_step_inputs(inputs, layout, graph->inputs.data());
  } else {
    if (!graphs_.seen_before(key) || graphs_.uncapturable(key) || !capture_step(key, inputs, layout, body))
      return launch_step_directly(inputs, body);
    graph = graphs_.find(key);
  }
  DSV3_CUDA_CHECK(cudaGraphLaunch(graph->exec, stream_));
  // The download is queued ahead of the next replay, which overwrites the graph's result.
  queue_result_download(graph->result);
}

void CudaBackend::launch_step_directly(std::span<const std::vector<int32_t>> inputs, const StepBody& body) {
  const cuda::StepInputLayout layout = cuda::StepInputLayout::of(inputs, false);
  const Buffer memory = scratch(size_t(layout.total) * sizeof(int32_t));
  upload_step_inputs(inputs, layout, memory.data());
  // The pool hands this memory out again only to work queued after the download.
  const ActBuffer out = body(input_views(memory.data(), layout, inputs));
  queue_result_download(out.view);
}

void CudaBackend::queue_result_download(const Act& src) {
  const size_t n_bytes = size_t(src.rows * src.cols) * 4;
  LaunchedStep step;
  // A block of pinned memory big enough, from those no step in flight holds (cudaMallocHost takes
  // milliseconds: blocks are kept).
  auto fits = std::find_if(free_results_.begin(), free_results_.end(),
                           [&](const Buffer& b) { return b.n_bytes() >= n_bytes; });
  if (fits != free_results_.end()) {
    step.block = std::move(*fits);
    free_results_.erase(fits);
  } else {
    step.block = cuda::pinned_alloc(n_bytes);
  }
  step.n_values = size_t(src.rows * src.cols);
  if (src.rows > 0)
    DSV3_CUDA_CHECK(cudaMemcpy2DAsync(step.block.data(), size_t(src.cols) * 4, src.data, size_t(src.stride) * 4,
                                      size_t(src.cols) * 4, size_t(src.rows), cudaMemcpyDeviceToHost, stream_));
  if (free_events_.empty()) {
    DSV3_CUDA_CHECK(cudaEventCreateWithFlags(&step.done, cudaEventDisableTiming));
  } else {
    step.done = free_events_.back();
    free_events_.pop_back();
  }
  DSV3_CUDA_CHECK(cudaEventRecord(step.done, stream_));
  launched_.push_back(std::move(step));
}

void CudaBackend::finish_step(std::vector<float>& result) {
  DSV3_ASSERT(!launched_.empty());
  LaunchedStep step = std::move(launched_.front());
  launched_.pop_front();
  const cudaError_t waited = cudaEventSynchronize(step.done);
  free_events_.push_back(step.done);
  DSV3_CUDA_CHECK(waited);
  const float* values = static_cast<const float*>(step.block.data());
  result.assign(values, values + step.n_values);
  free_results_.push_back(std::move(step.block));
  if (free_results_.size() > kKeptResultBlocks) free_results_.erase(free_results_.begin());
}

bool CudaBackend::capture_step(const cuda::StepGraphs::Key& key, std::span<const std::vector<int32_t>> inputs,
                               const cuda::StepInputLayout& layout, const StepBody& body) {
  auto graph = std::make_unique<cuda::StepGraphs::Graph>();
  graph->pool = std::make_shared<cuda::DevicePool>();
  graph->inputs = cuda::device_alloc(size_t(layout.total) * sizeof(int32_t), "a decode step's inputs");
  upload_step_inputs(inputs, layout, graph->inputs.data());
  const std::vector<Indices> views = input_views(graph->inputs.data(), layout, inputs);

  // Relaxed: the graph's pool may call cudaMalloc while the stream records.
  std::shared_ptr<cuda::DevicePool> shared_pool = std::exchange(pool_, graph->pool);
  capturing_ = true;
  cudaGraph_t recorded = nullptr;
  try {
    DSV3_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeRelaxed));
    graph->result = body(views).view;  // its memory stays the graph's, untouched until the next replay
    DSV3_CUDA_CHECK(cudaStreamEndCapture(stream_, &recorded));
  } catch (const Error&) {
    // An op that synchronises or uploads host values (the experts of a large batch) cannot be
    // recorded: steps of this key run as they are.
    cudaStreamEndCapture(stream_, &recorded);
    if (recorded) cudaGraphDestroy(recorded);
    cudaGetLastError();
    capturing_ = false;
    pool_ = std::move(shared_pool);
    graphs_.mark_uncapturable(key);
    return false;
  }
  capturing_ = false;
  pool_ = std::move(shared_pool);
  const cudaError_t instantiated = cudaGraphInstantiate(&graph->exec, recorded, 0);
  cudaGraphDestroy(recorded);
  DSV3_CUDA_CHECK(instantiated);
  graphs_.add(key, std::move(graph));
  return true;
}

}  // namespace dsv3
