// Safetensors reading: dtypes, header parsing and validation of one mapped file, and the small
// tensor helpers (to_float, expect_shape). Sharded folders are in tensor_set.cpp, writing in
// safetensors_writer.cpp. Every check guards untrusted bytes: a bad file is an Error, never UB.
#include "model/safetensors.hpp"

#include <algorithm>
#include <cstring>
#include <limits>

#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "common/half.hpp"

namespace q4jit {

using nlohmann::json;

namespace {

struct DTypeInfo {
  DType dtype;
  const char* name;
  size_t size;
};

constexpr DTypeInfo kDTypes[] = {
    {DType::F16, "F16", 2},   {DType::BF16, "BF16", 2}, {DType::F32, "F32", 4},
    {DType::F64, "F64", 8},   {DType::I8, "I8", 1},     {DType::I16, "I16", 2},
    {DType::I32, "I32", 4},   {DType::I64, "I64", 8},   {DType::U8, "U8", 1},
    {DType::U16, "U16", 2},   {DType::U32, "U32", 4},   {DType::U64, "U64", 8},
    {DType::BOOL, "BOOL", 1},
};

// safetensors itself refuses headers above 100 MB; a larger length is corruption, not a model.
constexpr uint64_t kMaxHeaderBytes = 100u << 20;

const DTypeInfo* find_dtype(std::string_view name) {
  for (const DTypeInfo& info : kDTypes)
    if (name == info.name) return &info;
  return nullptr;
}

std::string shape_to_string(const std::vector<int64_t>& shape) {
  std::string text = "[";
  for (size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + "]";
}

// Parses one header entry into a view (bytes relative to the data area, checked against it).
TensorView parse_entry(const std::string& file, const std::string& name, const json& entry,
                       std::span<const std::byte> data) {
  const std::string subject = file + ": tensor '" + name + "'";
  if (!entry.is_object()) throw Error(subject + " is not a JSON object");
  for (const char* field : {"dtype", "shape", "data_offsets"})
    if (!entry.contains(field)) throw Error(subject + " has no '" + field + "'");
  const json& dtype_json = entry["dtype"];
  if (!dtype_json.is_string()) throw Error(subject + ": dtype is not a string");
  const DTypeInfo* dtype = find_dtype(dtype_json.get_ref<const std::string&>());
  if (!dtype) throw Error(subject + ": unknown dtype '" + dtype_json.get<std::string>() + "'");

  const json& shape_json = entry["shape"];
  if (!shape_json.is_array()) throw Error(subject + ": shape is not a list");
  TensorView view{name, dtype->dtype, {}, {}, nullptr};
  uint64_t numel = 1;
  bool overflow = false;
  for (const json& dim : shape_json) {
    if (!dim.is_number_integer()) throw Error(subject + ": shape holds a non-integer");
    if (dim.is_number_unsigned() && dim.get<uint64_t>() > uint64_t(INT64_MAX))
      throw Error(subject + ": dimension too large");
    const int64_t value = dim.get<int64_t>();
    if (value < 0) throw Error(subject + ": negative dimension in shape");
    view.shape.push_back(value);
    if (value != 0 && numel > std::numeric_limits<uint64_t>::max() / uint64_t(value))
      overflow = true;
    numel *= uint64_t(value);
  }

  const json& offsets = entry["data_offsets"];
  if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
      !offsets[1].is_number_unsigned())
    throw Error(subject + ": data_offsets is not a pair of non-negative integers");
  const uint64_t begin = offsets[0].get<uint64_t>();
  const uint64_t end = offsets[1].get<uint64_t>();
  if (begin > end) throw Error(subject + ": data_offsets begin > end");
  if (end > data.size())
    throw Error(subject + ": data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                "] outside the data area of " + std::to_string(data.size()) +
                " bytes (file truncated?)");
  if (overflow || numel > std::numeric_limits<uint64_t>::max() / dtype->size ||
      numel * dtype->size != end - begin)
    throw Error(subject + ": shape " + shape_to_string(view.shape) + " x " + dtype->name +
                " does not match its " + std::to_string(end - begin) + " bytes");
  view.bytes = data.subspan(begin, end - begin);
  return view;
}

void read_metadata(const std::string& file, const json& metadata,
                   std::map<std::string, std::string>& out) {
  if (!metadata.is_object()) throw Error(file + ": __metadata__ is not an object");
  for (const auto& [key, value] : metadata.items()) {
    if (!value.is_string()) throw Error(file + ": __metadata__ '" + key + "' is not a string");
    out[key] = value.get<std::string>();
  }
}

// Tensors sorted by start must each begin at or after the previous end.
void check_no_overlap(const std::string& file, std::vector<TensorView>& tensors) {
  std::vector<const TensorView*> order;
  for (const TensorView& t : tensors)
    if (!t.bytes.empty()) order.push_back(&t);
  std::sort(order.begin(), order.end(), [](const TensorView* a, const TensorView* b) {
    return a->bytes.data() < b->bytes.data();
  });
  for (size_t i = 1; i < order.size(); ++i) {
    const TensorView& previous = *order[i - 1];
    if (order[i]->bytes.data() < previous.bytes.data() + previous.bytes.size())
      throw Error(file + ": tensors '" + previous.name + "' and '" + order[i]->name + "' overlap");
  }
}

}  // namespace

