// q4jit synth: writes a random GPTQ Llama folder of a named shape (7B, 13B, 70B, the fixture's) in
// the real on-disk format, with a small tokenizer, so tuning and benchmarks run on real shapes
// with nothing downloaded. The weights are random (model/synth.hpp): the text it generates is
// noise. Progress on stderr, one summary line on stdout.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include "cli/commands.hpp"
#include "cli/progress.hpp"
#include "common/error.hpp"
#include "model/synth.hpp"

namespace q4jit::cli {

namespace {

namespace fs = std::filesystem;

struct SynthArgs {
  std::string preset;
  int group_size = 128;  // 0 or -1: no-group
  bool act_order = false;
  bool asym = false;
  uint64_t seed = 1;
  int shards = 1;
  bool force = false;
  std::string out_dir;
};

// The group size as quantize_config.json spells it (-1: no-group), checked against every K.
int checked_group_size(const SynthArgs& args, const LlamaConfig& config) {
  if (args.group_size == 0 || args.group_size == -1) return -1;
  const int q_out = config.num_attention_heads * config.head_dim;
  for (const int K : {config.hidden_size, config.intermediate_size, q_out}) {
    if (args.group_size < 8 || args.group_size % 8 != 0 || K % args.group_size != 0) {
      throw Error("--group-size " + std::to_string(args.group_size) + ": must be a multiple of 8 " +
                  "that divides every K of " + args.preset + " (" +
                  std::to_string(config.hidden_size) + ", " +
                  std::to_string(config.intermediate_size) + "), or 0 / -1 for no-group");
    }
  }
  return args.group_size;
}

// An existing non-empty folder is refused unless --force; with --force the old shards and index
// go first, so none of them can mix with the new ones. Nothing else in the folder is removed.
void prepare_output(const fs::path& dir, bool force) {
  std::error_code error;
  if (!fs::exists(dir, error)) return;
  if (!fs::is_directory(dir, error)) throw Error(dir.string() + ": exists and is not a folder");
  if (fs::directory_iterator(dir, error) == fs::directory_iterator()) return;
  if (!force) throw Error(dir.string() + ": exists and is not empty (--force writes over it)");
  for (const fs::directory_entry& entry : fs::directory_iterator(dir, error)) {
    const std::string name = entry.path().filename().string();
    if (entry.path().extension() == ".safetensors" || name == "model.safetensors.index.json")
      fs::remove(entry.path(), error);
  }
}

int64_t folder_bytes(const fs::path& dir, int& files) {
  int64_t bytes = 0;
  files = 0;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    bytes += int64_t(entry.file_size());
    ++files;
  }
  return bytes;
}

std::string size_text(int64_t bytes) {
  char text[32];
  if (bytes >= 1000000000) {
    std::snprintf(text, sizeof text, "%.2f GB", bytes / 1e9);
  } else {
    std::snprintf(text, sizeof text, "%.1f MB", bytes / 1e6);
  }
  return text;
}

std::string group_text(int group_size) {
  return group_size == -1 ? "no-group" : "group " + std::to_string(group_size);
}

void print_summary(const SynthArgs& args, const SynthSpec& spec, double seconds) {
  const LlamaConfig& c = spec.config;
  const QuantizationConfig& q = *c.quantization;
  const int q_out = c.num_attention_heads * c.head_dim;
  const int kv_out = c.num_key_value_heads * c.head_dim;
  int files = 0;
  const int64_t bytes = folder_bytes(args.out_dir, files);
  std::printf(
      "synth: %s, %d layers, hidden %d, %d heads / %d KV heads, vocab %d; GPTQ 4-bit %s%s, %s; "
      "shapes K->N q %d->%d, k,v %d->%d, o %d->%d, gate,up %d->%d, down %d->%d; "
      "%s in %d files, %.1f s -> %s\n",
      args.preset.c_str(), c.num_hidden_layers, c.hidden_size, c.num_attention_heads,
      c.num_key_value_heads, c.vocab_size, group_text(q.group_size).c_str(),
      q.desc_act ? ", act-order" : "", q.sym ? "sym" : "asym", c.hidden_size, q_out, c.hidden_size,
      kv_out, q_out, c.hidden_size, c.hidden_size, c.intermediate_size, c.intermediate_size,
      c.hidden_size, size_text(bytes).c_str(), files, seconds, args.out_dir.c_str());
}

void run_synth(const SynthArgs& args) {
  SynthSpec spec;
  spec.config = synth_preset(args.preset);
  QuantizationConfig quantization;
  quantization.bits = 4;
  quantization.group_size = checked_group_size(args, spec.config);
  quantization.desc_act = args.act_order;
  quantization.sym = !args.asym;
  spec.config.quantization = quantization;
  spec.seed = args.seed;
  spec.shards = args.shards;
  if (args.shards < 1) throw Error("--shards " + std::to_string(args.shards) + ": must be >= 1");
  const fs::path dir = args.out_dir;
  prepare_output(dir, args.force);

  constexpr int64_t kMegabyte = 1 << 20;
  std::unique_ptr<Progress> progress;
  spec.progress = [&progress](int64_t done, int64_t total) {
    if (!progress)
      progress = std::make_unique<Progress>("synth: MB written", int(total / kMegabyte));
    progress->update(int(done / kMegabyte));
  };
  const auto start = std::chrono::steady_clock::now();
  write_synthetic_model(dir, spec);
  if (progress) progress->finish();
  write_synthetic_tokenizer(dir / "tokenizer.model", spec.config.vocab_size);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  print_summary(args, spec, seconds);
}

}  // namespace

void add_synth_command(CLI::App& app) {
  auto args = std::make_shared<SynthArgs>();
  CLI::App* command = app.add_subcommand(
      "synth",
      "Write a random GPTQ Llama folder of a real shape (with a small tokenizer) for tuning and "
      "benchmarks");
  std::string presets;
  for (const std::string& name : synth_preset_names())
    presets += (presets.empty() ? "" : ", ") + name;
  command->add_option("--preset", args->preset, "Shape: " + presets)->required();
  command->add_option("--group-size", args->group_size,
                      "Rows per group (a multiple of 8 dividing every K); 0 or -1: no-group, one "
                      "group over all of K, written as group_size -1 (default 128)");
  command->add_flag("--act-order", args->act_order,
                    "Act-order (desc_act): a random g_idx with group-size rows per group");
  command->add_flag("--asym", args->asym, "Asymmetric: random zeros instead of 8 (stored 7)");
  command->add_option("--seed", args->seed, "Random seed; the same seed gives the same bytes");
  command->add_option("--shards", args->shards,
                      "Safetensors files to split the weights into (default 1)");
  command->add_flag(
      "--force", args->force,
      "Write into a non-empty folder (its *.safetensors and index are removed first)");
  command->add_option("--out", args->out_dir, "Folder to write (created)")->required();
  command->callback([args] { run_synth(*args); });
}

}  // namespace q4jit::cli
