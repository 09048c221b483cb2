#include "dsv3/model/config.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <string_view>
#include <utility>

#include "dsv3/util/error.h"

namespace dsv3 {
namespace {

using nlohmann::json;

// What transformers' DeepseekV3Config / DeepseekV2Config assume for a field config.json leaves out.
struct FamilyDefaults {
  int64_t vocab_size, hidden_size, intermediate_size, moe_intermediate_size, num_hidden_layers;
  int64_t num_attention_heads, q_lora_rank, n_routed_experts, n_shared_experts, num_experts_per_tok;
  int64_t first_k_dense_replace, n_group, topk_group, max_position_embeddings, bos_token_id, eos_token_id;
  bool norm_topk_prob;
  double routed_scaling_factor;
  ScoringFunc scoring_func;
  TopkMethod topk_method;
};

constexpr int64_t kUnset = -1;  // a default of None in transformers: the field must then be given

constexpr FamilyDefaults kV3Defaults{129280, 7168, 18432, 2048, 61, 128, 1536, 256, 1, 8, 3, 8, 4, 4096, 0, 1,
                                     true, 2.5, ScoringFunc::Sigmoid, TopkMethod::NoauxTc};
// V2 leaves n_group and topk_group as None (no grouping) and num_experts_per_tok as None.
constexpr FamilyDefaults kV2Defaults{32000, 4096, 11008, 1407, 32, 32, 1536, 64, 2, kUnset, 0, 1, 1, 2048, 1, 2,
                                     false, 1.0, ScoringFunc::Softmax, TopkMethod::Greedy};

// Reads the fields of one JSON object; every error names the file and the field's path in it.
class FieldReader {
 public:
  FieldReader(const json& object, std::string origin, std::string prefix = "")
      : object_(object), origin_(std::move(origin)), prefix_(std::move(prefix)) {}

  template <typename... Args>
  [[noreturn]] void fail_field(const std::string& field, const Args&... args) const {
    fail(origin_, ": ", prefix_, field, ": ", args...);
  }

  bool has(const std::string& field) const { return object_.contains(field); }
  bool only_has(std::initializer_list<std::string_view> fields) const {
    for (const auto& [key, value] : object_.items())
      if (std::find(fields.begin(), fields.end(), key) == fields.end()) return false;
    return true;
  }
  bool is_null(const std::string& field) const { return has(field) && object_.at(field).is_null(); }
  const json& at(const std::string& field) const { return object_.at(field); }

  // An object-valued field as a reader of its own.
  FieldReader child(const std::string& field) const {
    if (!at(field).is_object()) fail_field(field, "expected an object, got ", at(field).dump());
    return FieldReader(at(field), origin_, prefix_ + field + ".");
  }

  // Absent reads as `fallback`; a fallback of kUnset makes the field required.
  int64_t integer(const std::string& field, int64_t fallback) const {
    if (!has(field) || (fallback == kUnset && at(field).is_null())) {
      if (fallback == kUnset) fail_field(field, "must be given");
      return fallback;
    }
    return as_integer(field, at(field));
  }

  // `null` reads as `if_null`: the fields that transformers lets be None.
  int64_t nullable_integer(const std::string& field, int64_t fallback, int64_t if_null) const {
    return is_null(field) ? if_null : integer(field, fallback);
  }

  double number(const std::string& field, double fallback) const {
    if (!has(field)) return fallback;
    if (!at(field).is_number()) fail_field(field, "expected a number, got ", at(field).dump());
    return at(field).get<double>();
  }

  bool boolean(const std::string& field, bool fallback) const {
    if (!has(field)) return fallback;
    if (!at(field).is_boolean()) fail_field(field, "expected true or false, got ", at(field).dump());
    return at(field).get<bool>();
  }

  std::string string(const std::string& field, const std::string& fallback) const {
    if (!has(field)) return fallback;
    if (!at(field).is_string()) fail_field(field, "expected a string, got ", at(field).dump());
    return at(field).get<std::string>();
  }

  // An integer that may also be written as a list of integers (eos_token_id): the first one counts.
  int64_t first_integer(const std::string& field, int64_t fallback) const {
    if (!has(field) || at(field).is_null()) return fallback;
    const json& value = at(field);
    if (!value.is_array()) return as_integer(field, value);
    if (value.empty()) fail_field(field, "is an empty list");
    return as_integer(field, value.front());
  }

 private:
  // Accepts 7 and 7.0 (some writers store whole numbers as floats), not 7.5 or "7".
  int64_t as_integer(const std::string& field, const json& value) const {
    if (value.is_number_integer()) return value.get<int64_t>();
    if (value.is_number_float()) {
      const double d = value.get<double>();
      if (std::trunc(d) == d && std::abs(d) < 9.0e15) return int64_t(d);
    }
    fail_field(field, "expected an integer, got ", value.dump());
  }

