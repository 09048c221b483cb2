#include "dsv3/model/config.h"

#include <gtest/gtest.h>

#include <fstream>

#include "loading/expect_error.h"
#include "loading/safetensors_writer.h"

namespace dsv3 {
namespace {

using nlohmann::json;

const std::filesystem::path kConfigs = std::filesystem::path(DSV3_FIXTURES_DIR) / "configs";

json published(const std::string& model) {
  std::ifstream in(kConfigs / model / "config.json");
  return json::parse(in);
}

// `published(model)` with `field` set to `value`.
json edited(const std::string& model, const std::string& field, const json& value) {
  json j = published(model);
  j[field] = value;
  return j;
}

TEST(ModelConfig, ParsesDeepSeekV3) {
  const ModelConfig c = ModelConfig::load(kConfigs / "DeepSeek-V3" / "config.json");
  EXPECT_EQ(c.family, ModelFamily::DeepseekV3);
  EXPECT_EQ(c.hidden_size, 7168);
  EXPECT_EQ(c.num_hidden_layers, 61);
  EXPECT_EQ(c.num_nextn_predict_layers, 1);
  EXPECT_EQ(c.q_lora_rank, 1536);
  EXPECT_EQ(c.kv_lora_rank, 512);
  EXPECT_EQ(c.qk_head_dim(), 192);
  EXPECT_EQ(c.n_routed_experts, 256);
  EXPECT_EQ(c.num_experts_per_tok, 8);
  EXPECT_EQ(c.n_group, 8);
  EXPECT_EQ(c.topk_group, 4);
  EXPECT_EQ(c.scoring_func, ScoringFunc::Sigmoid);
  EXPECT_EQ(c.topk_method, TopkMethod::NoauxTc);
  EXPECT_DOUBLE_EQ(c.routed_scaling_factor, 2.5);
  EXPECT_EQ(c.vocab_size, 129280);
  ASSERT_TRUE(c.rope_scaling);
  EXPECT_DOUBLE_EQ(c.rope_scaling->factor, 40.0);
  EXPECT_EQ(c.rope_scaling->original_max_position_embeddings, 4096);
  EXPECT_DOUBLE_EQ(c.rope_scaling->mscale_all_dim, 1.0);
  ASSERT_TRUE(c.quantization_config);
  EXPECT_EQ(c.quantization_config->quant_method, "fp8");
  EXPECT_EQ(c.quantization_config->block_out, 128);
  EXPECT_FALSE(c.is_moe_layer(2));
  EXPECT_TRUE(c.is_moe_layer(3));
}

TEST(ModelConfig, ParsesDeepSeekV2LiteWithoutQueryCompression) {
  const ModelConfig c = ModelConfig::load(kConfigs / "DeepSeek-V2-Lite" / "config.json");
  EXPECT_EQ(c.family, ModelFamily::DeepseekV2);
  EXPECT_FALSE(c.has_q_lora());
  EXPECT_EQ(c.scoring_func, ScoringFunc::Softmax);
  EXPECT_EQ(c.topk_method, TopkMethod::Greedy);
  EXPECT_FALSE(c.norm_topk_prob);
  EXPECT_EQ(c.num_nextn_predict_layers, 0);
  ASSERT_TRUE(c.rope_scaling);
  EXPECT_DOUBLE_EQ(c.rope_scaling->mscale, 0.707);
  EXPECT_FALSE(c.quantization_config);
  EXPECT_EQ(c.eos_token_id, 100001);
}

TEST(ModelConfig, ParsesDeepSeekV25WithGroupLimitedRouting) {
  const ModelConfig c = ModelConfig::load(kConfigs / "DeepSeek-V2.5" / "config.json");
  EXPECT_EQ(c.family, ModelFamily::DeepseekV2);
  EXPECT_EQ(c.topk_method, TopkMethod::GroupLimitedGreedy);
  EXPECT_EQ(c.n_routed_experts, 160);
  EXPECT_EQ(c.n_group, 8);
  EXPECT_EQ(c.topk_group, 3);
  EXPECT_DOUBLE_EQ(c.routed_scaling_factor, 16.0);
}

TEST(ModelConfig, ParsesMoonlightWithoutRopeScaling) {
  const ModelConfig c = ModelConfig::load(kConfigs / "Moonlight-16B-A3B-Instruct" / "config.json");
  EXPECT_EQ(c.family, ModelFamily::DeepseekV3);
  EXPECT_FALSE(c.rope_scaling);
  EXPECT_DOUBLE_EQ(c.rope_theta, 50000.0);
  EXPECT_EQ(c.n_routed_experts, 64);
  EXPECT_EQ(c.n_group, 1);
  EXPECT_EQ(c.eos_token_id, 163586);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-5);
}

TEST(ModelConfig, RoundTripsThroughToJson) {
  for (const char* model : {"DeepSeek-V3", "DeepSeek-V2-Lite", "DeepSeek-V2.5", "Moonlight-16B-A3B-Instruct"}) {
    const ModelConfig c = ModelConfig::from_json(published(model));
    EXPECT_EQ(ModelConfig::from_json(c.to_json()).to_json(), c.to_json()) << model;
  }
}

TEST(ModelConfig, AbsentFieldsTakeTransformersDefaults) {
  const ModelConfig v3 = ModelConfig::from_json({{"model_type", "deepseek_v3"}});
  EXPECT_EQ(v3.hidden_size, 7168);
  EXPECT_EQ(v3.q_lora_rank, 1536);
  EXPECT_EQ(v3.first_k_dense_replace, 3);
  EXPECT_EQ(v3.max_position_embeddings, 4096);
  EXPECT_EQ(v3.num_nextn_predict_layers, 0);
  EXPECT_FALSE(v3.rope_scaling);

  const ModelConfig v2 = ModelConfig::from_json({{"architectures", {"DeepseekV2ForCausalLM"}}, {"num_experts_per_tok", 6}});
  EXPECT_EQ(v2.hidden_size, 4096);
  EXPECT_EQ(v2.moe_intermediate_size, 1407);
  EXPECT_EQ(v2.topk_method, TopkMethod::Greedy);
  EXPECT_EQ(v2.scoring_func, ScoringFunc::Softmax);
  EXPECT_EQ(v2.n_group, 1);
  EXPECT_EQ(v2.eos_token_id, 2);
}

TEST(ModelConfig, V2NeedsNumExpertsPerTokForItsExperts) {
  EXPECT_ERROR(ModelConfig::from_json({{"model_type", "deepseek_v2"}}, "dir/config.json"), "dir/config.json",
               "num_experts_per_tok: must be given");
}

TEST(ModelConfig, NullGroupsMeanNoGrouping) {
  json j = published("DeepSeek-V2-Lite");
  j["n_group"] = nullptr;
  j["topk_group"] = nullptr;
  const ModelConfig c = ModelConfig::from_json(j);
  EXPECT_EQ(c.n_group, 1);
  EXPECT_EQ(c.topk_group, 1);
}

TEST(ModelConfig, EosTokenListTakesTheFirst) {
  EXPECT_EQ(ModelConfig::from_json(edited("DeepSeek-V3", "eos_token_id", {1, 7})).eos_token_id, 1);
}

TEST(ModelConfig, ReadsRopeParametersAsTransformers5SavesThem) {
  json j = published("DeepSeek-V3");
  j.erase("rope_scaling");
  j.erase("rope_theta");
  j["rope_parameters"] = {{"rope_type", "yarn"}, {"rope_theta", 5000.0}, {"factor", 4.0},
                          {"original_max_position_embeddings", 64}, {"mscale_all_dim", 0.5}};
  const ModelConfig c = ModelConfig::from_json(j);
  EXPECT_DOUBLE_EQ(c.rope_theta, 5000.0);
  ASSERT_TRUE(c.rope_scaling);
  EXPECT_DOUBLE_EQ(c.rope_scaling->factor, 4.0);
  EXPECT_EQ(c.rope_scaling->original_max_position_embeddings, 64);
  EXPECT_DOUBLE_EQ(c.rope_scaling->mscale, 0.0);  // absent: transformers' None
  EXPECT_DOUBLE_EQ(c.rope_scaling->mscale_all_dim, 0.5);

  j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 5000.0}};
  EXPECT_FALSE(ModelConfig::from_json(j).rope_scaling);
}

