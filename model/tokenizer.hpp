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
  // Byte-fallback pieces (<0x41>) and control pieces (<s>, </s>), which StreamDecoder must know.
  bool is_byte(int32_t id) const;
  bool is_control(int32_t id) const;
  // The byte of a byte-fallback piece (0..255).
  uint8_t byte_value(int32_t id) const;

 private:
  Tokenizer();
  void check_id(int32_t id) const;
  std::unique_ptr<sentencepiece::SentencePieceProcessor> processor_;
  std::string source_;  // the file it was loaded from, for error messages
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
  std::string decode_window(size_t count) const;
  size_t held_back_ids() const;
  void start_new_window();

  const Tokenizer* tokenizer_;
  // The window: ids since the last point where everything before was final. Once the text has
  // begun, the window is decoded after an anchor piece, so that SentencePiece does not strip the
  // leading space it strips only at the start of a text.
  std::vector<int32_t> ids_;
  size_t emitted_ = 0;     // bytes of the window's text already returned
  bool anchored_ = false;  // the text has begun: decode the window after the anchor piece
  int32_t anchor_ = -1;    // the anchor piece, found on first use
  std::string anchor_text_;
};

}  // namespace q4jit
