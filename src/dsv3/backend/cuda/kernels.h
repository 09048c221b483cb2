// Host-side launchers of the CUDA kernels (the .cu files of this folder). They take raw device
// pointers and a stream, check nothing about ownership, and queue work without synchronising.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "dsv3/util/dtype.h"

namespace dsv3::cuda {

// A float32 matrix in device memory: `rows` rows of `cols`, rows `stride` floats apart.
struct DeviceMatrix {
  float* data = nullptr;
  int64_t rows = 0, cols = 0, stride = 0;
};

// What follows a sublayer (Backend's ResidualNorm): residual += its output, normed = rmsnorm(residual).
struct DeviceResidualNorm {
  DeviceMatrix residual;
  const float* weight = nullptr;
  float eps = 0.0f;
  DeviceMatrix normed;
};

// Rows of a sublayer's output up to which the last block of the launch that made them does `then`
// (last_block.cuh; launch_linear_small_add_rmsnorm, launch_moe_combine_add_rmsnorm): one block's
// norms, row after row, in place of a launch of a block a row. One: with up to 4, batches of 2 and 4
// decoded 1% and 6% slower (Moonlight FP8 on an H200).
constexpr int64_t kLastBlockNormRows = 1;
inline bool last_block_norm_fits(int64_t rows) { return rows >= 1 && rows <= kLastBlockNormRows; }

// A weight [rows, cols] in its stored dtype; for FP8 the float32 block scales
// scale_inv [ceil(rows / block_out), ceil(cols / block_in)].
struct DeviceWeight {
  const void* data = nullptr;
  DType dtype = DType::BF16;
  int64_t rows = 0, cols = 0;
  const float* scale_inv = nullptr;
  int64_t block_out = 128, block_in = 128;
};

// The latent cache's values: BF16, the dtype the reference model caches c_kv and k_pe in. Half the
// bytes of float32 for decode attention to read, and twice the tokens in the same memory.
using CacheValue = __nv_bfloat16;

// One layer of the paged latent cache: pages of page_size rows of row_width CacheValues.
struct DeviceCacheLayer {
  CacheValue* data = nullptr;
  int64_t page_size = 0, row_width = 0;
};

// Elementwise and row ops (elementwise.cu).
// out[i] = table[ids[i]]; an id of -1 - j is the token fed[j] (a float column: Backend::embed).
void launch_embed(const DeviceWeight& table, const int32_t* ids, DeviceMatrix fed, DeviceMatrix out, cudaStream_t stream);
void launch_gather_rows(DeviceMatrix x, const int32_t* rows, DeviceMatrix out, cudaStream_t stream);
// out[r] = float(the token row r of x picks) (pick_tokens.cu; draws and cut_rows as
// Backend::pick_tokens takes them), through scratch of pick_tokens_scratch_bytes().
size_t pick_tokens_scratch_bytes(int64_t rows, int64_t cols);
void launch_pick_tokens(DeviceMatrix x, const int32_t* draws, bool cut_rows, void* scratch, DeviceMatrix out,
                        cudaStream_t stream);
void launch_rmsnorm(DeviceMatrix x, const float* weight, float eps, DeviceMatrix out, cudaStream_t stream);
void launch_add_rmsnorm(DeviceMatrix x, DeviceMatrix y, const float* weight, float eps, DeviceMatrix out,
                        cudaStream_t stream);
void launch_add(DeviceMatrix x, DeviceMatrix y, cudaStream_t stream);
void launch_silu_mul(DeviceMatrix gate, DeviceMatrix up, DeviceMatrix out, cudaStream_t stream);
void launch_rope(DeviceMatrix x, int64_t head_dim, int64_t offset, const float* inv_freq, int64_t n_pairs,
                 float attention_factor, const int32_t* positions, cudaStream_t stream);
// Row r of `rows` to cache slot slots[r] (page * page_size + offset).
void launch_cache_write(DeviceCacheLayer cache, const int32_t* slots, DeviceMatrix rows, cudaStream_t stream);
// Cache positions 0..out.rows-1 of a sequence into out [n, row_width].
void launch_cache_gather(DeviceCacheLayer cache, const int32_t* block_table, DeviceMatrix out, cudaStream_t stream);

// Reads n_bytes at `data` with 16-byte loads over the whole GPU; one float per block to sink.
void launch_read_probe(const void* data, size_t n_bytes, float* sink, cudaStream_t stream);

// Linear layers (linear.cu).
// Whether the 16-byte weight-streaming path may read W, and input rows starting at x `stride` floats
// apart (16-byte alignment, columns in whole vectors).
bool vector_rows_ok(const DeviceWeight& w, const void* x, int64_t stride);
// y = x W^T for a few rows of x, streaming W once per 16 rows: the decode path.
void launch_linear_small(const DeviceWeight& w, DeviceMatrix x, DeviceMatrix y, cudaStream_t stream);
// launch_linear_small, then `then` with y as the sublayer's output, in the same launch, for x of
// rows last_block_norm_fits. blocks_done: a device counter at zero (last_block.cuh), left at zero.
void launch_linear_small_add_rmsnorm(const DeviceWeight& w, DeviceMatrix x, DeviceMatrix y,
                                     const DeviceResidualNorm& then, unsigned* blocks_done, cudaStream_t stream);
// y_a = x W_a^T and y_b = x W_b^T in one launch, where linear_small_pair_ok (the same dtype, input
// width and read path).
bool linear_small_pair_ok(const DeviceWeight& w_a, const DeviceWeight& w_b, DeviceMatrix x);
void launch_linear_small_pair(const DeviceWeight& w_a, DeviceMatrix y_a, const DeviceWeight& w_b, DeviceMatrix y_b,
                              DeviceMatrix x, cudaStream_t stream);
// x as two BF16 matrices [rows, cols] contiguous: high = bf16(x), low = bf16(x - high); high + low
// carries 16 bits of x's mantissa, so two BF16 products give float32-input accuracy.
void launch_to_bf16_pair(DeviceMatrix x, uint16_t* high, uint16_t* low, cudaStream_t stream);
// x in FP16 for a product on FP16 tensor cores: out [rows, cols] contiguous = fp16(x 2^s), one power
// of two for the whole of x that brings its largest magnitude into [2^14, 2^15) (fp16_parts.cuh's
// scale_exponent), and scale->unscale = 2^-s, scale->zero = 0; scale is device memory the launch
// writes whole (a block's largest magnitude a slot: no zeroing first, no atomics across blocks).
constexpr int kMaxHalfScaleBlocks = 1024;
struct HalfScale {
  unsigned block_max_bits[kMaxHalfScaleBlocks];
  float unscale, zero;  // the product's alpha and beta (CUBLASLT_POINTER_MODE_DEVICE)
};
void launch_to_f16_scaled(DeviceMatrix x, uint16_t* out, HalfScale* scale, cudaStream_t stream);
// out [w.rows, w.cols] contiguous = fp16 of the real weight (FP8 block scales applied).
void launch_weight_to_f16(const DeviceWeight& w, uint16_t* out, cudaStream_t stream);
// out [w.rows, w.cols] contiguous = the real weight in float32.
void launch_weight_to_f32(const DeviceWeight& w, float* out, cudaStream_t stream);
// DeepSeek's activation quantisation: per row and 128-column group, scale = max|x| / 448 and
// codes = e4m3(x / scale). codes [rows, cols] contiguous; scales[group * scale_stride + row].
void launch_quantize_fp8(DeviceMatrix x, uint8_t* codes, float* scales, int64_t scale_stride, cudaStream_t stream);

// Grouped products on tensor cores (grouped_gemm.cu): the rows of y in groups, group g's rows
// [offsets[g], offsets[g + 1]) (one group of y.rows rows when offsets is null), row r of y =
// W_g x[x_rows ? x_rows[r] : r]. Group g's weight is table[g * stride + index], a device array, or
// `one` when table is null. Products of float32 accuracy in x against the weight as stored, but in
// grouped_wgmma.cu's tiles of FP8 weights, where x is rounded to FP16 at a power of two a row (2^-12
// an element on average), and in grouped_gemm.cu's own tiles, where FP8 weights are rounded to BF16
// once scaled (2^-9).
struct GroupedWeights {
  const DeviceWeight* table = nullptr;
  int stride = 0, index = 0;
  DeviceWeight one;
};
// Whether weights shaped as `shape` (all groups alike) and rows of x can take the grouped product:
// BF16 or FP8 weights, K a multiple of 64, 16-byte aligned rows.
bool grouped_linear_ok(const DeviceWeight& shape, DeviceMatrix x);
// The scratch launch_grouped_linear takes for x, when y has `rows` rows in n_groups groups: x's rows
// in 16-bit parts for the warpgroup kernel (grouped_wgmma.cu), none for the others.
size_t grouped_linear_scratch_bytes(const DeviceWeight& shape, DeviceMatrix x, int64_t rows, int n_groups);
// The grid is sized from y.rows and n_groups, without reading the offsets.
void launch_grouped_linear(const GroupedWeights& weights, const DeviceWeight& shape, const int32_t* offsets,
                           int n_groups, DeviceMatrix x, const int32_t* x_rows, DeviceMatrix y, void* scratch,
                           cudaStream_t stream);
// An FFN's first half in one launch, where grouped_gate_up_ok (hidden's `rows` rows take the
// few-row tiles or the warpgroup kernel): hidden = silu(gate x) * (up x), row by row as
// launch_grouped_linear, with group g's gate at table[g * stride + index] and its up weight next to
// it; scratch as grouped_linear_scratch_bytes.
bool grouped_gate_up_ok(const DeviceWeight& shape, int64_t rows, int n_groups);
void launch_grouped_gate_up(const GroupedWeights& weights, const DeviceWeight& shape, const int32_t* offsets,
                            int n_groups, DeviceMatrix x, const int32_t* x_rows, DeviceMatrix hidden, void* scratch,
                            cudaStream_t stream);

}  // namespace dsv3::cuda

