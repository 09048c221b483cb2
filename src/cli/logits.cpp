// `dsv3 logits -m DIR --ids 1,2,3 --out F`: float32 logits [n_ids, vocab], row-major, for every
// position of one prefill: the hook the fidelity tests compare with transformers.
#include <cstdio>
#include <fstream>

#include "cli/command.h"
#include "cli/model_options.h"
#include "dsv3/util/error.h"

namespace dsv3::cli {
namespace {

int run_logits(const Args& args) {
  const std::vector<int32_t> ids = parse_id_list(args.require("ids"), "ids");
  const std::string out_path = args.require("out");
  auto model = load_model(args);
  CacheSequence sequence;
  const ForwardChunk chunk{&sequence, ids};
  const std::vector<float> logits = model->forward({&chunk, 1}, /*all_positions=*/true);
  std::ofstream out(out_path, std::ios::binary);
  if (!out) fail("cannot write --out ", out_path);
  out.write(reinterpret_cast<const char*>(logits.data()), std::streamsize(logits.size() * sizeof(float)));
  if (!out) fail("error writing --out ", out_path);
  return 0;
}

std::vector<FlagSpec> flags() {
  std::vector<FlagSpec> f = model_flags();
  f.push_back({"ids", "", true, "comma-separated prompt token ids"});
  f.push_back({"out", "o", true, "output file: float32 [n_ids, vocab], row-major"});
  return f;
}

const CommandRegistration registration{{"logits", "write raw float32 logits for every position of a prompt", flags(),
                                        run_logits}};

}  // namespace
}  // namespace dsv3::cli
