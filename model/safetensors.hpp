// The safetensors format: reader (memory-mapped, fully validated header), sharded folders, writer.
//
// File layout: [u64 little-endian header length N][N bytes of JSON header][data area].
// Header: {"__metadata__": {str: str}, "<tensor name>": {"dtype": "F16", "shape": [..],
//          "data_offsets": [begin, end]}, ...}, offsets relative to the data area.
// Validation (each failure is an Error "<file>: <problem>"): N within the file, valid JSON object,
// known dtype, product(shape) * dtype size == end - begin, begin <= end <= data area size, no two
// tensors overlapping. Nothing here interprets tensors: see gptq.hpp and weights.hpp.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/mapped_file.hpp"

namespace q4jit {

enum class DType { F16, BF16, F32, F64, I8, I16, I32, I64, U8, U16, U32, U64, BOOL };

size_t dtype_size(DType dtype);
const char* dtype_name(DType dtype);  // as spelled in the header: "F16", "I32", ...

// A tensor inside a mapped file. Valid while its SafetensorsFile lives.
struct TensorView {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  std::span<const std::byte> bytes;
  const std::filesystem::path* file;  // the shard it lives in, for error messages

  int64_t numel() const;
  std::string shape_string() const;  // "[4096, 512]"
  // Only where the data is aligned for T: safetensors does not align tensors, so loaders copy
  // with memcpy instead (a misaligned span is undefined behaviour, and UBSan says so).
  template <typename T>
  std::span<const T> as() const {
    return {reinterpret_cast<const T*>(bytes.data()), bytes.size() / sizeof(T)};
  }
};

class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::filesystem::path& path);  // maps and validates

  const std::filesystem::path& path() const { return map_.path(); }
  const std::vector<TensorView>& tensors() const { return tensors_; }
  const TensorView* find(std::string_view name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  MappedFile map_;
  std::vector<TensorView> tensors_;
  std::map<std::string, std::string> metadata_;
};

// All tensors of a model folder: the shards named by model.safetensors.index.json ("weight_map"),
// or, without an index, every *.safetensors file in the folder. A name found in two shards, or an
// index naming a missing shard or tensor, is an Error naming the folder/file.
class TensorSet {
 public:
  static TensorSet open_folder(const std::filesystem::path& dir);
  static TensorSet open_file(const std::filesystem::path& file);

  const TensorView* find(std::string_view name) const;
  // Error "<dir>: tensor '<name>' is missing" when absent.
  const TensorView& get(std::string_view name) const;
  bool contains(std::string_view name) const { return find(name) != nullptr; }
  std::vector<std::string> names() const;
  const std::filesystem::path& source() const { return source_; }

 private:
  std::filesystem::path source_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const TensorView*, std::less<>> by_name_;
};

// Float copy of an F16, BF16 or F32 tensor; Error naming file and tensor for other dtypes.
std::vector<float> to_float(const TensorView& tensor);
// Error "<file>: tensor '<name>' has shape [..], expected [..]" (or dtype) on mismatch.
void expect_shape(const TensorView& tensor, const std::vector<int64_t>& shape);
void expect_dtype(const TensorView& tensor, DType dtype);

// Writes one safetensors file. Tensors are laid out in the order added, 8-byte aligned header.
class SafetensorsWriter {
 public:
  void add(const std::string& name, DType dtype, std::vector<int64_t> shape,
           std::span<const std::byte> bytes);
  void add_f16(const std::string& name, std::vector<int64_t> shape, std::span<const float> values);
  void add_f32(const std::string& name, std::vector<int64_t> shape, std::span<const float> values);
  void add_i32(const std::string& name, std::vector<int64_t> shape,
               std::span<const int32_t> values);
  // Adds a tensor whose bytes `fill` produces only while write() runs, so a multi-GB file never
  // sits in memory whole. fill receives a buffer of exactly the tensor's byte size.
  void add_produced(const std::string& name, DType dtype, std::vector<int64_t> shape,
                    std::function<void(std::span<std::byte>)> fill);
  void set_metadata(const std::string& key, const std::string& value);
  // Writes to a temporary file then renames, so a reader never sees half a file.
  void write(const std::filesystem::path& path) const;
  size_t data_bytes() const;

 private:
  struct Entry {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    std::vector<std::byte> bytes;
    std::function<void(std::span<std::byte>)> fill;  // set instead of bytes by add_produced
    size_t byte_size = 0;
  };
  std::vector<Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace q4jit