namespace dsv3::cuda {

// MLA (mla_decode.cu, mla_prefill.cu). Shapes as MlaShape names them.
struct MlaDims {
  int n_heads = 0, nope = 0, rope = 0, v_dim = 0, d_c = 0;
  float softmax_scale = 0.0f;
  __host__ __device__ int qk() const { return nope + rope; }
  __host__ __device__ int kv_width() const { return nope + v_dim; }  // per head in kv_b_proj: k_nope rows, then v rows
};

// One decode item as the kernels read it: its query row, tokens attended to, and where its block
// table starts in the flat table array.
struct MlaItem {
  int32_t q_row = 0, context_len = 0, table_offset = 0;
};

// The widest latent, rope and nope parts the decode kernels take (every DeepSeek V2/V3 model has 512,
// 64 and 128): two tiles of rows this wide and the queries fill the shared memory of an SM, and the
// absorb holds a column of W_uk in registers.
constexpr int kMaxDecodeLatent = 512, kMaxDecodeRope = 128, kMaxDecodeNope = 128;

// Backend::mla_rope_and_cache over q [n, n_heads * qk] and kv [n, d_c + rope] (elementwise.cu):
// inv_freq holds rope / 2 <= kMaxRopePairs frequencies (a thread of the block works out each pair's
// rotation once for all heads).
constexpr int kMaxRopePairs = 256;
void launch_mla_rope_and_cache(MlaDims dims, DeviceMatrix q, DeviceMatrix kv, const float* kv_norm, float eps,
                               const float* inv_freq, float attention_factor, const int32_t* positions,
                               DeviceCacheLayer cache, const int32_t* slots, cudaStream_t stream);

// kv_b_proj [n_heads * (nope + v_dim)][d_c] as the absorb and unabsorb read it: as stored where
// decode_kv_b_as_stored, that is BF16, or FP8 in 128 x 128 blocks with kv_width and d_c multiples of
// 128 (a thread's rows of one part of a head then share a block scale); else a float32 copy
// (CudaBackend::decode_kv_b). Each kernel is compiled for one dtype: a stored dtype's element reads
// inlined 32 times over, each a switch on the dtype, made the absorb a run of instruction-cache
// misses.
bool decode_kv_b_as_stored(const DeviceWeight& kv_b_proj, MlaDims dims);

// q_latent [n_items, n_heads, d_c] = W_uk^T q_nope per item and head (the absorbed query).
void launch_mla_absorb(MlaDims dims, DeviceMatrix q, const MlaItem* items, int n_items, const DeviceWeight& kv_b_proj,
                       float* q_latent, cudaStream_t stream);
// How a decode step's attention runs: on tensor cores (16 heads a block, mla_decode_mma.cu) where
// the widths suit them and the contexts, at most context_bound tokens in all, give enough blocks of
// a tile to fill the SMs, else on CUDA cores (8 heads a block, more blocks for short contexts); and
// the parts each item's context is split into: enough blocks for the SMs, at least a tile of rows a
// part.
struct MlaDecodePlan {
  bool tensor_cores = false;
  int n_splits = 1;
  int tile_rows = 1;  // the chosen kernel's rows a step, which splits take whole (split_rows)
};
// The rows [begin, end) of an item that split `split` of n_splits attends to: whole tiles of
// tile_rows a split, as many each, so that no split ends on a tile of few rows.
__host__ __device__ inline void split_rows(int context_len, int split, int n_splits, int tile_rows, int& begin,
                                           int& end) {
  const int chunk = ((context_len + n_splits - 1) / n_splits + tile_rows - 1) / tile_rows * tile_rows;
  begin = split * chunk < context_len ? split * chunk : context_len;
  end = begin + chunk < context_len ? begin + chunk : context_len;
}
MlaDecodePlan plan_mla_decode(MlaDims dims, int n_items, int64_t context_bound, int sm_count);
// Attention of the absorbed queries over the latent cache as `plan` says; then the parts are merged
// into o_latent [n_items, n_heads, d_c]. `partial` holds n_items * n_splits * n_heads * (d_c + 2)
// floats; with one split there are no parts (the attention writes o_latent) and it may be null.
void launch_mla_decode_attention(MlaDims dims, DeviceMatrix q, const float* q_latent, const MlaItem* items,
                                 int n_items, const int32_t* tables, DeviceCacheLayer cache, MlaDecodePlan plan,
                                 float* partial, float* o_latent, cudaStream_t stream);
// out[q_row][h * v_dim + r] = W_uv[h][r] . o_latent[item][h].
void launch_mla_unabsorb(MlaDims dims, const float* o_latent, const MlaItem* items, int n_items,
                         const DeviceWeight& kv_b_proj, DeviceMatrix out, cudaStream_t stream);

// MLA prefill attention in one pass over the keys (mla_prefill_flash.cu; DeepSeek's own head widths on
// warpgroup tensor cores, mla_prefill_wgmma.cu), where mla_prefill_flash_ok:
// q [n, H * qk] at positions start.., the context's kv [start + n, H * kv_width] (after kv_b_proj)
// and latent rows (k_pe at column d_c), out [n, H * v_dim]; through scratch of
// mla_prefill_flash_scratch_bytes (k and v in FP16).
constexpr int kMaxPrefillQk = 192, kMaxPrefillV = 128;
bool mla_prefill_flash_ok(MlaDims dims);
size_t mla_prefill_flash_scratch_bytes(MlaDims dims, int64_t context);
void launch_mla_prefill_flash(MlaDims dims, DeviceMatrix q, DeviceMatrix kv, DeviceMatrix latent, int64_t start,
                              void* scratch, DeviceMatrix out, cudaStream_t stream);
// The cuBLAS path's operands, head-major within a row: q [n, H, qk], k [ctx, H, qk] (k_nope from kv, the
// shared k_pe from the latent rows), v [ctx, H, v_dim].
void launch_mla_pack_q(MlaDims dims, DeviceMatrix q, float* q_packed, cudaStream_t stream);
void launch_mla_pack_kv(MlaDims dims, DeviceMatrix kv, DeviceMatrix latent, float* k, float* v, cudaStream_t stream);
// Row i of each head's scores [n_heads, rows, keys] sees keys 0..first_visible + i: softmax of the
// scaled scores there, zero beyond, as probabilities of the same shape.
void launch_mla_causal_softmax(const float* scores, int n_heads, int64_t rows, int64_t keys, int64_t first_visible,
                               float scale, float* probs, cudaStream_t stream);

}  // namespace dsv3::cuda