TEST(ModelConfig, RefusesRopeScalingOtherThanYarn) {
  EXPECT_ERROR(ModelConfig::from_json(edited("DeepSeek-V3", "rope_scaling", {{"type", "linear"}, {"factor", 2.0}}),
                                      "v3/config.json"),
               "v3/config.json", "rope_scaling.type", "linear");
}

TEST(ModelConfig, RefusesQuantizationOtherThanDeepSeekFp8) {
  json j = published("DeepSeek-V3");
  j["quantization_config"]["quant_method"] = "gptq";
  EXPECT_ERROR(ModelConfig::from_json(j, "c.json"), "c.json", "quantization_config.quant_method", "gptq");
  j = published("DeepSeek-V3");
  j["quantization_config"]["weight_block_size"] = {64, 64};
  EXPECT_ERROR(ModelConfig::from_json(j, "c.json"), "quantization_config.weight_block_size", "[64,64]");
  j = published("DeepSeek-V3");
  j["quantization_config"]["fmt"] = "e5m2";
  EXPECT_ERROR(ModelConfig::from_json(j, "c.json"), "quantization_config.fmt", "e5m2");
}

TEST(ModelConfig, RefusesMoreExpertsPerTokenThanExperts) {
  EXPECT_ERROR(ModelConfig::from_json(edited("DeepSeek-V3", "num_experts_per_tok", 300), "c.json"), "c.json",
               "num_experts_per_tok", "exceeds n_routed_experts (256)");
}

