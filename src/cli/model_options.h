// The flags every model-running command shares (-m, --dtype, --kv-cache-tokens, --fp8-activations,
// --device) and the model they describe.
#pragma once

#include <memory>
#include <vector>

#include "cli/args.h"
#include "dsv3/model/deepseek_model.h"

namespace dsv3::cli {

std::vector<FlagSpec> model_flags();

// Opens the model named by -m (default preset:demo) on --device; logs a one-line banner to stderr.
std::unique_ptr<DeepseekModel> load_model(const Args& args);

}  // namespace dsv3::cli