size_t dtype_size(DType dtype) {
  for (const DTypeInfo& info : kDTypes)
    if (info.dtype == dtype) return info.size;
  return 0;
}

const char* dtype_name(DType dtype) {
  for (const DTypeInfo& info : kDTypes)
    if (info.dtype == dtype) return info.name;
  return "?";
}

int64_t TensorView::numel() const {
  int64_t count = 1;
  for (int64_t dim : shape) count *= dim;
  return count;
}

std::string TensorView::shape_string() const {
  return shape_to_string(shape);
}

SafetensorsFile::SafetensorsFile(const std::filesystem::path& path) : map_(path) {
  const std::string file = path.string();
  const std::span<const std::byte> bytes = map_.bytes();
  if (bytes.size() < 8)
    throw Error(file + ": truncated: " + std::to_string(bytes.size()) +
                " bytes, too small for a safetensors header");
  uint64_t header_length = 0;
  for (int i = 7; i >= 0; --i) header_length = header_length << 8 | uint64_t(bytes[i]);
  if (header_length > kMaxHeaderBytes || header_length > bytes.size() - 8)
    throw Error(file + ": header length " + std::to_string(header_length) +
                " runs past the end of the file (" + std::to_string(bytes.size()) + " bytes)");
  const char* header_text = reinterpret_cast<const char*>(bytes.data() + 8);
  json header;
  try {
    header = json::parse(header_text, header_text + header_length);
  } catch (const json::exception& error) {
    throw Error(file + ": header is not valid JSON (" + error.what() + ")");
  }
  if (!header.is_object()) throw Error(file + ": header is not a JSON object");
  const std::span<const std::byte> data = bytes.subspan(8 + header_length);
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      read_metadata(file, entry, metadata_);
      continue;
    }
    tensors_.push_back(parse_entry(file, name, entry, data));
    tensors_.back().file = &map_.path();
  }
  check_no_overlap(file, tensors_);
}

const TensorView* SafetensorsFile::find(std::string_view name) const {
  for (const TensorView& tensor : tensors_)
    if (tensor.name == name) return &tensor;
  return nullptr;
}

static std::string subject_of(const TensorView& tensor) {
  return (tensor.file ? tensor.file->string() + ": " : std::string()) + "tensor '" + tensor.name +
         "'";
}

std::vector<float> to_float(const TensorView& tensor) {
  const size_t count = size_t(tensor.numel());
  std::vector<float> values(count);
  const std::byte* source = tensor.bytes.data();
  // memcpy per element: the data area need not be aligned for the element type.
  switch (tensor.dtype) {
    case DType::F16:
      for (size_t i = 0; i < count; ++i) {
        uint16_t bits;
        std::memcpy(&bits, source + 2 * i, 2);
        values[i] = half_to_float(bits);
      }
      break;
    case DType::BF16:
      for (size_t i = 0; i < count; ++i) {
        uint16_t bits;
        std::memcpy(&bits, source + 2 * i, 2);
        values[i] = bfloat16_to_float(bits);
      }
      break;
    case DType::F32:
      std::memcpy(values.data(), source, count * 4);
      break;
    default:
      throw Error(subject_of(tensor) + " has dtype " + dtype_name(tensor.dtype) +
                  ", expected F16, BF16 or F32");
  }
  return values;
}

void expect_shape(const TensorView& tensor, const std::vector<int64_t>& shape) {
  if (tensor.shape != shape)
    throw Error(subject_of(tensor) + " has shape " + tensor.shape_string() + ", expected " +
                shape_to_string(shape));
}

void expect_dtype(const TensorView& tensor, DType dtype) {
  if (tensor.dtype != dtype)
    throw Error(subject_of(tensor) + " has dtype " + dtype_name(tensor.dtype) + ", expected " +
                dtype_name(dtype));
}

}  // namespace q4jit