  const json& object_;
  std::string origin_;
  std::string prefix_;
};

ModelFamily read_family(const FieldReader& r) {
  if (r.has("architectures") && !r.is_null("architectures")) {
    const json& names = r.at("architectures");
    if (!names.is_array()) r.fail_field("architectures", "expected a list, got ", names.dump());
    for (const json& name : names) {
      if (name == "DeepseekV3ForCausalLM") return ModelFamily::DeepseekV3;
      if (name == "DeepseekV2ForCausalLM") return ModelFamily::DeepseekV2;
    }
    r.fail_field("architectures", "expected DeepseekV3ForCausalLM or DeepseekV2ForCausalLM, got ", names.dump());
  }
  const std::string model_type = r.string("model_type", "");
  if (model_type == "deepseek_v3") return ModelFamily::DeepseekV3;
  if (model_type == "deepseek_v2") return ModelFamily::DeepseekV2;
  if (model_type.empty()) r.fail_field("architectures", "missing, and no model_type either");
  r.fail_field("model_type", "expected deepseek_v3 or deepseek_v2, got '", model_type, "'");
}

ScoringFunc read_scoring_func(const FieldReader& r, ScoringFunc fallback) {
  if (!r.has("scoring_func")) return fallback;
  const std::string s = r.string("scoring_func", "");
  if (s == "sigmoid") return ScoringFunc::Sigmoid;
  if (s == "softmax") return ScoringFunc::Softmax;
  r.fail_field("scoring_func", "expected sigmoid or softmax, got '", s, "'");
}

TopkMethod read_topk_method(const FieldReader& r, TopkMethod fallback) {
  if (!r.has("topk_method") || r.is_null("topk_method")) return fallback;
  const std::string s = r.string("topk_method", "");
  if (s == "noaux_tc") return TopkMethod::NoauxTc;
  if (s == "greedy") return TopkMethod::Greedy;
  if (s == "group_limited_greedy") return TopkMethod::GroupLimitedGreedy;
  r.fail_field("topk_method", "expected noaux_tc, greedy or group_limited_greedy, got '", s, "'");
}

// YaRN parameters, from `rope_scaling` (as DeepSeek publishes it: "type": "yarn") or `rope_parameters`
// (as transformers 5 saves it: "rope_type", with rope_theta inside). Absent keys take transformers'
// meaning: original_max_position_embeddings falls back to max_position_embeddings, and an absent
// mscale or mscale_all_dim reads as 0, which switches the ratio of the two off.
std::optional<YarnScaling> read_rope_scaling(const FieldReader& rope, int64_t max_position_embeddings) {
  const std::string type_field = rope.has("rope_type") ? "rope_type" : "type";
  const std::string type = rope.string(type_field, "");
  // rope_parameters that only carry rope_theta describe plain RoPE, as "default" does.
  if (type == "default" || (type.empty() && rope.only_has({"rope_theta"}))) return std::nullopt;
  if (type.empty()) rope.fail_field("type", "missing (expected yarn)");
  if (type != "yarn") rope.fail_field(type_field, "only yarn rope scaling is supported, got '", type, "'");
  if (!rope.has("factor")) rope.fail_field("factor", "missing (yarn needs it)");
  YarnScaling y;
  y.factor = rope.number("factor", 1.0);
  y.original_max_position_embeddings =
      rope.nullable_integer("original_max_position_embeddings", max_position_embeddings, max_position_embeddings);
  y.beta_fast = rope.number("beta_fast", 32.0);
  y.beta_slow = rope.number("beta_slow", 1.0);
  y.mscale = rope.number("mscale", 0.0);
  y.mscale_all_dim = rope.number("mscale_all_dim", 0.0);
  if (rope.has("attention_factor") && !rope.is_null("attention_factor"))
    y.attention_factor = rope.number("attention_factor", 1.0);
  y.truncate = rope.boolean("truncate", true);

  if (!(y.factor >= 1.0)) rope.fail_field("factor", "must be at least 1, got ", y.factor);
  if (y.original_max_position_embeddings <= 0)
    rope.fail_field("original_max_position_embeddings", "must be positive, got ", y.original_max_position_embeddings);
  if (!(y.beta_fast > 0.0)) rope.fail_field("beta_fast", "must be positive, got ", y.beta_fast);
  if (!(y.beta_slow > 0.0)) rope.fail_field("beta_slow", "must be positive, got ", y.beta_slow);
  if (y.attention_factor && !(*y.attention_factor > 0.0))
    rope.fail_field("attention_factor", "must be positive, got ", *y.attention_factor);
  return y;
}

// DeepSeek's FP8 format: float8_e4m3fn weights with float32 scale_inv per 128x128 block. Keys that
// transformers' FineGrainedFP8Config may omit (fmt, activation_scheme) default to that format.
QuantizationConfig read_quantization_config(const FieldReader& q) {
  QuantizationConfig c;
  c.quant_method = q.string("quant_method", "");
  if (c.quant_method != "fp8") q.fail_field("quant_method", "only fp8 is supported, got '", c.quant_method, "'");
  c.fmt = q.string("fmt", "e4m3");
  if (c.fmt != "e4m3") q.fail_field("fmt", "only e4m3 is supported, got '", c.fmt, "'");
  c.activation_scheme = q.string("activation_scheme", "dynamic");
  if (c.activation_scheme != "dynamic")
    q.fail_field("activation_scheme", "only dynamic is supported, got '", c.activation_scheme, "'");
  if (q.has("weight_block_size")) {
    const json& block = q.at("weight_block_size");
    if (block != json::array({128, 128}))
      q.fail_field("weight_block_size", "only [128, 128] is supported, got ", block.dump());
  }
  return c;
}

// Positive, as every width and count of the model must be.
void require_positive(const FieldReader& r, const std::string& field, int64_t value) {
  if (value <= 0) r.fail_field(field, "must be positive, got ", value);
}

void validate(const ModelConfig& c, const FieldReader& r) {
  require_positive(r, "vocab_size", c.vocab_size);
  require_positive(r, "hidden_size", c.hidden_size);
  require_positive(r, "intermediate_size", c.intermediate_size);
  require_positive(r, "num_hidden_layers", c.num_hidden_layers);
  require_positive(r, "num_attention_heads", c.num_attention_heads);
  require_positive(r, "kv_lora_rank", c.kv_lora_rank);
  require_positive(r, "qk_nope_head_dim", c.qk_nope_head_dim);
  require_positive(r, "qk_rope_head_dim", c.qk_rope_head_dim);
  require_positive(r, "v_head_dim", c.v_head_dim);
  require_positive(r, "max_position_embeddings", c.max_position_embeddings);
  require_positive(r, "moe_layer_freq", c.moe_layer_freq);
  if (c.qk_rope_head_dim % 2 != 0) r.fail_field("qk_rope_head_dim", "must be even (RoPE rotates pairs), got ", c.qk_rope_head_dim);
  if (c.q_lora_rank < 0) r.fail_field("q_lora_rank", "must be positive or null, got ", c.q_lora_rank);
  if (c.first_k_dense_replace < 0) r.fail_field("first_k_dense_replace", "must not be negative, got ", c.first_k_dense_replace);
  if (c.num_nextn_predict_layers < 0)
    r.fail_field("num_nextn_predict_layers", "must not be negative, got ", c.num_nextn_predict_layers);
  if (!(c.rms_norm_eps > 0.0)) r.fail_field("rms_norm_eps", "must be positive, got ", c.rms_norm_eps);
  if (!(c.rope_theta > 1.0)) r.fail_field("rope_theta", "must be greater than 1, got ", c.rope_theta);
  if (c.bos_token_id < 0 || c.bos_token_id >= c.vocab_size)
    r.fail_field("bos_token_id", c.bos_token_id, " is outside the vocabulary of ", c.vocab_size);
  if (c.eos_token_id < 0 || c.eos_token_id >= c.vocab_size)
    r.fail_field("eos_token_id", c.eos_token_id, " is outside the vocabulary of ", c.vocab_size);

  if (c.n_routed_experts < 0) r.fail_field("n_routed_experts", "must not be negative, got ", c.n_routed_experts);
  if (c.n_shared_experts < 0) r.fail_field("n_shared_experts", "must not be negative, got ", c.n_shared_experts);
  if (c.n_routed_experts == 0) return;  // a dense model: the routing fields are unused
  require_positive(r, "moe_intermediate_size", c.moe_intermediate_size);
  require_positive(r, "num_experts_per_tok", c.num_experts_per_tok);
  require_positive(r, "n_group", c.n_group);
  require_positive(r, "topk_group", c.topk_group);
  if (!(c.routed_scaling_factor > 0.0))
    r.fail_field("routed_scaling_factor", "must be positive, got ", c.routed_scaling_factor);
  if (c.num_experts_per_tok > c.n_routed_experts)
    r.fail_field("num_experts_per_tok", c.num_experts_per_tok, " exceeds n_routed_experts (", c.n_routed_experts, ")");
  if (c.n_routed_experts % c.n_group != 0)
    r.fail_field("n_group", "n_routed_experts (", c.n_routed_experts, ") is not divisible by n_group (", c.n_group, ")");
  if (c.topk_group > c.n_group) r.fail_field("topk_group", c.topk_group, " exceeds n_group (", c.n_group, ")");
  const int64_t experts_per_group = c.n_routed_experts / c.n_group;
  if (c.topk_method != TopkMethod::Greedy && c.num_experts_per_tok > c.topk_group * experts_per_group)
    r.fail_field("num_experts_per_tok", c.num_experts_per_tok, " exceeds the ", c.topk_group * experts_per_group,
                 " experts of the topk_group (", c.topk_group, ") groups it may choose from");
  // noaux_tc scores a group by the sum of its two best experts.
  if (c.topk_method == TopkMethod::NoauxTc && experts_per_group < 2)
    r.fail_field("n_group", "noaux_tc needs at least 2 experts a group, got ", experts_per_group);
}

// Features of these architectures that transformers supports and dsv3 does not: refused rather than
// silently computed differently.
void refuse_unsupported(const FieldReader& r) {
  const std::string act = r.string("hidden_act", "silu");
  if (act != "silu") r.fail_field("hidden_act", "only silu is supported, got '", act, "'");
  if (r.boolean("attention_bias", false)) r.fail_field("attention_bias", "attention biases are not supported");
  if (r.boolean("tie_word_embeddings", false)) r.fail_field("tie_word_embeddings", "tied embeddings are not supported");
  if (!r.boolean("rope_interleave", true))
    r.fail_field("rope_interleave", "false is not supported (DeepSeek checkpoints store interleaved rope pairs)");
}

}  // namespace

ModelConfig ModelConfig::from_json(const json& j, const std::string& origin) {
  if (!j.is_object()) fail(origin, ": expected a JSON object, got ", j.type_name());
  const FieldReader r(j, origin);
  ModelConfig c;
  c.family = read_family(r);
  const FamilyDefaults& d = c.family == ModelFamily::DeepseekV3 ? kV3Defaults : kV2Defaults;
  refuse_unsupported(r);

  c.vocab_size = r.integer("vocab_size", d.vocab_size);
  c.hidden_size = r.integer("hidden_size", d.hidden_size);
  c.intermediate_size = r.integer("intermediate_size", d.intermediate_size);
  c.moe_intermediate_size = r.integer("moe_intermediate_size", d.moe_intermediate_size);
  c.num_hidden_layers = r.integer("num_hidden_layers", d.num_hidden_layers);
  c.num_nextn_predict_layers = r.integer("num_nextn_predict_layers", 0);
  c.num_attention_heads = r.integer("num_attention_heads", d.num_attention_heads);
  c.q_lora_rank = r.nullable_integer("q_lora_rank", d.q_lora_rank, 0);
  c.kv_lora_rank = r.integer("kv_lora_rank", 512);
  c.qk_nope_head_dim = r.integer("qk_nope_head_dim", 128);
  c.qk_rope_head_dim = r.integer("qk_rope_head_dim", 64);
  c.v_head_dim = r.integer("v_head_dim", 128);
  c.n_routed_experts = r.nullable_integer("n_routed_experts", d.n_routed_experts, 0);
  c.n_shared_experts = r.nullable_integer("n_shared_experts", d.n_shared_experts, 0);
  c.first_k_dense_replace = r.integer("first_k_dense_replace", d.first_k_dense_replace);
  c.moe_layer_freq = r.integer("moe_layer_freq", 1);
  c.scoring_func = read_scoring_func(r, d.scoring_func);
  c.topk_method = read_topk_method(r, d.topk_method);
  c.norm_topk_prob = r.boolean("norm_topk_prob", d.norm_topk_prob);
  c.routed_scaling_factor = r.number("routed_scaling_factor", d.routed_scaling_factor);
  if (c.n_routed_experts > 0) {
    c.num_experts_per_tok = r.integer("num_experts_per_tok", d.num_experts_per_tok);
    c.n_group = r.nullable_integer("n_group", d.n_group, 1);
    c.topk_group = r.nullable_integer("topk_group", d.topk_group, 1);
  }
  c.rms_norm_eps = r.number("rms_norm_eps", 1e-6);
  c.max_position_embeddings = r.integer("max_position_embeddings", d.max_position_embeddings);
  c.bos_token_id = r.first_integer("bos_token_id", d.bos_token_id);
  c.eos_token_id = r.first_integer("eos_token_id", d.eos_token_id);

  // transformers: a non-null rope_scaling wins over rope_parameters; rope_theta inside rope_parameters
  // wins over the top-level one.
  c.rope_theta = r.number("rope_theta", 10000.0);
  const std::string rope_field = r.has("rope_scaling") && !r.is_null("rope_scaling") ? "rope_scaling"
                                 : r.has("rope_parameters") && !r.is_null("rope_parameters") ? "rope_parameters"
                                                                                             : "";
  if (!rope_field.empty()) {
    const FieldReader rope = r.child(rope_field);
    c.rope_theta = rope.number("rope_theta", c.rope_theta);
    c.rope_scaling = read_rope_scaling(rope, c.max_position_embeddings);
  }
  if (r.has("quantization_config") && !r.is_null("quantization_config"))
    c.quantization_config = read_quantization_config(r.child("quantization_config"));

  validate(c, r);
  return c;
}

ModelConfig ModelConfig::load(const std::filesystem::path& config_json) {
  std::ifstream in(config_json);
  if (!in) fail(config_json.string(), ": cannot open");
  json j;
  try {
    j = json::parse(in);
  } catch (const json::exception& e) {
    fail(config_json.string(), ": not valid JSON: ", e.what());
  }
  return from_json(j, config_json.string());
}

json ModelConfig::to_json() const {
  const bool v3 = family == ModelFamily::DeepseekV3;
  json j;
  j["architectures"] = json::array({v3 ? "DeepseekV3ForCausalLM" : "DeepseekV2ForCausalLM"});
  j["model_type"] = v3 ? "deepseek_v3" : "deepseek_v2";
  j["vocab_size"] = vocab_size;
  j["hidden_size"] = hidden_size;
  j["intermediate_size"] = intermediate_size;
  j["moe_intermediate_size"] = moe_intermediate_size;
  j["num_hidden_layers"] = num_hidden_layers;
  j["num_nextn_predict_layers"] = num_nextn_predict_layers;
  j["num_attention_heads"] = num_attention_heads;
  j["num_key_value_heads"] = num_attention_heads;
  j["q_lora_rank"] = has_q_lora() ? json(q_lora_rank) : json(nullptr);
  j["kv_lora_rank"] = kv_lora_rank;
  j["qk_nope_head_dim"] = qk_nope_head_dim;
  j["qk_rope_head_dim"] = qk_rope_head_dim;
  j["v_head_dim"] = v_head_dim;
  j["n_routed_experts"] = n_routed_experts;
  j["n_shared_experts"] = n_shared_experts;
  j["num_experts_per_tok"] = num_experts_per_tok;
  j["first_k_dense_replace"] = first_k_dense_replace;
  j["moe_layer_freq"] = moe_layer_freq;
  j["n_group"] = n_group;
  j["topk_group"] = topk_group;
  j["scoring_func"] = scoring_func == ScoringFunc::Sigmoid ? "sigmoid" : "softmax";
  j["topk_method"] = topk_method == TopkMethod::NoauxTc              ? "noaux_tc"
                     : topk_method == TopkMethod::GroupLimitedGreedy ? "group_limited_greedy"
                                                                     : "greedy";
  j["norm_topk_prob"] = norm_topk_prob;
  j["routed_scaling_factor"] = routed_scaling_factor;
  j["rms_norm_eps"] = rms_norm_eps;
  j["rope_theta"] = rope_theta;
  j["max_position_embeddings"] = max_position_embeddings;
  j["rope_scaling"] = nullptr;
  if (rope_scaling) {
    const YarnScaling& y = *rope_scaling;
    json rope = {{"type", "yarn"},
                 {"factor", y.factor},
                 {"original_max_position_embeddings", y.original_max_position_embeddings},
                 {"beta_fast", y.beta_fast},
                 {"beta_slow", y.beta_slow},
                 {"mscale", y.mscale},
                 {"mscale_all_dim", y.mscale_all_dim}};
    if (y.attention_factor) rope["attention_factor"] = *y.attention_factor;
    if (!y.truncate) rope["truncate"] = false;
    j["rope_scaling"] = rope;
  }
  if (quantization_config) {
    const QuantizationConfig& q = *quantization_config;
    j["quantization_config"] = {{"quant_method", q.quant_method},
                                {"fmt", q.fmt},
                                {"activation_scheme", q.activation_scheme},
                                {"weight_block_size", {q.block_out, q.block_in}}};
  }
  j["bos_token_id"] = bos_token_id;
  j["eos_token_id"] = eos_token_id;
  j["hidden_act"] = "silu";
  j["tie_word_embeddings"] = false;
  j["attention_bias"] = false;
  return j;
}

}  // namespace dsv3
