// Test-only helpers that take a valid checkpoint apart and put it back changed: tensors as plain
// byte vectors (read_tensors / write_tensors, through the project's own reader and writer), raw
// header edits that may make the file invalid (edit_header), and JSON file edits. Used by the
// model tests to build damaged inputs and unusual dtypes from a valid tiny model.
#pragma once

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "model/safetensors.hpp"

namespace q4jit::test {

struct RawTensor {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  std::vector<std::byte> bytes;

  template <typename T>
  std::vector<T> values() const {
    std::vector<T> result(bytes.size() / sizeof(T));
    std::memcpy(result.data(), bytes.data(), result.size() * sizeof(T));
    return result;
  }
  template <typename T>
  void set_values(const std::vector<T>& values) {
    const auto* begin = reinterpret_cast<const std::byte*>(values.data());
    bytes.assign(begin, begin + values.size() * sizeof(T));
  }
};

inline std::vector<RawTensor> read_tensors(const std::filesystem::path& file) {
  const SafetensorsFile reader(file);
  std::vector<RawTensor> tensors;
  for (const TensorView& view : reader.tensors())
    tensors.push_back({view.name, view.dtype, view.shape, {view.bytes.begin(), view.bytes.end()}});
  return tensors;
}

inline void write_tensors(const std::filesystem::path& file,
                          const std::vector<RawTensor>& tensors) {
  SafetensorsWriter writer;
  for (const RawTensor& tensor : tensors)
    writer.add(tensor.name, tensor.dtype, tensor.shape, tensor.bytes);
  writer.write(file);
}

// Reads the tensors of `file`, lets `edit` change them, writes them back.
inline void edit_tensors(const std::filesystem::path& file,
                         const std::function<void(std::vector<RawTensor>&)>& edit) {
  std::vector<RawTensor> tensors = read_tensors(file);
  edit(tensors);
  write_tensors(file, tensors);
}

inline RawTensor& tensor_named(std::vector<RawTensor>& tensors, const std::string& name) {
  for (RawTensor& tensor : tensors)
    if (tensor.name == name) return tensor;
  throw std::runtime_error("test: no tensor " + name);
}

inline std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

inline void write_file(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

// Replaces the header of a safetensors file with `header_text`, keeping the data area.
inline void replace_header(const std::filesystem::path& file, const std::string& header_text) {
  const std::string bytes = read_file(file);
  uint64_t length = 0;
  std::memcpy(&length, bytes.data(), 8);
  const uint64_t new_length = header_text.size();
  std::string out(8, '\0');
  std::memcpy(out.data(), &new_length, 8);
  write_file(file, out + header_text + bytes.substr(8 + length));
}

// Parses the header JSON, lets `edit` change it (possibly into something invalid), writes it back.
inline void edit_header(const std::filesystem::path& file,
                        const std::function<void(nlohmann::json&)>& edit) {
  const std::string bytes = read_file(file);
  uint64_t length = 0;
  std::memcpy(&length, bytes.data(), 8);
  nlohmann::json header = nlohmann::json::parse(bytes.substr(8, length));
  edit(header);
  replace_header(file, header.dump());
}

inline void edit_json(const std::filesystem::path& file,
                      const std::function<void(nlohmann::json&)>& edit) {
  nlohmann::json value = nlohmann::json::parse(read_file(file));
  edit(value);
  write_file(file, value.dump(2));
}

// The message of the q4jit::Error that `body` throws, or "(no error)" when it returns.
template <typename Body>
std::string error_message(Body&& body) {
  try {
    body();
  } catch (const Error& error) {
    return error.what();
  }
  return "(no error)";
}

}  // namespace q4jit::test
