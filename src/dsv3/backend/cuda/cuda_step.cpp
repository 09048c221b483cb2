// Backend::run_step on the GPU: a step's inputs go up in one copy; decode steps (those given a
// replay key) are recorded as CUDA graphs the second time their key is seen and replayed after that
// (step_graphs.h).
#include <utility>

#include "dsv3/backend/cuda/cuda_backend.h"

namespace dsv3 {
namespace {

std::vector<Indices> input_views(const void* memory, const cuda::StepInputLayout& layout,
                                 std::span<const std::vector<int32_t>> inputs) {
  std::vector<Indices> views;
  for (size_t i = 0; i < inputs.size(); ++i)
    views.push_back({static_cast<const int32_t*>(memory) + layout.offsets[i], int64_t(inputs[i].size())});
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

void CudaBackend::run_step(std::optional<uint64_t> replay_key, std::span<const std::vector<int32_t>> inputs,
                           const StepBody& body, std::vector<float>& result) {
  if (!replay_key) return run_step_directly(inputs, body, result);
  const cuda::StepInputLayout layout = cuda::StepInputLayout::of(inputs, true);
  const cuda::StepGraphs::Key key{*replay_key, layout.capacities};
  cuda::StepGraphs::Graph* graph = graphs_.find(key);
  if (graph) {
    upload_step_inputs(inputs, layout, graph->inputs.data());
  } else {
    if (!graphs_.seen_before(key) || graphs_.uncapturable(key) || !capture_step(key, inputs, layout, body))
      return run_step_directly(inputs, body, result);
    graph = graphs_.find(key);
  }
  DSV3_CUDA_CHECK(cudaGraphLaunch(graph->exec, stream_));
  result.resize(size_t(graph->result.rows * graph->result.cols));
  download(graph->result, result.data());
}

void CudaBackend::run_step_directly(std::span<const std::vector<int32_t>> inputs, const StepBody& body,
                                    std::vector<float>& result) {
  const cuda::StepInputLayout layout = cuda::StepInputLayout::of(inputs, false);
  const Buffer memory = scratch(size_t(layout.total) * sizeof(int32_t));
  upload_step_inputs(inputs, layout, memory.data());
  const ActBuffer out = body(input_views(memory.data(), layout, inputs));
  result.resize(size_t(out.view.rows * out.view.cols));
  download(out.view, result.data());
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