namespace dsv3::cuda {

// DeepSeekMoE (moe.cu).
// The most experts a layer's router chooses among on the GPU: the router's counting sort keeps a
// count an expert in shared memory, and so does a lone token's routing in the expert launches
// (moe_mma.cu). Every DeepSeek V2/V3 model has 64 to 256.
constexpr int kMaxRoutedExperts = 1024;
struct RouterConfig {
  bool sigmoid = true;       // else softmax
  int group_rule = 0;        // 0: no groups, 1: V3 (sum of a group's top 2), 2: V2 (a group's best)
  int n_group = 1, topk_group = 1, top_k = 1;
  bool normalise = true;
  float routed_scaling_factor = 1.0f;
};
// ids, weights [n, top_k] from router logits [n, n_experts] (and the correction bias, or null),
// choosing exactly as the CPU router does.
void launch_moe_route(const float* logits, int64_t n, int n_experts, const float* bias, RouterConfig config,
                      int32_t* ids, float* weights, cudaStream_t stream);

// The pairs (token, k) sorted by expert, over n_ffns = n_experts + 1 FFNs: the routed ones and,
// last, the shared FFN's entry, which takes every token (its slots after the pairs'; the kernels
// serve it only where the layer's shared experts join them). counts[f], offsets[f] (n_ffns + 1 of
// them), for each slot (a position in that order) its token, for each pair its slot, and the FFNs
// with tokens in active[0..n_active) (n_active stored at active[n_ffns]).
struct MoePlan {
  int32_t* counts = nullptr;
  int32_t* offsets = nullptr;
  int32_t* slot_token = nullptr;
  int32_t* pair_slot = nullptr;
  int32_t* active = nullptr;
};
size_t moe_plan_bytes(int64_t n_tokens, int top_k, int n_experts);
MoePlan moe_plan_view(void* memory, int64_t n_tokens, int top_k, int n_experts);
void launch_moe_plan(const int32_t* ids, int64_t n_pairs, int top_k, int n_experts, MoePlan plan, cudaStream_t stream);
// The router and the plan in one launch, for batches where moe_route_plan_fits (decode-sized).
bool moe_route_plan_fits(int64_t n, int n_experts, int top_k);
void launch_moe_route_plan(const float* logits, int64_t n, int n_experts, const float* bias, RouterConfig config,
                           int32_t* ids, float* weights, MoePlan plan, cudaStream_t stream);
// The router's gate (logits [x.rows, gate.rows] = x gate^T, through linear_small), then the router
// and the plan in the same launch, for the batches moe_gate_route_plan_ok takes (a lone token).
// blocks_done: as for launch_linear_small_add_rmsnorm.
bool moe_gate_route_plan_ok(int64_t n, int n_experts, int top_k);
void launch_moe_gate_route_plan(const DeviceWeight& gate, DeviceMatrix x, float* logits, const float* bias,
                                RouterConfig config, int32_t* ids, float* weights, MoePlan plan, unsigned* blocks_done,
                                cudaStream_t stream);
// The FFNs of a MoE layer as the streaming kernels read them: n_ffns is the plan's (n_experts + 1),
// and `table` a device array of 3 weights (gate, up, down) for each routed expert, then for the shared
// FFN where `shared`. Routed ones are shaped alike
// (gate_shape, down_shape); the shared one may be wider (max_width rows of gate and up), of the same
// dtype and hidden size.
struct MoeFfns {
  const DeviceWeight* table = nullptr;
  int n_ffns = 0;
  bool shared = false;
  DeviceWeight gate_shape, down_shape;
  int64_t max_width = 0;
};
// For every active FFN and each of its slots: hidden[slot] = silu(gate . x[token]) * (up . x[token]),
// rows hidden_stride floats apart. max_active bounds the routed experts with tokens.
void launch_moe_gate_up(const MoeFfns& ffns, int max_active, MoePlan plan, DeviceMatrix x, bool vector, float* hidden,
                        int64_t hidden_stride, cudaStream_t stream);
// y[slot] = down . hidden[slot]; y [n_slots, hidden_size].
void launch_moe_down(const MoeFfns& ffns, int max_active, MoePlan plan, const float* hidden, int64_t hidden_stride,
                     bool vector, float* y, cudaStream_t stream);
// out[t] = sum_k weights[t][k] * y[pair_slot[t * top_k + k]] (+ y[shared_first_slot + t] unless it
// is negative).
void launch_moe_combine(const float* y, const float* weights, MoePlan plan, int top_k, int64_t shared_first_slot,
                        DeviceMatrix out, cudaStream_t stream);
// launch_moe_combine, then `then` with out as the FFN's output, in the same launch, for tokens that
// last_block_norm_fits. blocks_done: as for launch_linear_small_add_rmsnorm.
void launch_moe_combine_add_rmsnorm(const float* y, const float* weights, MoePlan plan, int top_k,
                                    int64_t shared_first_slot, DeviceMatrix out, const DeviceResidualNorm& then,
                                    unsigned* blocks_done, cudaStream_t stream);

}  // namespace dsv3::cuda
