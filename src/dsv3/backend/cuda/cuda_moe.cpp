// DeepSeekMoE on the GPU. The router runs in float32 (expert choice is sensitive to rounding, and
// transformers routes in float32): the weight-streaming kernel for few rows, a float32 product for
// many. The (token, expert) pairs are sorted by expert on the device; the experts' products then run
// without the host knowing which experts were chosen: weight streaming for decode-sized batches (FP8
// on tensor cores, moe_mma.cu; other weights on CUDA cores, moe.cu), grouped tensor-core products for
// larger ones (grouped_gemm.cu: grouped_few.cu's 16-row tiles for groups of a few rows,
// grouped_wgmma.cu's warpgroup tiles for prefill).
#include <algorithm>
#include <utility>
#include <vector>

#include "dsv3/backend/cuda/cuda_backend.h"
#include "dsv3/backend/cuda/grouped_few.h"
#include "dsv3/backend/cuda/moe_mma.h"

namespace dsv3 {
namespace {

// Tokens up to which the experts stream their weights (moe.cu, a pass over an expert's weight for
// every 8 of its tokens); beyond, the grouped tensor-core products (grouped_gemm.cu) take them.
// Measured with bench --ops on Moonlight's 64 experts (H100): streaming 0.32 ms at 16 tokens against
// 0.39 grouped, 0.60 against 0.55 at 32, 2.3 against 0.58 at 128.
constexpr int64_t kStreamingTokens = 16;
// Rows up to which the router's gate streams its weight (linear_small); beyond, one cuBLASLt float32
// product against a float32 copy of it (the streaming kernel took 68 us a layer at 1024 rows on
// Moonlight, a 64 x 2048 weight, on an H100).
constexpr int64_t kStreamedRouterRows = 16;

// The router's rules as its kernels take them; fails for routers they do not take.
cuda::RouterConfig router_config(int64_t n_experts, const RouterParams& p) {
  if (n_experts > cuda::kMaxRoutedExperts || p.n_group > 32)
    fail("--device cuda: routing over ", n_experts, " experts in ", p.n_group, " groups is not supported (at most ",
         cuda::kMaxRoutedExperts, " experts and 32 groups)");
  cuda::RouterConfig config;
  config.sigmoid = p.scoring_func == ScoringFunc::Sigmoid;
  config.group_rule = p.n_group <= 1 ? 0 : p.topk_method == TopkMethod::NoauxTc ? 1 : p.topk_method == TopkMethod::GroupLimitedGreedy ? 2 : 0;
  config.n_group = int(p.n_group), config.topk_group = int(p.topk_group), config.top_k = int(p.top_k);
  config.normalise = p.norm_topk_prob;
  config.routed_scaling_factor = p.routed_scaling_factor;
  return config;
}

const float* bias_data(const Act* e_score_correction_bias) {
  return e_score_correction_bias ? static_cast<const float*>(e_score_correction_bias->data) : nullptr;
}

// Which kernels run a layer's experts for x's tokens (top_k pairs a token): the grouped products
// or the streaming ones, these on tensor cores or CUDA cores, and where the shared FFN runs.
struct ExpertPaths {
  bool grouped = false;
  int64_t hidden_stride = 0;  // of the FFNs' hidden rows
  bool vector_gate = false, vector_down = false;
  bool fuse_shared = false;   // the shared FFN in the streaming launches
  bool group_shared = false;  // the shared FFN as one more group of the grouped products
  bool gate_up_mma = false, down_mma = false;  // streaming on tensor cores (moe_mma.h)
  bool shared_in_y() const { return fuse_shared || group_shared; }
};

ExpertPaths expert_paths(const Act& x, int64_t top_k, std::span<const ExpertWeights> experts,
                         const ExpertWeights* shared) {
  const int64_t n = x.rows, n_pairs = n * top_k;
  const int64_t hidden = x.cols, width = experts[0].gate_proj.out_features();
  ExpertPaths paths;
  // Every expert weight is its own cudaMalloc (256-byte aligned), so the first stands for all.
  const cuda::DeviceWeight gate_shape = cuda::weight(experts[0].gate_proj), down_shape = cuda::weight(experts[0].down_proj);
  // The hidden rows are pooled scratch, 16-byte aligned: nullptr stands for their address.
  paths.grouped = n > kStreamingTokens && cuda::grouped_linear_ok(gate_shape, cuda::matrix(x)) &&
                  cuda::grouped_linear_ok(down_shape, {nullptr, n_pairs, width, width});
  // The shared FFN joins the streaming launches where it reads as the routed experts do (dtype, hidden
  // size, 16-byte rows); else it runs on its own after them.
  const int64_t shared_width = shared ? shared->gate_proj.out_features() : 0;
  paths.hidden_stride = shared && !paths.grouped ? std::max(width, (shared_width + 3) / 4 * 4) : width;
  paths.vector_gate = cuda::vector_rows_ok(gate_shape, x.data, x.stride);
  paths.vector_down = cuda::vector_rows_ok(down_shape, nullptr, paths.hidden_stride);
  paths.fuse_shared =
      shared && !paths.grouped && shared->gate_proj.weight.dtype == gate_shape.dtype &&
      shared->down_proj.weight.dtype == down_shape.dtype && shared->gate_proj.in_features() == hidden &&
      cuda::vector_rows_ok(cuda::weight(shared->gate_proj), x.data, x.stride) == paths.vector_gate &&
      cuda::vector_rows_ok(cuda::weight(shared->down_proj), nullptr, paths.hidden_stride) == paths.vector_down;
  // A prefill's FP8 shared FFN runs as one more group of the grouped products (every token in
  // order), its output in y's shared slots, where its rows take the warpgroup tiles: the weights
  // exact in the products, no FP16 copies of them (Moonlight prefill of 1K tokens on an H100: 1.028x
  // against cuBLASLt's FP16 products; 8K level). In the few-row tiles (decode batches of up to 32)
  // its 2816 rows made 44 blocks, and batch-32 decode 6% slower; BF16 ones stay with cuBLASLt, 1.016x
  // faster than the grouped products at 1K.
  const cuda::DeviceWeight shared_gate = shared ? cuda::weight(shared->gate_proj) : cuda::DeviceWeight{};
  const cuda::DeviceWeight shared_down = shared ? cuda::weight(shared->down_proj) : cuda::DeviceWeight{};
  paths.group_shared = shared && paths.grouped && shared_gate.dtype == DType::F8_E4M3 &&
                       shared_down.dtype == DType::F8_E4M3 && cuda::grouped_linear_ok(shared_gate, cuda::matrix(x)) &&
                       !cuda::grouped_few_ok(shared_gate, n, 1) && cuda::grouped_gate_up_ok(shared_gate, n, 1) &&
                       cuda::grouped_linear_ok(shared_down, {nullptr, n, shared_width, shared_width});
  // Tensor cores where they read the weights (moe_mma.h), the shared FFN's too; else CUDA cores.
  const cuda::DeviceWeight* fused_gate = paths.fuse_shared ? &shared_gate : nullptr;
  const cuda::DeviceWeight* fused_down = paths.fuse_shared ? &shared_down : nullptr;
  auto on_tensor_cores = [&](const cuda::DeviceWeight& routed, const cuda::DeviceWeight* shared_weight, int64_t cols) {
    return cuda::moe_mma_ok(routed) && (!shared_weight || cuda::moe_mma_ok(*shared_weight)) && cuda::moe_mma_fits(cols);
  };
  paths.gate_up_mma = !paths.grouped && paths.vector_gate && on_tensor_cores(gate_shape, fused_gate, hidden);
  paths.down_mma = !paths.grouped && paths.vector_down &&
                   on_tensor_cores(down_shape, fused_down, std::max(width, paths.fuse_shared ? shared_width : 0));
  return paths;
}

}  // namespace

using cuda::matrix;

Routing CudaBackend::moe_route(const Act& x, const LinearWeight& gate, const Act* e_score_correction_bias,
                               const RouterParams& p) {
  const int64_t n = x.rows, n_experts = gate.out_features();
  const cuda::RouterConfig config = router_config(n_experts, p);
  Buffer logits = scratch(size_t(n * n_experts) * 4);
  Routing routing{scratch(size_t(n * p.top_k) * 4), scratch(size_t(n * p.top_k) * 4), n, p.top_k, {}};
  const float* bias = bias_data(e_score_correction_bias);
  auto* ids = static_cast<int32_t*>(routing.expert_ids.data());
  auto* weights = static_cast<float*>(routing.expert_weights.data());
  auto* logits_data = static_cast<float*>(logits.data());
  if (cuda::moe_gate_route_plan_ok(n, int(n_experts), int(p.top_k))) {
    // A lone token: the plan moe_experts needs is made in the gate's launch.
    routing.plan = scratch(cuda::moe_plan_bytes(n, int(p.top_k), int(n_experts)));
    cuda::launch_moe_gate_route_plan(cuda::weight(gate), matrix(x), logits_data, bias, config, ids, weights,
                                     cuda::moe_plan_view(routing.plan.data(), n, int(p.top_k), int(n_experts)),
                                     blocks_done(), stream_);
    DSV3_CUDA_CHECK_LAUNCH();
    return routing;
  }
  if (n > kStreamedRouterRows) {
    gemm_->f32(static_cast<const float*>(x.data), x.stride, float_weight(gate), n, n_experts, x.cols, logits_data,
               n_experts);
  } else {
    cuda::launch_linear_small(cuda::weight(gate), matrix(x), {logits_data, n, n_experts, n_experts}, stream_);
    DSV3_CUDA_CHECK_LAUNCH();
  }
  if (cuda::moe_route_plan_fits(n, int(n_experts), int(p.top_k))) {
    // Decode-sized: the plan moe_experts needs is made in the same launch.
    routing.plan = scratch(cuda::moe_plan_bytes(n, int(p.top_k), int(n_experts)));
    cuda::launch_moe_route_plan(logits_data, n, int(n_experts), bias, config, ids, weights,
                                cuda::moe_plan_view(routing.plan.data(), n, int(p.top_k), int(n_experts)), stream_);
  } else {
    cuda::launch_moe_route(logits_data, n, int(n_experts), bias, config, ids, weights, stream_);
  }
  DSV3_CUDA_CHECK_LAUNCH();
  return routing;
}

const cuda::DeviceWeight* CudaBackend::expert_table(std::span<const ExpertWeights> experts, const ExpertWeights* shared) {
  // Keyed by device memory that place() made: it is never freed, so never reused, while we live.
  const std::pair<const void*, const void*> key{experts[0].gate_proj.weight.data,
                                                shared ? shared->gate_proj.weight.data : nullptr};
  auto it = expert_tables_.find(key);
  if (it == expert_tables_.end()) {
    std::vector<cuda::DeviceWeight> table;
    auto append = [&](const ExpertWeights& e) {
      for (const LinearWeight* w : {&e.gate_proj, &e.up_proj, &e.down_proj}) table.push_back(cuda::weight(*w));
    };
    for (const ExpertWeights& e : experts) append(e);
    if (shared) append(*shared);
    it = expert_tables_.emplace(key, to_device(std::span<const cuda::DeviceWeight>(table))).first;
  }
  return static_cast<const cuda::DeviceWeight*>(it->second.data());
}

// hidden = silu(gate x) * (up x), then y = down hidden, for the groups' rows (x_rows: the row of x
// each reads; null: in order), on grouped tensor-core products; ffn.index is the gate's place in
// the table, up and down follow it.
static void grouped_ffn(const cuda::GroupedWeights& ffn, const cuda::DeviceWeight& gate_shape,
                        const cuda::DeviceWeight& down_shape, const int32_t* offsets, int n_groups,
                        cuda::DeviceMatrix x, const int32_t* x_rows, cuda::DeviceMatrix hidden, cuda::DeviceMatrix y,
                        void* parts, void* up_memory, cudaStream_t stream) {
  auto at = [&](int i) { return cuda::GroupedWeights{ffn.table, ffn.stride, ffn.index + i, {}}; };
  if (cuda::grouped_gate_up_ok(gate_shape, hidden.rows, n_groups)) {
    cuda::launch_grouped_gate_up(at(0), gate_shape, offsets, n_groups, x, x_rows, hidden, parts, stream);
  } else {
    const cuda::DeviceMatrix up{static_cast<float*>(up_memory), hidden.rows, hidden.cols, hidden.stride};
    cuda::launch_grouped_linear(at(0), gate_shape, offsets, n_groups, x, x_rows, hidden, parts, stream);
    cuda::launch_grouped_linear(at(1), gate_shape, offsets, n_groups, x, x_rows, up, parts, stream);
    cuda::launch_silu_mul(hidden, up, hidden, stream);
  }
  cuda::launch_grouped_linear(at(2), down_shape, offsets, n_groups, hidden, nullptr, y, parts, stream);
  DSV3_CUDA_CHECK_LAUNCH();
}

void CudaBackend::shared_ffn_add(const Act& x, const ExpertWeights& shared, const Act& out) {
  const int64_t width = shared.gate_proj.out_features();
  ActBuffer gate = alloc(x.rows, width), up = alloc(x.rows, width), y = alloc(x.rows, x.cols);
  linear(x, shared.gate_proj, gate.view);
  linear(x, shared.up_proj, up.view);
  silu_mul(gate.view, up.view, gate.view);
  linear(gate.view, shared.down_proj, y.view);
  add(out, y.view);
}

bool CudaBackend::routes_in_experts(const Act& x, const MoeSublayerWeights& moe, const RouterParams& p) {
  const int64_t n_experts = moe.gate.out_features();
  const ExpertPaths paths = expert_paths(x, p.top_k, moe.experts, moe.shared);
  return x.rows == 1 && paths.gate_up_mma && paths.down_mma && (!moe.shared || paths.fuse_shared) &&
         p.top_k <= n_experts && cuda::last_block_norm_fits(1);
}

void CudaBackend::moe_add_rmsnorm(const Act& x, const MoeSublayerWeights& moe, const RouterParams& p, const Act& out,
                                  const ResidualNorm& then) {
  if (!routes_in_experts(x, moe, p)) return Backend::moe_add_rmsnorm(x, moe, p, out, then);
  const int64_t n_experts = moe.gate.out_features();
  const cuda::RouterConfig config = router_config(n_experts, p);
  Buffer logits = scratch(size_t(n_experts) * 4);
  Routing routing{scratch(size_t(p.top_k) * 4), scratch(size_t(p.top_k) * 4), 1, p.top_k,
                  scratch(cuda::moe_plan_bytes(1, int(p.top_k), int(n_experts)))};
  auto* logits_data = static_cast<float*>(logits.data());
  cuda::launch_linear_small(cuda::weight(moe.gate), matrix(x), {logits_data, 1, n_experts, n_experts}, stream_);
  DSV3_CUDA_CHECK_LAUNCH();
  const cuda::LoneRouting lone{logits_data, bias_data(moe.e_score_correction_bias), int(n_experts), config,
                               static_cast<float*>(routing.expert_weights.data()),
                               cuda::moe_plan_view(routing.plan.data(), 1, int(p.top_k), int(n_experts)).pair_slot};
  run_experts(x, routing, moe.experts, moe.shared, out, &then, &lone);
}

void CudaBackend::moe_experts(const Act& x, const Routing& routing, std::span<const ExpertWeights> experts,
                              const ExpertWeights* shared, const Act& out) {
  run_experts(x, routing, experts, shared, out, nullptr);
}

void CudaBackend::moe_experts_add_rmsnorm(const Act& x, const Routing& routing, std::span<const ExpertWeights> experts,
                                          const ExpertWeights* shared, const Act& out, const ResidualNorm& then) {
  run_experts(x, routing, experts, shared, out, &then);
}

void CudaBackend::run_experts(const Act& x, const Routing& routing, std::span<const ExpertWeights> experts,
                              const ExpertWeights* shared, const Act& out, const ResidualNorm* then,
                              const cuda::LoneRouting* lone) {
  const int64_t n = routing.n_tokens, top_k = routing.top_k, n_pairs = n * top_k;
  const int n_experts = int(experts.size());
  const int64_t hidden = x.cols, width = experts[0].gate_proj.out_features();
  const cuda::DeviceWeight gate_shape = cuda::weight(experts[0].gate_proj), down_shape = cuda::weight(experts[0].down_proj);
  const ExpertPaths paths = expert_paths(x, top_k, experts, shared);
  const bool grouped = paths.grouped, fuse_shared = paths.fuse_shared, group_shared = paths.group_shared;
  const bool shared_in_y = paths.shared_in_y();
  const int64_t hidden_stride = paths.hidden_stride, shared_width = shared ? shared->gate_proj.out_features() : 0;
  DSV3_ASSERT(!lone || (n == 1 && paths.gate_up_mma && paths.down_mma && (!shared || fuse_shared)));
  const int n_ffns = n_experts + 1;  // the plan's last entry is the shared FFN's (kernels.h, MoePlan)
  const int64_t n_slots = n_pairs + n;

  // The plan the router made along with its choice, else one made here.
  Buffer plan_memory;
  if (!routing.plan.data()) {
    plan_memory = scratch(cuda::moe_plan_bytes(n, int(top_k), n_experts));
    cuda::launch_moe_plan(static_cast<const int32_t*>(routing.expert_ids.data()), n_pairs, int(top_k), n_experts,
                          cuda::moe_plan_view(plan_memory.data(), n, int(top_k), n_experts), stream_);
    DSV3_CUDA_CHECK_LAUNCH();
  }
  const cuda::MoePlan plan =
      cuda::moe_plan_view(routing.plan.data() ? routing.plan.data() : plan_memory.data(), n, int(top_k), n_experts);

  Buffer y = scratch(size_t(n_slots * hidden) * 4);
  const cuda::DeviceWeight* table = expert_table(experts, shared_in_y ? shared : nullptr);
  Buffer h = scratch(size_t(n_slots * hidden_stride) * 4);
  const cuda::DeviceMatrix hidden_rows{static_cast<float*>(h.data()), n_pairs, width, hidden_stride};
  const cuda::DeviceMatrix y_rows{static_cast<float*>(y.data()), n_pairs, hidden, hidden};
  if (grouped) {
    const cuda::DeviceWeight shared_gate = shared ? cuda::weight(shared->gate_proj) : cuda::DeviceWeight{};
    const cuda::DeviceWeight shared_down = shared ? cuda::weight(shared->down_proj) : cuda::DeviceWeight{};
    const int64_t shared_rows = group_shared ? n : 0;
    Buffer shared_hidden = scratch(size_t(shared_rows * shared_width) * 4);
    const cuda::DeviceMatrix shared_hidden_rows{static_cast<float*>(shared_hidden.data()), shared_rows, shared_width,
                                                shared_width};
    size_t parts_bytes = std::max(cuda::grouped_linear_scratch_bytes(gate_shape, matrix(x), n_pairs, n_experts),
                                  cuda::grouped_linear_scratch_bytes(down_shape, hidden_rows, n_pairs, n_experts));
    if (group_shared)
      parts_bytes = std::max({parts_bytes, cuda::grouped_linear_scratch_bytes(shared_gate, matrix(x), n, 1),
                              cuda::grouped_linear_scratch_bytes(shared_down, shared_hidden_rows, n, 1)});
    Buffer parts = scratch(parts_bytes);
    // The routed up products' rows, where gate and up take two launches (the grouped shared FFN never
    // does: group_shared asks for its gate_up launch).
    const int64_t up_rows = cuda::grouped_gate_up_ok(gate_shape, n_pairs, n_experts) ? 0 : n_pairs;
    Buffer up = scratch(size_t(up_rows * hidden_stride) * 4);
    grouped_ffn({table, 3, 0, {}}, gate_shape, down_shape, plan.offsets, n_experts, matrix(x), plan.slot_token,
                hidden_rows, y_rows, parts.data(), up.data(), stream_);
    if (group_shared)
      grouped_ffn({table + 3 * n_experts, 3, 0, {}}, shared_gate, shared_down, nullptr, 1, matrix(x), nullptr,
                  shared_hidden_rows, {static_cast<float*>(y.data()) + n_pairs * hidden, n, hidden, hidden},
                  parts.data(), up.data(), stream_);
  } else {
    const cuda::MoeFfns ffns{table,      n_ffns,     fuse_shared, gate_shape,
                             down_shape, std::max(width, fuse_shared ? shared_width : 0)};
    const int max_active = int(std::min<int64_t>(n_experts, n_pairs));
    if (paths.gate_up_mma)
      cuda::launch_moe_gate_up_mma(ffns, max_active, n, plan, matrix(x), hidden_rows.data, hidden_stride, lone, stream_);
    else
      cuda::launch_moe_gate_up(ffns, max_active, plan, matrix(x), paths.vector_gate, hidden_rows.data, hidden_stride,
                               stream_);
    DSV3_CUDA_CHECK_LAUNCH();
    if (paths.down_mma)
      cuda::launch_moe_down_mma(ffns, max_active, n, plan, hidden_rows.data, hidden_stride, y_rows.data, lone, stream_);
    else
      cuda::launch_moe_down(ffns, max_active, plan, hidden_rows.data, hidden_stride, paths.vector_down, y_rows.data,
                            stream_);
    DSV3_CUDA_CHECK_LAUNCH();
  }
  const auto* y_data = static_cast<const float*>(y.data());
  const auto* weights = static_cast<const float*>(routing.expert_weights.data());
  const int64_t shared_first_slot = shared_in_y ? n_pairs : -1;
  if (then && (shared_in_y || !shared) && cuda::last_block_norm_fits(n)) {
    cuda::launch_moe_combine_add_rmsnorm(y_data, weights, plan, int(top_k), shared_first_slot, matrix(out),
                                         cuda::residual_norm(*then), blocks_done(), stream_);
    DSV3_CUDA_CHECK_LAUNCH();
    return;
  }
  cuda::launch_moe_combine(y_data, weights, plan, int(top_k), shared_first_slot, matrix(out), stream_);
  DSV3_CUDA_CHECK_LAUNCH();
  if (shared && !shared_in_y) shared_ffn_add(x, *shared, out);
  if (then) add_rmsnorm(then->residual, out, then->weight, then->eps, then->normed);
}

}  // namespace dsv3