TEST(ModelConfig, RefusesExpertsThatDoNotSplitIntoGroups) {
  EXPECT_ERROR(ModelConfig::from_json(edited("DeepSeek-V3", "n_group", 7), "c.json"), "c.json", "n_group",
               "not divisible");
}

TEST(ModelConfig, RefusesMoreChosenGroupsThanGroups) {
  EXPECT_ERROR(ModelConfig::from_json(edited("DeepSeek-V3", "topk_group", 9), "c.json"), "topk_group",
               "exceeds n_group (8)");
}

TEST(ModelConfig, RefusesNonPositiveWidths) {
  EXPECT_ERROR(ModelConfig::from_json(edited("DeepSeek-V3", "hidden_size", 0), "c.json"), "c.json", "hidden_size",
               "must be positive");
  EXPECT_ERROR(ModelConfig::from_json(edited("DeepSeek-V3", "kv_lora_rank", -512), "c.json"), "kv_lora_rank");
}

TEST(ModelConfig, RefusesFieldsOfTheWrongType) {
  EXPECT_ERROR(ModelConfig::from_json(edited("DeepSeek-V3", "hidden_size", "7168"), "c.json"), "c.json",
               "hidden_size", "expected an integer");
  EXPECT_ERROR(ModelConfig::from_json(edited("DeepSeek-V3", "norm_topk_prob", 1), "c.json"), "norm_topk_prob");
  EXPECT_ERROR(ModelConfig::from_json(edited("DeepSeek-V3", "q_lora_rank", 1536.5), "c.json"), "q_lora_rank");
}

TEST(ModelConfig, RefusesUnknownRoutingNames) {
  EXPECT_ERROR(ModelConfig::from_json(edited("DeepSeek-V3", "scoring_func", "relu"), "c.json"), "scoring_func",
               "relu");
  EXPECT_ERROR(ModelConfig::from_json(edited("DeepSeek-V3", "topk_method", "top1"), "c.json"), "topk_method", "top1");
}

TEST(ModelConfig, RefusesOtherArchitectures) {
  EXPECT_ERROR(ModelConfig::from_json(edited("DeepSeek-V3", "architectures", {"LlamaForCausalLM"}), "c.json"),
               "c.json", "architectures", "LlamaForCausalLM");
  json j = published("DeepSeek-V3");
  j.erase("architectures");
  j["model_type"] = "llama";
  EXPECT_ERROR(ModelConfig::from_json(j, "c.json"), "model_type", "llama");
}

TEST(ModelConfig, RefusesFeaturesItDoesNotImplement) {
  EXPECT_ERROR(ModelConfig::from_json(edited("DeepSeek-V3", "tie_word_embeddings", true), "c.json"),
               "tie_word_embeddings");
  EXPECT_ERROR(ModelConfig::from_json(edited("DeepSeek-V3", "hidden_act", "gelu"), "c.json"), "hidden_act", "gelu");
}

TEST(ModelConfig, LoadNamesTheFileItCannotRead) {
  testing::TempDir dir;
  EXPECT_ERROR(ModelConfig::load(dir / "config.json"), (dir / "config.json").string(), "cannot open");
  testing::write_file(dir / "config.json", "{\"hidden_size\": ");
  EXPECT_ERROR(ModelConfig::load(dir / "config.json"), (dir / "config.json").string(), "not valid JSON");
}

}  // namespace
}  // namespace dsv3
