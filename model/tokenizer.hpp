// The SentencePiece tokenizer of a Llama checkpoint (tokenizer.model), and the incremental
// decoder that streams text without ever printing half a UTF-8 character.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace q4jit {

class Tokenizer {
 public:
  // Loads <dir>/tokenizer.model (or the file itself). Error naming the file when missing/corrupt.
  static Tokenizer load(const std::filesystem::path& dir_or_file);
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  std::vector<int32_t> encode(std::string_view text, bool add_bos) const;
  std::string decode(const std::vector<int32_t>& ids) const;
  std::string piece(int32_t id) const;
  int vocab_size() const;
  int bos_id() const;
  int eos_id() const;

 private:
  Tokenizer();
  std::unique_ptr<sentencepiece::SentencePieceProcessor> processor_;
};

// Turns a stream of generated ids into a stream of complete UTF-8 text. Byte-fallback pieces
// (<0xF0> <0x9F> ...) arrive one by one; text is released only once the character is whole.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer) : tokenizer_(&tokenizer) {}
  // Returns the text that became complete with this id (often empty).
  std::string push(int32_t id);
  // Whatever is still held back (an incomplete character at the end of generation).
  std::string flush();

 private:
  const Tokenizer* tokenizer_;
  std::vector<int32_t> ids_;
  size_t emitted_ = 0;  // bytes of decode(ids_) already returned
};

}  // namespace q4jit
