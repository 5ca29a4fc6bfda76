// Tokenizer: a thin wrapper over the SentencePiece C++ API (libsentencepiece) that turns its
// status codes into q4jit::Error and checks ids before they reach it (an id outside the vocabulary
// aborts inside protobuf). The streaming decoder is in model/stream_decoder.cpp.
#include "model/tokenizer.hpp"

#include <sentencepiece_processor.h>

#include <cstdlib>
#include <system_error>

#include "common/error.hpp"

namespace q4jit {

namespace fs = std::filesystem;

Tokenizer::Tokenizer() : processor_(std::make_unique<sentencepiece::SentencePieceProcessor>()) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::load(const fs::path& dir_or_file) {
  std::error_code ignored;
  const fs::path file =
      fs::is_directory(dir_or_file, ignored) ? dir_or_file / "tokenizer.model" : dir_or_file;
  if (!fs::is_regular_file(file, ignored)) throw Error(file.string() + ": no such file");
  Tokenizer tokenizer;
  tokenizer.source_ = file.string();
  const auto status = tokenizer.processor_->Load(file.string());
  if (!status.ok()) {
    throw Error(file.string() + ": not a SentencePiece model (" + status.ToString() + ")");
  }
  if (tokenizer.processor_->GetPieceSize() <= 0) throw Error(file.string() + ": empty vocabulary");
  return tokenizer;
}

void Tokenizer::check_id(int32_t id) const {
  if (id < 0 || id >= vocab_size()) {
    throw Error(source_ + ": token id " + std::to_string(id) + " is outside the vocabulary of " +
                std::to_string(vocab_size()));
  }
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_bos) const {
  std::vector<int> pieces;
  const auto status = processor_->Encode(text, &pieces);
  if (!status.ok()) throw Error(source_ + ": cannot encode text (" + status.ToString() + ")");
  std::vector<int32_t> ids;
  ids.reserve(pieces.size() + 1);
  if (add_bos && bos_id() >= 0) ids.push_back(bos_id());
  ids.insert(ids.end(), pieces.begin(), pieces.end());
  return ids;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  for (const int32_t id : ids) check_id(id);
  std::string text;
  const auto status = processor_->Decode(std::vector<int>(ids.begin(), ids.end()), &text);
  if (!status.ok()) throw Error(source_ + ": cannot decode ids (" + status.ToString() + ")");
  return text;
}

std::string Tokenizer::piece(int32_t id) const {
  check_id(id);
  return processor_->IdToPiece(id);
}

int Tokenizer::vocab_size() const {
  return processor_->GetPieceSize();
}
int Tokenizer::bos_id() const {
  return processor_->bos_id();
}
int Tokenizer::eos_id() const {
  return processor_->eos_id();
}

bool Tokenizer::is_byte(int32_t id) const {
  check_id(id);
  return processor_->IsByte(id);
}

bool Tokenizer::is_control(int32_t id) const {
  check_id(id);
  return processor_->IsControl(id);
}

uint8_t Tokenizer::byte_value(int32_t id) const {
  // Byte pieces are spelled "<0xAB>" (SentencePiece's ByteToPiece).
  const std::string& text = processor_->IdToPiece(id);
  if (!is_byte(id) || text.size() != 6) throw Error(source_ + ": piece " + text + " is not a byte");
  return static_cast<uint8_t>(std::strtoul(text.substr(3, 2).c_str(), nullptr, 16));
}

}  // namespace q4jit
