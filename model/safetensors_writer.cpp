// SafetensorsWriter: lays tensors out in the order added, header padded with spaces to 8 bytes,
// written to "<path>.tmp.<pid>" then renamed over the target. Reading is safetensors.cpp.
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "common/half.hpp"
#include "model/safetensors.hpp"

namespace q4jit {

namespace fs = std::filesystem;

namespace {

size_t byte_size_of(DType dtype, const std::vector<int64_t>& shape, const std::string& name) {
  size_t count = 1;
  for (int64_t dim : shape) {
    if (dim < 0) throw Error("SafetensorsWriter: tensor '" + name + "' has a negative dimension");
    count *= size_t(dim);
  }
  return count * dtype_size(dtype);
}

struct FileCloser {
  void operator()(std::FILE* file) const { std::fclose(file); }
};

void write_bytes(std::FILE* file, const void* data, size_t size, const fs::path& path) {
  if (size != 0 && std::fwrite(data, 1, size, file) != size)
    throw Error(path.string() + ": write failed (" + std::strerror(errno) + ")");
}

}  // namespace

void SafetensorsWriter::add(const std::string& name, DType dtype, std::vector<int64_t> shape,
                            std::span<const std::byte> bytes) {
  const size_t size = byte_size_of(dtype, shape, name);
  if (size != bytes.size())
    throw Error("SafetensorsWriter: tensor '" + name + "' has " + std::to_string(bytes.size()) +
                " bytes, its shape needs " + std::to_string(size));
  for (const Entry& entry : entries_)
    if (entry.name == name) throw Error("SafetensorsWriter: tensor '" + name + "' added twice");
  entries_.push_back({name, dtype, std::move(shape), {bytes.begin(), bytes.end()}, {}, size});
}

void SafetensorsWriter::add_f16(const std::string& name, std::vector<int64_t> shape,
                                std::span<const float> values) {
  std::vector<uint16_t> bits(values.size());
  for (size_t i = 0; i < values.size(); ++i) bits[i] = float_to_half(values[i]);
  add(name, DType::F16, std::move(shape), std::as_bytes(std::span<const uint16_t>(bits)));
}

void SafetensorsWriter::add_f32(const std::string& name, std::vector<int64_t> shape,
                                std::span<const float> values) {
  add(name, DType::F32, std::move(shape), std::as_bytes(values));
}

void SafetensorsWriter::add_i32(const std::string& name, std::vector<int64_t> shape,
                                std::span<const int32_t> values) {
  add(name, DType::I32, std::move(shape), std::as_bytes(values));
}

void SafetensorsWriter::add_produced(const std::string& name, DType dtype,
                                     std::vector<int64_t> shape,
                                     std::function<void(std::span<std::byte>)> fill) {
  const size_t size = byte_size_of(dtype, shape, name);
  for (const Entry& entry : entries_)
    if (entry.name == name) throw Error("SafetensorsWriter: tensor '" + name + "' added twice");
  entries_.push_back({name, dtype, std::move(shape), {}, std::move(fill), size});
}

void SafetensorsWriter::set_metadata(const std::string& key, const std::string& value) {
  metadata_[key] = value;
}

size_t SafetensorsWriter::data_bytes() const {
  size_t total = 0;
  for (const Entry& entry : entries_) total += entry.byte_size;
  return total;
}

void SafetensorsWriter::write(const fs::path& path) const {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata_.empty()) header["__metadata__"] = metadata_;
  size_t offset = 0;
  for (const Entry& entry : entries_) {
    header[entry.name] = {{"dtype", dtype_name(entry.dtype)},
                          {"shape", entry.shape},
                          {"data_offsets", {offset, offset + entry.byte_size}}};
    offset += entry.byte_size;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // so the data area starts 8-byte aligned
  const uint64_t length = text.size();
  unsigned char length_bytes[8];
  for (int i = 0; i < 8; ++i) length_bytes[i] = (length >> (8 * i)) & 0xff;

  const fs::path temporary = path.string() + ".tmp." + std::to_string(::getpid());
  try {
    std::unique_ptr<std::FILE, FileCloser> file(std::fopen(temporary.c_str(), "wb"));
    if (!file) throw Error(temporary.string() + ": cannot create (" + std::strerror(errno) + ")");
    write_bytes(file.get(), length_bytes, 8, temporary);
    write_bytes(file.get(), text.data(), text.size(), temporary);
    for (const Entry& entry : entries_) {
      if (!entry.fill) {
        write_bytes(file.get(), entry.bytes.data(), entry.bytes.size(), temporary);
        continue;
      }
      std::vector<std::byte> buffer(entry.byte_size);
      entry.fill(buffer);
      write_bytes(file.get(), buffer.data(), buffer.size(), temporary);
    }
    if (std::fflush(file.get()) != 0)
      throw Error(temporary.string() + ": write failed (" + std::strerror(errno) + ")");
  } catch (...) {
    std::error_code ignored;
    fs::remove(temporary, ignored);
    throw;
  }
  std::error_code error;
  fs::rename(temporary, path, error);
  if (error) {
    fs::remove(temporary, error);
    throw Error(path.string() + ": cannot rename the written file into place");
  }
}

}  // namespace q4jit
