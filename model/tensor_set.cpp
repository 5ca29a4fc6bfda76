// TensorSet: every tensor of a model folder, across shards, by name. With
// model.safetensors.index.json the index decides which shards exist and where each tensor lives
// (and is checked against them); without one, every *.safetensors file in the folder is a shard.
// Parsing and validating one file is SafetensorsFile's job (safetensors.cpp).
#include <algorithm>
#include <fstream>
#include <set>

#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "model/safetensors.hpp"

namespace q4jit {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

json read_index(const fs::path& index_path) {
  std::ifstream in(index_path, std::ios::binary);
  if (!in) throw Error(index_path.string() + ": cannot open");
  json index;
  try {
    index = json::parse(in);
  } catch (const json::exception& error) {
    throw Error(index_path.string() + ": not valid JSON (" + error.what() + ")");
  }
  if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
    throw Error(index_path.string() + ": has no \"weight_map\" object");
  for (const auto& [name, shard] : index["weight_map"].items())
    if (!shard.is_string())
      throw Error(index_path.string() + ": weight_map entry '" + name + "' is not a file name");
  return index["weight_map"];
}

// Shard names come from a file we do not trust: only plain names inside the folder.
void check_shard_name(const fs::path& index_path, const std::string& shard) {
  const fs::path relative(shard);
  if (shard.empty() || relative.has_parent_path() || relative.is_absolute() || shard == "." ||
      shard == "..")
    throw Error(index_path.string() + ": shard name '" + shard + "' is not a file in the folder");
}

}  // namespace

TensorSet TensorSet::open_file(const fs::path& file) {
  TensorSet set;
  set.source_ = file;
  set.files_.push_back(std::make_unique<SafetensorsFile>(file));
  for (const TensorView& tensor : set.files_.back()->tensors())
    set.by_name_.emplace(tensor.name, &tensor);
  return set;
}

TensorSet TensorSet::open_folder(const fs::path& dir) {
  if (!fs::is_directory(dir)) throw Error(dir.string() + ": not a folder");
  TensorSet set;
  set.source_ = dir;
  const fs::path index_path = dir / "model.safetensors.index.json";
  std::vector<fs::path> shards;
  json weight_map;
  if (fs::exists(index_path)) {
    weight_map = read_index(index_path);
    std::set<std::string> names;
    for (const auto& [tensor, shard] : weight_map.items()) {
      const std::string shard_name = shard.get<std::string>();
      check_shard_name(index_path, shard_name);
      if (!fs::is_regular_file(dir / shard_name))
        throw Error(index_path.string() + ": shard '" + shard_name + "' (of tensor '" + tensor +
                    "') does not exist");
      names.insert(shard_name);
    }
    for (const std::string& name : names) shards.push_back(dir / name);
  } else {
    for (const fs::directory_entry& entry : fs::directory_iterator(dir))
      if (entry.path().extension() == ".safetensors" && entry.is_regular_file())
        shards.push_back(entry.path());
    std::sort(shards.begin(), shards.end());
  }
  if (shards.empty()) throw Error(dir.string() + ": no *.safetensors files");

  for (const fs::path& shard : shards) {
    set.files_.push_back(std::make_unique<SafetensorsFile>(shard));
    for (const TensorView& tensor : set.files_.back()->tensors()) {
      const auto [it, inserted] = set.by_name_.emplace(tensor.name, &tensor);
      if (!inserted)
        throw Error(shard.string() + ": tensor '" + tensor.name + "' is also in " +
                    it->second->file->string());
    }
  }
  for (const auto& [tensor, shard] : weight_map.items()) {
    const TensorView* view = set.find(tensor);
    const fs::path expected = dir / shard.get<std::string>();
    if (view == nullptr || *view->file != expected)
      throw Error(expected.string() + ": tensor '" + tensor + "' named by " +
                  index_path.filename().string() + " is not in this shard");
  }
  return set;
}

const TensorView* TensorSet::find(std::string_view name) const {
  const auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

const TensorView& TensorSet::get(std::string_view name) const {
  const TensorView* tensor = find(name);
  if (!tensor) throw Error(source_.string() + ": tensor '" + std::string(name) + "' is missing");
  return *tensor;
}

std::vector<std::string> TensorSet::names() const {
  std::vector<std::string> result;
  for (const auto& [name, tensor] : by_name_) result.push_back(name);
  return result;
}

}  // namespace q4jit
